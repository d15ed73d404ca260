"""The expand/contract path: a large table stays writable throughout, and an interrupted run resumes."""

from __future__ import annotations

import random
import threading
import time

import psycopg
import pytest

from assets.migration.execute import MigrationFailed
from assets.migration.ledger import ledger_entries
from assets.migration.plan import DEFAULT_REMAP, MigrationSettings
from tests.migration.support import LEGACY_STATUSES, add_jobs, column_checks, remapped, run_migration, status_counts

ROWS = 200_000


@pytest.mark.slow
def test_large_table_with_a_concurrent_writer(legacy_db):
    with psycopg.connect(legacy_db) as conn:
        add_jobs(conn, {s: ROWS // len(LEGACY_STATUSES) for s in LEGACY_STATUSES})
        conn.execute("ANALYZE batch_jobs")
        ids = [r[0] for r in conn.execute("SELECT id FROM batch_jobs")]
    before = status_counts(legacy_db)
    assert sum(before.values()) >= ROWS
    stop = threading.Event()
    writes, errors, latencies = [0], [], []

    def writer():  # the application, updating random rows (legacy ones too) all along
        rng = random.Random(7)
        with psycopg.connect(legacy_db, autocommit=True) as conn:
            while not stop.is_set():
                started = time.monotonic()
                try:
                    conn.execute("UPDATE batch_jobs SET updated_at = now(), completed_items = completed_items + 1"
                                 " WHERE id = %s", [rng.choice(ids)])
                    writes[0] += 1
                except psycopg.Error as exc:
                    errors.append(exc)
                latencies.append(time.monotonic() - started)

    thread = threading.Thread(target=writer)
    thread.start()
    time.sleep(0.2)
    started = time.monotonic()
    try:
        outcome = run_migration(legacy_db, MigrationSettings(large_table_rows=100_000, batch_size=10_000))
    finally:
        elapsed = time.monotonic() - started
        time.sleep(0.2)
        stop.set()
        thread.join(10)
    assert errors == [], errors[:3]
    assert writes[0] > 0
    assert status_counts(legacy_db) == remapped(before, DEFAULT_REMAP)
    assert [s.kind for s in outcome.steps] == ["replace", "expand", "remap", "contract", "validate", "retire"]
    checks = column_checks(legacy_db, "batch_jobs", "status")
    assert set(checks) == {"batch_jobs_status_check"} and checks["batch_jobs_status_check"][2]  # validated
    with psycopg.connect(legacy_db) as conn:
        assert conn.execute("SELECT count(*) FROM pg_constraint WHERE NOT convalidated").fetchone()[0] == 0
        assert [e["kind"] for e in ledger_entries(conn, "public")] == [s.kind for s in outcome.steps]
    remap = outcome.steps[2]
    assert remap.transactions >= ROWS // 3 // 10_000
    print(f"\nlarge path: {elapsed:.2f} s for {sum(before.values())} rows, {writes[0]} concurrent writes, "
          f"writer's longest wait {max(latencies) * 1000:.0f} ms")
    for s in outcome.steps:
        print(f"  {s.kind:8} {s.transactions:3} tx  lock wait {s.lock_wait_ms:7.1f} ms  "
              f"longest hold {s.hold_ms:7.1f} ms  {s.duration_ms:8.1f} ms")


@pytest.fixture
def interrupted_db(legacy_db):
    """A table on the large path whose remap batches hit a row that takes longer than the statement timeout."""
    with psycopg.connect(legacy_db) as conn:
        add_jobs(conn, {s: 500 for s in LEGACY_STATUSES})
        conn.execute("INSERT INTO batch_jobs (name, status) VALUES ('slow', 'running')")
        conn.execute("CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS "
                     "$$ BEGIN IF OLD.name = 'slow' THEN PERFORM pg_sleep(1); END IF; RETURN NEW; END $$;"
                     "CREATE TRIGGER slow BEFORE UPDATE ON batch_jobs FOR EACH ROW EXECUTE FUNCTION slow()")
    return legacy_db


def test_interrupted_large_migration_accepts_every_value_and_resumes(interrupted_db):
    settings = MigrationSettings(large_table_rows=1_000, batch_size=100, statement_timeout_ms=300)
    before = status_counts(interrupted_db)
    with pytest.raises(MigrationFailed, match="statement timeout.*the transitional check accepts every old and new value: run the migration again"):
        run_migration(interrupted_db, settings)
    checks = column_checks(interrupted_db, "batch_jobs", "status")
    assert set(checks) == {"batch_jobs_status_transitional_check"} and not checks[
        "batch_jobs_status_transitional_check"][2]
    with psycopg.connect(interrupted_db) as conn:  # the intermediate state accepts every old and new value
        for value in (*LEGACY_STATUSES, "queued", "processing"):
            with conn.transaction(force_rollback=True):
                conn.execute("INSERT INTO batch_jobs (name, status, completed_at) VALUES ('probe', %s, now())",
                             [value])
        conn.execute("DROP TRIGGER slow ON batch_jobs")
        conn.commit()
    assert 0 < status_counts(interrupted_db).get("queued", 0) + status_counts(interrupted_db).get("processing", 0)

    resumed = run_migration(interrupted_db, settings)
    assert [s.kind for s in resumed.steps] == ["remap", "contract", "validate", "retire"]
    assert status_counts(interrupted_db) == remapped(before, DEFAULT_REMAP)
    checks = column_checks(interrupted_db, "batch_jobs", "status")
    assert set(checks) == {"batch_jobs_status_check"} and checks["batch_jobs_status_check"][2]
    assert not run_migration(interrupted_db, settings).applied
