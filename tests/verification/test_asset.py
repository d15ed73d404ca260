"""The asset through Dagster: the chain's last step verifies its batch job; a broken database fails the check with
the offending ids in the check's metadata."""

import dagster as dg
import psycopg
import pytest

from assets.verification.asset import generation_verification
from assets.verification.checks import CHECKS
from pipelines.definitions import defs
from assets.partitions import add_topic_partitions, selection_range
from resources.database import TargetDatabase
from tests.verification.conftest import TOPICS


@pytest.mark.slow
def test_the_chain_ends_with_every_check_passing_then_a_missing_file_fails_one(legacy_db, instance, store):
    resources = {"database": TargetDatabase(url=legacy_db), "conversation_store": store}
    with psycopg.connect(legacy_db) as conn:
        add_topic_partitions(instance, conn)
    key_range = selection_range(instance, TOPICS)
    result = defs.resolve_job_def("chain_job").execute_in_process(
        instance=instance, resources=resources,
        tags={"dagster/asset_partition_range_start": key_range.start,
              "dagster/asset_partition_range_end": key_range.end},
    )
    assert result.success
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()
                   if e.asset_key == generation_verification.key}
    assert sorted(evaluations) == sorted(CHECKS) and all(e.passed for e in evaluations.values())
    counters = evaluations["counters_match_items"].metadata
    assert (counters["items"].value, counters["completed"].value, counters["offending_rows"].value) == (48, 48, 0)
    (materialization, _) = result.asset_materializations_for_node("generation_verification")
    (job_id,) = materialization.metadata["batch_job_ids"].value
    assert "| counters_match_items | pass |" in materialization.metadata["summary"].value

    with psycopg.connect(legacy_db) as conn:
        item_id, path = conn.execute(
            "SELECT b.id::text, c.file_path FROM batch_items b JOIN conversations c ON c.id = b.conversation_id"
            " WHERE b.batch_job_id = %s AND b.topic = %s ORDER BY b.position LIMIT 1", [job_id, TOPICS[0]],
        ).fetchone()
    store.path(path).unlink()
    again = dg.materialize([generation_verification], instance=instance, resources=resources, partition_key=TOPICS[0])
    assert again.success  # a failed check is reported, not raised: the rows are the point
    evaluation = next(e for e in again.get_asset_check_evaluations()
                      if e.check_name == "completed_items_have_conversations")
    assert not evaluation.passed
    assert evaluation.metadata["offending_rows"].value == 1
    (row,) = evaluation.metadata["offending"].value
    assert (row["item_id"], row["job_id"], row["problem"]) == (item_id, job_id, "its conversation's file is missing")
