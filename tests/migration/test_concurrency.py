"""Locks: the migration waits by retrying short lock timeouts, and of several migrations only one applies."""

from __future__ import annotations

import threading
import time

import psycopg

from assets.migration.execute import apply_plan
from assets.migration.ledger import ledger_entries
from assets.migration.plan import make_plan
from tests.migration.support import CONTRACT, run_migration, status_counts

HOLD_S = 3.0


def test_a_reader_holding_a_lock_makes_the_migration_retry_without_blocking_other_readers(busy_db):
    outcome = {}
    holding = threading.Event()

    def long_reader():
        with psycopg.connect(busy_db) as conn:  # a transaction that keeps its ACCESS SHARE lock
            conn.execute("SELECT count(*) FROM batch_jobs").fetchone()
            holding.set()
            time.sleep(HOLD_S)
        outcome["released"] = time.monotonic()

    def migration():
        outcome["result"] = run_migration(busy_db)  # default lock_timeout: 1 s
        outcome["finished"] = time.monotonic()

    reader = threading.Thread(target=long_reader)
    reader.start()
    holding.wait(10)
    migrator = threading.Thread(target=migration)
    migrator.start()
    reads = 0
    with psycopg.connect(busy_db, autocommit=True) as conn:  # another reader, all along
        # PostgreSQL times its lock waits (not the CPU a busy machine lends it): a read queued behind the
        # migration's lock request for longer than the migration's own 1 s lock_timeout fails here.
        conn.execute("SET lock_timeout = '1500ms'")
        while reader.is_alive():
            conn.execute("SELECT count(*) FROM batch_jobs").fetchone()
            reads += 1
            time.sleep(0.05)
    migrator.join(30)
    result = outcome["result"]
    (step,) = result.steps
    assert result.applied and step.attempts >= 2  # it timed out on the lock, backed off and retried
    assert outcome["finished"] >= outcome["released"]  # and succeeded once the long reader let go
    assert reads > 1
    assert step.lock_wait_ms >= 1000 * (step.attempts - 1)
    print(f"\nattempts {step.attempts}, lock wait {step.lock_wait_ms:.0f} ms, hold {step.hold_ms:.1f} ms, "
          f"{reads} reads by another reader meanwhile")


def test_five_migrations_started_at_once_apply_exactly_once(busy_db):
    before = status_counts(busy_db)
    start = threading.Barrier(5)
    outcomes, errors = [], []

    def migration():
        try:
            with psycopg.connect(busy_db, autocommit=True) as conn:
                plan = make_plan(conn, CONTRACT)  # all plan the same fix before any applies it
                start.wait(10)
                outcomes.append(apply_plan(conn, CONTRACT, plan, applied_by=threading.current_thread().name))
        except Exception as exc:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=migration, name=f"migration-{i}") for i in range(1, 6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert sorted(o.applied for o in outcomes) == [False] * 4 + [True]
    for noop in [o for o in outcomes if not o.applied]:
        assert noop.message.startswith("nothing to do: another run applied this plan first") and not noop.steps
    with psycopg.connect(busy_db) as conn:
        assert len(ledger_entries(conn, "public")) == 1
    assert status_counts(busy_db)["queued"] == before["pending"]  # remapped once, not twice
