"""Applying the plan: exact remapped counts, unrelated constraints untouched, all-or-nothing, idempotent."""

from __future__ import annotations

import psycopg
import pytest

from assets.migration.execute import MigrationFailed, apply_plan
from assets.migration.ledger import LEDGER_TABLE, ledger_entries
from assets.migration.plan import DEFAULT_REMAP, MigrationSettings, make_plan
from tests.migration.support import (
    BATCH_JOBS_CODE, CONTRACT, column_checks, remapped, run_migration, snapshot, status_counts,
)

REPLACED = {("batch_jobs", "batch_jobs_status_check"), ("batch_items", "batch_items_status_check")}


def test_every_row_is_remapped_exactly_and_none_is_lost(busy_db):
    before = status_counts(busy_db)
    assert set(before) == {"pending", "running", "paused", "completed", "failed", "cancelled"}
    outcome = run_migration(busy_db)
    after = status_counts(busy_db)
    assert outcome.applied
    assert after == remapped(before, DEFAULT_REMAP)
    assert sum(after.values()) == sum(before.values())
    assert outcome.remapped() == {"batch_jobs.status": {"pending": before["pending"], "running": before["running"]}}
    (check,) = [d for name, (_, d, valid) in column_checks(busy_db, "batch_jobs", "status").items()
                if name == "batch_jobs_status_check" and valid]
    for value in BATCH_JOBS_CODE:
        assert f"'{value}'::text" in check
    assert "pending" not in check and "running" not in check


def test_unrelated_constraints_and_rows_are_byte_for_byte_unchanged(busy_db):
    before = snapshot(busy_db)
    run_migration(busy_db)
    after = snapshot(busy_db)

    def unrelated(snap):
        return [c for c in snap["constraints"] if (c[0], c[1]) not in REPLACED and c[0] != LEDGER_TABLE]

    assert unrelated(after) == unrelated(before)  # same OID, same pg_get_constraintdef, same validity
    names = {c[1] for c in unrelated(before)}
    assert {"batch_jobs_completed_at_check", "batch_jobs_status_length_check", "batch_jobs_review_status_check",
            "other_jobs_status_check", "batch_jobs_priority_check", "conversations_status_check"} <= names
    assert after["rows"]["other_jobs"] == before["rows"]["other_jobs"]  # its 'pending' rows stay 'pending'
    with psycopg.connect(busy_db) as conn:
        assert conn.execute("SELECT count(*) FROM batch_jobs WHERE review_status = 'pending'").fetchone()[0] > 0


def test_dry_run_writes_nothing(busy_db):
    before = snapshot(busy_db)
    outcome = run_migration(busy_db, dry_run=True)
    assert not outcome.applied and outcome.message.startswith("dry run, nothing written")
    assert "ALTER TABLE" in outcome.plan.sql() and not outcome.steps
    assert snapshot(busy_db) == before  # no ledger table either


def test_second_run_changes_nothing_and_says_so(busy_db):
    first = run_migration(busy_db)
    oids = {name: oid for name, (oid, _, _) in column_checks(busy_db, "batch_jobs", "status").items()}
    state = snapshot(busy_db)
    second = run_migration(busy_db)
    assert first.applied and not second.applied and not second.steps
    assert second.message.startswith("nothing to do: every contracted value-set column accepts every code value")
    assert f"(plan {first.plan.hash})" in second.message
    assert {name: oid for name, (oid, _, _) in column_checks(busy_db, "batch_jobs", "status").items()} == oids
    assert snapshot(busy_db) == state


def test_ledger_records_the_applied_step(busy_db):
    outcome = run_migration(busy_db, run_id="run-123")
    with psycopg.connect(busy_db) as conn:
        (entry,) = ledger_entries(conn, "public")
    assert entry["plan_hash"] == outcome.plan.hash and entry["kind"] == "replace"
    assert entry["sql"] == outcome.plan.steps[0].sql(1)
    assert entry["rows_remapped"] == {"batch_jobs.status": {"pending": 7, "running": 5}}
    assert entry["applied_by"] == "tests" and entry["dagster_run_id"] == "run-123" and entry["db_user"]
    assert entry["transactions"] == 1 and entry["attempts"] == 1
    assert entry["lock_wait_ms"] >= 0 and entry["hold_ms"] > 0  # measured; how long is the bench's business


def test_failure_mid_transaction_leaves_the_database_exactly_as_it_was(busy_db):
    """A statement timeout after the old check is dropped: everything rolls back, no ledger is left."""
    with psycopg.connect(busy_db, autocommit=True) as conn:
        conn.execute("CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS "
                     "$$ BEGIN PERFORM pg_sleep(0.05); RETURN NEW; END $$;"
                     "CREATE TRIGGER slow BEFORE UPDATE ON batch_jobs FOR EACH ROW EXECUTE FUNCTION slow()")
    before = snapshot(busy_db)
    with pytest.raises(MigrationFailed) as failure:
        run_migration(busy_db, MigrationSettings(statement_timeout_ms=200))
    message = str(failure.value)
    assert "canceling statement due to statement timeout" in message
    assert "rolled back: the database is exactly as it was" in message
    assert snapshot(busy_db) == before


def test_rows_written_under_an_old_constraint_after_planning_make_the_plan_stale(busy_db):
    """The plan is checked again under the advisory lock: a changed database is never migrated blindly."""
    with psycopg.connect(busy_db, autocommit=True) as conn:
        conn.execute("DELETE FROM batch_jobs WHERE status = 'running'")
        plan = make_plan(conn, CONTRACT)
        conn.execute("INSERT INTO batch_jobs (name, status) VALUES ('late writer', 'running')")
        before = snapshot(busy_db)
        with pytest.raises(MigrationFailed, match="the database changed since plan .* nothing was changed"):
            apply_plan(conn, CONTRACT, plan, applied_by="tests")
    assert snapshot(busy_db) == before


def test_writes_between_planning_and_applying_that_change_nothing_planned_are_fine(busy_db):
    with psycopg.connect(busy_db, autocommit=True) as conn:
        plan = make_plan(conn, CONTRACT)
        conn.execute("INSERT INTO batch_jobs (name, status) VALUES ('meanwhile', 'paused'), ('meanwhile', 'pending')")
        outcome = apply_plan(conn, CONTRACT, plan, applied_by="tests")
    assert outcome.applied and outcome.remapped()["batch_jobs.status"]["pending"] == 5 + 2 + 1
