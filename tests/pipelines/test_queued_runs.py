"""Several runs through the instance's queue at once: `bulkgen run --submit --topics-per-run N`, a real
`dagster-daemon` dequeuing them and the default run launcher starting each in a process of its own, all
sharing one application database and one conversation store."""

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from resources.conversation_store import ConversationStore
from tests.reliability.conftest import assert_generated_once

pytestmark = pytest.mark.slow

PROJECT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
TOPICS = ["ignored_401k", "esg_investing", "estate_planning_basics", "career_change_income_reduction",
          "negotiating_compensation", "student_loan_payoff"]
INSTANCE = """
run_coordinator:
  module: dagster.core.run_coordinator
  class: QueuedRunCoordinator
  config:
    dequeue_interval_seconds: 1
concurrency:
  runs:
    max_concurrent_runs: 3
  pools:
    default_limit: 1
telemetry:
  enabled: false
"""


def test_runs_for_separate_topics_execute_at_once_through_the_queue_each_item_once(legacy_db, tmp_path):
    home, root = tmp_path / "dagster_home", tmp_path / "conversations"
    home.mkdir()
    (home / "dagster.yaml").write_text(INSTANCE)
    with dg.DagsterInstance.from_config(str(home)):  # its SQLite storage made once, not raced by the processes
        pass
    env = {**os.environ, "DAGSTER_HOME": str(home), "DATABASE_URL": legacy_db, "CONVERSATION_STORE": str(root),
           "GENERATOR_DELAY_MS": "200"}  # each run lasts long enough for the others to start beside it
    daemon = subprocess.Popen([BIN / "dagster-daemon", "run", "-w", str(PROJECT / "workspace.yaml")], env=env,
                              cwd=PROJECT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        submitted = subprocess.run([BIN / "bulkgen", "run", "--submit", "--topics", ",".join(TOPICS),
                                    "--topics-per-run", "2"], env=env, cwd=PROJECT, capture_output=True, text=True,
                                   timeout=300)
        assert submitted.returncode == 0, submitted.stderr[-3000:]
        assert submitted.stdout.count("== queued Dagster run") == 3

        with dg.DagsterInstance.from_config(str(home)) as instance:
            deadline = time.monotonic() + 600
            while not all(r.is_finished for r in instance.get_runs()):
                assert daemon.poll() is None, daemon.stderr.read()[-3000:]
                assert time.monotonic() < deadline, [r.status for r in instance.get_runs()]
                time.sleep(1)
            runs = instance.get_runs()
            failures = [_failure(instance, r.run_id) for r in runs if not r.is_success]
            records = {r.dagster_run.run_id: r for r in instance.get_run_records()}
            pids = {run.run_id: {m[1] for e in instance.all_logs(run.run_id)
                                 if (m := re.search(r"Started process for run \(pid: (\d+)\)", e.message or ""))}
                    for run in runs}
    finally:
        daemon.terminate()
        daemon.wait(30)

    assert len(runs) == 3 and not failures, failures
    ranges = sorted((r.tags["dagster/asset_partition_range_start"], r.tags["dagster/asset_partition_range_end"])
                    for r in runs)
    assert len(set(ranges)) == 3  # each run its own topics
    assert all(len(p) == 1 for p in pids.values()) and len(set.union(*pids.values())) == 3  # a process each
    spans = [(records[r.run_id].start_time, records[r.run_id].end_time) for r in runs]
    overlapping = [(a, b) for a in spans for b in spans if a is not b and a[0] < b[1] and b[0] < a[1]]
    assert overlapping, spans  # runs executed at the same time, not one after the other
    # One completed job per run, every (topic, persona, arc) completed once, one conversation and one file each.
    assert_generated_once(legacy_db, ConversationStore(root=str(root)), TOPICS)


def _failure(instance: dg.DagsterInstance, run_id: str) -> str:
    """A failed run's first step error, its root cause."""
    for entry in instance.all_logs(run_id):
        if entry.is_dagster_event and entry.dagster_event.event_type_value == "STEP_FAILURE":
            error = entry.dagster_event.event_specific_data.error
            while error.cause is not None:
                error = error.cause
            return f"{error.cls_name}: {error.message}"
    return f"run {run_id} failed outside its steps"
