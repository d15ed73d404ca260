"""Terminate from the UI (the GraphQL terminate the Runs page sends) behaves as Ctrl-C does: the run worker
stops starting items, records what finished, and leaves the batch job `queued`; the next run for the same
topics does only what is left, so each combination is generated exactly once."""

from __future__ import annotations

import psycopg
import pytest

from pipelines.cli import main
from assets.partitions import topic_partition_key
from resources.conversation_store import ConversationStore
from tests.reliability.conftest import assert_generated_once, progress, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:Using variable_values:DeprecationWarning")]

TOPICS = ["ignored_401k", "esg_investing"]


def test_a_run_terminated_from_the_ui_is_resumed_by_the_next_run(webserver, legacy_db, tmp_path, monkeypatch):
    partitions = [topic_partition_key(k) for k in TOPICS]
    webserver.add_topic_partitions(partitions)
    run_id = webserver.launch(
        "chain_job",
        tags={"dagster/asset_partition_range_start": partitions[0],
              "dagster/asset_partition_range_end": partitions[-1]},
        run_config={"resources": {"generator": {"config": {"settings": {"delay_ms": 300}}}}},  # 48 items: about 5 s of work
    )
    wait_until(lambda: (p := progress(legacy_db)) and p[0] >= 6, timeout=120, what="6 items")
    webserver.client.terminate_run(run_id)
    assert webserver.wait_for_run(run_id) == "CANCELED"

    with psycopg.connect(legacy_db) as conn:
        status, done = conn.execute("SELECT status, completed_items FROM batch_jobs"
                                    " WHERE shared_parameters ->> 'run' = %s", [f"run {run_id}"]).fetchone()
        items = dict(conn.execute("SELECT b.status, count(*) FROM batch_items b JOIN batch_jobs j"
                                  " ON j.id = b.batch_job_id WHERE j.shared_parameters ->> 'run' = %s GROUP BY 1",
                                  [f"run {run_id}"]).fetchall())
    assert status == "queued" and "processing" not in items and 6 <= done == items["completed"] < 48, items

    # The next run (here the CLI, on its own instance) resumes the job: exactly one conversation per combination.
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "cli_home"))
    monkeypatch.setenv("CONVERSATION_STORE", str(tmp_path / "conversations"))  # the webserver's store
    monkeypatch.setenv("GENERATOR_DELAY_MS", "0")
    assert main(["run", "--database-url", legacy_db, "--topics", ",".join(TOPICS)]) == 0
    assert_generated_once(legacy_db, ConversationStore(root=str(tmp_path / "conversations")), TOPICS)
