"""Runs at once: two generating the same topics never generate an item twice; of five migrations, one applies."""

import json
import threading

import psycopg
import pytest

from assets.audit.contract import load_contract
from assets.audit.findings import run_audit
from assets.generation.batch import JobSettings
from assets.generation.processing import generate_conversations
from assets.migration.ledger import ledger_entries
from assets.partitions import active_topics
from resources.conversation_store import ConversationStore
from resources.generators import TemplateGenerator
from tests.migration.support import status_counts
from tests.reliability.conftest import GENERATION_JOBS, assert_generated_once, finished, wait_until

TOPICS = ["ignored_401k", "esg_investing", "grandparent_529"]


@pytest.mark.slow
def test_two_processes_generating_the_same_topics_at_once(legacy_db, cli_env, processes, tmp_path):
    """Two operators, each with their own Dagster, start the same topics together: PostgreSQL alone arbitrates.
    The second waits for the job the first holds and reports it, done by the other run: both succeed, and it never
    processes an item the first one does. (Surely together: no conversation is written until both have the job.)"""
    with psycopg.connect(legacy_db) as blocker:
        blocker.execute("LOCK TABLE conversations IN SHARE MODE")  # inserts wait; reads and key checks go on
        runs = [processes("run", "--database-url", legacy_db, "--topics", ",".join(TOPICS),
                          env={**cli_env, "DAGSTER_HOME": str(tmp_path / f"home{i}")}, output=tmp_path / f"run{i}")
                for i in (1, 2)]
        wait_until(lambda: _opened(legacy_db) == (1, 1), timeout=240, what="one job, the other run waiting for it")
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
        assert code == 0 and f"batch job {job_id} completed" in out, err


@pytest.mark.slow
def test_eight_runs_at_once_on_one_instance_all_succeed_with_exact_counts(legacy_db, cli_env, processes, tmp_path):
    """Eight operators share one DAGSTER_HOME and one database: four start the same two topics, four others a topic
    each, all at once, each run auditing and fixing first. Every run succeeds; the fix applies once; the four that
    share their topics share one batch job; every (topic, persona, arc) is generated exactly once.

    So that the four are surely at once, no conversation can be written until every run has opened its job or
    waits for the one its topics share: the test holds a lock on `conversations` until then. (A selection that is
    not one range of partitions re-orders them, which waits for every run in flight: with the lock held, for ever.)"""
    with psycopg.connect(legacy_db) as conn:
        keys = list(active_topics(conn).values())  # the partitions' order: the shared two form one range as they are
    shared, others = keys[:2], keys[2:6]
    selections = [shared] * 4 + [[topic] for topic in others]
    with psycopg.connect(legacy_db) as blocker:
        blocker.execute("LOCK TABLE conversations IN SHARE MODE")  # inserts wait; reads and key checks go on
        runs = [processes("run", "--database-url", legacy_db, "--topics", ",".join(topics), env=cli_env,
                          output=tmp_path / f"run{i}") for i, topics in enumerate(selections)]
        wait_until(lambda: _opened(legacy_db) == (5, 3), timeout=240, what="five jobs, three runs waiting for one")
    results = [finished(run, timeout=240) for run in runs]
    assert [code for code, _, _ in results] == [0] * 8, [err[-600:] for _, _, err in results]
    store = ConversationStore(root=cli_env["CONVERSATION_STORE"])
    assert_generated_once(legacy_db, store, shared + others)
    with psycopg.connect(legacy_db) as conn:
        jobs = dict(conn.execute(
            f"SELECT shared_parameters ->> 'topics', total_items FROM batch_jobs WHERE {GENERATION_JOBS}").fetchall())
        (conversations,) = conn.execute("SELECT count(*) FROM conversations").fetchone()
        ledger = ledger_entries(conn, "public")
    assert jobs == {json.dumps(sorted(shared)): 48, **{json.dumps([topic]): 24 for topic in others}}
    assert conversations == 48 + 4 * 24 and len(ledger) == 1
    shared_job = results[0][1].split("== batch job ")[1].split()[0]
    assert all(f"batch job {shared_job} completed" in out for _, out, _ in results[:4])


def _opened(dsn: str) -> tuple[int, int]:
    """(generation jobs created, bulkgen sessions waiting to open a batch job: its topics' or its own lock)."""
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            f"SELECT (SELECT count(*) FROM batch_jobs WHERE {GENERATION_JOBS}),"
            "        (SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)"
            "          WHERE l.locktype = 'advisory' AND NOT l.granted AND a.application_name = 'bulkgen'"
            "            AND a.query LIKE '%hashtextextended%')"  # a topics' or a job's lock, not the migration's
        ).fetchone()


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

    contract, audits, overlapped = load_contract(), 0, 0
    thread = threading.Thread(target=swapper)
    thread.start()
    try:
        wait_until(lambda: swaps, timeout=10, what="a first swap")
        with psycopg.connect(legacy_db, autocommit=True) as conn:
            # Counted, not timed: audits go on until ten of them each saw a swap commit while it ran.
            while overlapped < 10 and audits < 1000:
                swapped_before = len(swaps)
                findings = run_audit(conn, contract)
                not_valid = [f for f in findings if (f.table, f.column, f.kind) == ("batch_items", "status",
                                                                                   "not_valid_check")]
                assert len(not_valid) == 1, findings
                assert not [f for f in findings if (f.table, f.column, f.kind) == ("batch_items", "status",
                                                                                  "rejected_values")]
                audits += 1
                overlapped += len(swaps) > swapped_before
    finally:
        stop.set()
        thread.join(10)
    assert overlapped == 10, f"only {overlapped} of {audits} audits ran while a swap committed"
