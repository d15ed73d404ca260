"""A single-run backfill of many topic partitions: one Dagster run, one batch job, one materialization per topic."""

import dagster as dg
import psycopg
import pytest
from dagster._core.definitions.automation_tick_evaluation_context import build_run_requests_with_backfill_policies
from dagster._core.definitions.events import AssetKeyPartitionKey

from pipelines.definitions import defs
from assets.partitions import add_topic_partitions, topics
from resources.database import TargetDatabase
from tests.generation.conftest import assert_job_sound



@pytest.mark.slow
def test_a_backfill_of_twenty_topics_is_one_run_and_one_batch_job(legacy_db, instance, store):
    resources = {"database": TargetDatabase(url=legacy_db), "conversation_store": store}
    # The fix, through its own asset and blocking check, as an operator would run it first.
    assert defs.resolve_job_def("fix_job").execute_in_process(instance=instance, resources=resources).success
    with psycopg.connect(legacy_db) as conn:
        assert len(add_topic_partitions(instance, conn)) == 20
    keys = instance.get_dynamic_partitions(topics.name)

    # What Dagster's backfill daemon requests for these partitions under the asset's backfill policy.
    with dg.partition_loading_context(dynamic_partitions_store=instance):
        requests = build_run_requests_with_backfill_policies(
            [AssetKeyPartitionKey(dg.AssetKey("topic_conversations"), k) for k in keys],
            defs.resolve_asset_graph(),
            instance,
        )
    assert len(requests) == 1
    result = defs.resolve_job_def("generation_job").execute_in_process(
        instance=instance, tags=requests[0].tags, resources=resources
    )
    assert result.success
    materializations = result.asset_materializations_for_node("topic_conversations")
    assert sorted(m.partition for m in materializations) == sorted(keys)
    metadata = materializations[0].metadata
    assert {m.metadata["batch_job_id"].value for m in materializations} == {metadata["batch_job_id"].value}
    assert (metadata["items"].value, metadata["successes"].value, metadata["failures"].value) == (480, 480, 0)
    assert metadata["edge_case_items"].value == 180 and metadata["throughput_items_per_s"].value > 0
    assert metadata["duration_s"].value > 0 and "**" in metadata["preview"].value
    assert not {"cost_usd", "estimated_cost_usd", "input_tokens"} & set(metadata)  # the template bills nothing
    assert assert_job_sound(legacy_db, metadata["batch_job_id"].value, store) == {"completed": 480}
    with psycopg.connect(legacy_db) as conn:
        assert conn.execute("SELECT count(*) FROM batch_jobs WHERE shared_parameters ? 'topics'").fetchone()[0] == 1
