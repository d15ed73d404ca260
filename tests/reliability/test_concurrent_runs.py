"""Runs at once: two generating the same topics never generate an item twice; of five migrations, one applies."""

import threading
import time

import psycopg
import pytest

from assets.audit.contract import load_contract
from assets.audit.findings import run_audit
from assets.generation.batch import JobSettings
from assets.generation.processing import generate_conversations
from assets.migration.ledger import ledger_entries
from resources.conversation_store import ConversationStore
from resources.generators import TemplateGenerator
from tests.migration.support import status_counts
from tests.reliability.conftest import GENERATION_JOBS, assert_generated_once, finished, wait_until

TOPICS = ["ignored_401k", "esg_investing", "grandparent_529"]


@pytest.mark.slow
def test_two_processes_generating_the_same_topics_at_once(legacy_db, cli_env, processes, tmp_path):
    """Two operators, each with their own Dagster, start the same topics together: PostgreSQL alone arbitrates.
    The second waits for the job the first holds: it reports that job (done by the other run) or, if the first
    holds it longer than the wait, refuses; it never processes an item the first one does."""
    env = {**cli_env, "GENERATOR_DELAY_MS": "30"}
    runs = [processes("run", "--database-url", legacy_db, "--topics", ",".join(TOPICS),
                      env={**env, "DAGSTER_HOME": str(tmp_path / f"home{i}")}, output=tmp_path / f"run{i}")
            for i in (1, 2)]
    results = [finished(run) for run in runs]
    store = ConversationStore(root=cli_env["CONVERSATION_STORE"])
    assert_generated_once(legacy_db, store, TOPICS)
    with psycopg.connect(legacy_db) as conn:
        (job_id, completed, successful) = conn.execute(
            f"SELECT id, completed_items, successful_items FROM batch_jobs WHERE {GENERATION_JOBS}").fetchone()
        ledger = ledger_entries(conn, "public")
    assert (completed, successful) == (72, 72)  # each item counted once: none was processed twice
    assert len(ledger) == 1  # and the fix, which both runs ran first, applied once
    for code, out, err in results:
        assert code == 0 and f"batch job {job_id} completed" in out or (
            code == 2 and f"batch job {job_id} for these topics is being processed by another run" in err), err


def test_a_run_that_waited_for_the_job_reports_it_without_reopening_it(fixed_db, tmp_path):
    """The second run finds the first one's job unfinished, waits for its lock, and gets it once the job is
    completed: it processes nothing and leaves the job as the first one finished it (never back to processing)."""
    store = ConversationStore(root=str(tmp_path / "conversations"))
    results = {}

    def run(name: str, delay_ms: int) -> None:
        with psycopg.connect(fixed_db, autocommit=True) as conn:
            results[name] = generate_conversations(conn, TOPICS, TemplateGenerator(delay_ms=delay_ms), store,
                                                   JobSettings(), label=name)

    first = threading.Thread(target=run, args=("first", 20))
    first.start()
    wait_until(lambda: _job(fixed_db) and _job(fixed_db)[1] == "processing", timeout=30, what="the first job")
    second = threading.Thread(target=run, args=("second", 0))
    second.start()
    first.join(60)
    finished_at = _job(fixed_db)[2]
    second.join(60)
    one, two = results["first"], results["second"]
    assert one.status == "completed" and one.processed == 72
    assert two.job.id == one.job.id and (two.status, two.processed) == ("completed", 0)
    assert _job(fixed_db)[1:] == ("completed", finished_at)  # not reopened, not finished a second time
    assert_generated_once(fixed_db, store, TOPICS)


def _job(dsn):
    with psycopg.connect(dsn) as conn:
        return conn.execute(f"SELECT id, status, completed_at FROM batch_jobs WHERE {GENERATION_JOBS}").fetchone()


@pytest.mark.slow
def test_five_migration_processes_at_once_apply_exactly_once(legacy_db, cli_env, processes, tmp_path):
    before = status_counts(legacy_db)
    runs = [processes("migrate", "--database-url", legacy_db, env=cli_env, output=tmp_path / f"migrate{i}")
            for i in range(5)]
    results = [finished(run) for run in runs]
    assert [code for code, _, _ in results] == [0] * 5, [err for _, _, err in results]
    applied = [out for _, out, _ in results if "applied 1 step(s)" in out]
    assert len(applied) == 1
    assert all("nothing to do" in out for _, out, _ in results if out not in applied)
    with psycopg.connect(legacy_db) as conn:
        assert len(ledger_entries(conn, "public")) == 1
    after = status_counts(legacy_db)
    assert after["queued"] == before["pending"] and after["processing"] == before["running"]  # remapped once
    assert sum(after.values()) == sum(before.values())


def test_audits_during_concurrent_constraint_swaps_see_one_whole_state(legacy_db):
    """While another session keeps replacing a CHECK (drop and add, one transaction each, as a migration does),
    every audit reads one consistent catalog: exactly one of the two checks, with its definition."""
    stop, swaps = threading.Event(), []

    def swapper():
        with psycopg.connect(legacy_db, autocommit=True) as conn:
            while not stop.is_set():
                old, new = ("a", "b") if len(swaps) % 2 else ("b", "a")
                with conn.transaction():
                    conn.execute("ALTER TABLE batch_items DROP CONSTRAINT IF EXISTS batch_items_status_check, "
                                 f"DROP CONSTRAINT IF EXISTS status_{old}, ADD CONSTRAINT status_{new} CHECK "
                                 "(status IN ('queued', 'processing', 'completed', 'failed', 'cancelled')) NOT VALID")
                swaps.append(new)

    contract, audits = load_contract(), 0
    thread = threading.Thread(target=swapper)
    thread.start()
    try:
        wait_until(lambda: swaps, timeout=10, what="a first swap")
        with psycopg.connect(legacy_db, autocommit=True) as conn:
            deadline = time.monotonic() + 2
            while time.monotonic() < deadline:
                findings = run_audit(conn, contract)
                not_valid = [f for f in findings if (f.table, f.column, f.kind) == ("batch_items", "status",
                                                                                   "not_valid_check")]
                assert len(not_valid) == 1, findings
                assert not [f for f in findings if (f.table, f.column, f.kind) == ("batch_items", "status",
                                                                                  "rejected_values")]
                audits += 1
    finally:
        stop.set()
        thread.join(10)
    assert audits >= 10 and len(swaps) >= 10
