"""The plan: what it replaces (chosen by the column a check constrains), what it remaps, what it refuses."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from assets.audit.contract import parse_contract
from assets.migration.execute import apply_plan, migrate
from assets.migration.plan import MigrationSettings, PlanError, make_plan
from tests.migration.support import CONTRACT, run_migration, snapshot

SQUAWK = Path(sys.executable).with_name("squawk")


def plan_for(dsn: str, settings: MigrationSettings | None = None, contract=CONTRACT):
    with psycopg.connect(dsn, autocommit=True) as conn:
        return make_plan(conn, contract, settings)


def test_plan_replaces_only_the_checks_on_the_column_alone(busy_db):
    plan = plan_for(busy_db)
    assert not plan.errors
    fixes = {f"{f.table}.{f.column}": f for f in plan.fixes}
    assert set(fixes) == {"batch_jobs.status", "batch_items.status"}
    jobs = fixes["batch_jobs.status"]
    assert [j.check.name for j in jobs.replaced] == ["batch_jobs_status_check"]
    # The multi-column check mentions status, the length check constrains status alone but is no
    # value list and accepts every code value: both are kept.
    assert set(jobs.kept) == {"batch_jobs_completed_at_check", "batch_jobs_status_length_check"}
    assert jobs.remap == {"pending": "queued", "running": "processing"}
    assert jobs.legacy_counts == {"pending": 2 + 5, "running": 1 + 4}
    items = fixes["batch_items.status"]
    assert [j.check.name for j in items.replaced] == ["batch_items_status_check"] and items.remap == {}
    assert len(plan.steps) == 1 and plan.steps[0].kind == "replace"
    text = plan.sql()
    for untouched in ("completed_at_check", "length_check", "review_status", "other_jobs", "priority"):
        assert untouched not in text


def test_large_tables_plan_expand_contract(busy_db):
    plan = plan_for(busy_db, MigrationSettings(large_table_rows=10))
    kinds = [s.kind for s in plan.steps]
    assert kinds == ["replace", "expand", "remap", "contract", "validate", "retire"]  # batch_items is empty: small
    text = plan.sql()
    assert "ADD CONSTRAINT \"batch_jobs_status_transitional_check\"" in text and text.count(" NOT VALID;") == 2
    validate = plan.steps[kinds.index("validate")]
    assert "VALIDATE CONSTRAINT \"batch_jobs_status_check\"" in validate.sql(1)
    assert "SHARE UPDATE EXCLUSIVE" in validate.lock and len(validate.body) == 1  # its own transaction


@pytest.mark.parametrize("path", ["single transaction", "expand/contract"])
def test_emitted_sql_is_squawk_clean(busy_db, tmp_path, path):
    settings = MigrationSettings(large_table_rows=10 if path == "expand/contract" else 50_000)
    file = tmp_path / "migration.sql"
    file.write_text(plan_for(busy_db, settings).sql())
    lint = subprocess.run([str(SQUAWK), "--reporter", "gcc", str(file)], capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert "warning" not in lint.stdout + lint.stderr


def test_squawk_still_flags_what_the_plan_avoids(tmp_path):
    """The lint is real: the seed's section 5 SQL fails it."""
    file = tmp_path / "seed.sql"
    file.write_text(
        "ALTER TABLE batch_jobs DROP CONSTRAINT batch_jobs_status_check;\n"
        "ALTER TABLE batch_jobs ADD CONSTRAINT batch_jobs_status_check CHECK (status IN ('queued'));\n"
    )
    lint = subprocess.run([str(SQUAWK), "--reporter", "gcc", str(file)], capture_output=True, text=True)
    assert lint.returncode != 0 and "constraint-missing-not-valid" in lint.stdout


def test_legacy_value_without_mapping_is_an_error_before_anything_runs(busy_db):
    before = snapshot(busy_db)
    plan = plan_for(busy_db, MigrationSettings(remap={"pending": "queued"}))
    assert plan.errors == ("public.batch_jobs.status: 5 row(s) hold 'running' with no mapping in the remap: "
                           "add one (or fix those rows) first",)
    assert plan.sql().startswith("-- nothing to run: cannot run:")
    with psycopg.connect(busy_db, autocommit=True) as conn, pytest.raises(PlanError, match="'running'"):
        apply_plan(conn, CONTRACT, plan, applied_by="tests")
    with pytest.raises(PlanError, match="'running'"):
        run_migration(busy_db, MigrationSettings(remap={"pending": "queued"}))
    assert snapshot(busy_db) == before


def test_remap_onto_a_value_the_code_never_writes_is_an_error(busy_db):
    plan = plan_for(busy_db, MigrationSettings(remap={"pending": "waiting", "running": "processing"}))
    assert plan.errors and "maps 'pending' to 'waiting', which the code never writes" in plan.errors[0]


CODE = ("queued", "processing", "paused")
LEGACY = "'pending', 'running', 'paused'"


def test_varchar_column_with_a_check_is_fixed(empty_db):
    with psycopg.connect(empty_db, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE t (status varchar(20) CHECK (status IN ({LEGACY})));"
                     "INSERT INTO t VALUES ('pending'), ('running'), ('paused')")
    contract = parse_contract({"tables": {"t": {"columns": {
        "status": {"type": "text", "values": list(CODE)}}}}}, "test-contract")
    with psycopg.connect(empty_db, autocommit=True) as conn:
        outcome = migrate(conn, contract, applied_by="tests")
        assert outcome.applied and outcome.remapped() == {"t.status": {"pending": 1, "running": 1}}
        assert make_plan(conn, contract).empty
        assert sorted(r[0] for r in conn.execute("SELECT status FROM t")) == ["paused", "processing", "queued"]


def test_plan_is_empty_once_applied(busy_db):
    run_migration(busy_db)
    plan = plan_for(busy_db)
    assert plan.empty and not plan.fixes
    assert plan.sql() == ("-- nothing to run: every contracted value-set column accepts every code value "
                          "and holds no legacy value\n")


WIDENED = ("ALTER TABLE batch_jobs DROP CONSTRAINT batch_jobs_status_check, ADD CONSTRAINT batch_jobs_status_check"
           " CHECK (status IN ('pending', 'running', 'queued', 'processing', 'paused', 'completed', 'failed',"
           " 'cancelled'))")


def test_a_check_that_accepts_every_code_value_is_left_alone_without_legacy_rows(busy_db):
    with psycopg.connect(busy_db) as conn:
        conn.execute(WIDENED)
        conn.execute("UPDATE batch_jobs SET status = 'queued' WHERE status IN ('pending', 'running')")
    assert [f"{f.table}.{f.column}" for f in plan_for(busy_db).fixes] == ["batch_items.status"]


@pytest.mark.parametrize("large", [False, True])
def test_legacy_rows_under_a_widened_check_are_remapped_and_the_check_tightened(busy_db, large):
    with psycopg.connect(busy_db) as conn:
        conn.execute(WIDENED)
    settings = MigrationSettings(large_table_rows=10 if large else 50_000)
    plan = plan_for(busy_db, settings)
    (jobs,) = [f for f in plan.fixes if f.table == "batch_jobs"]
    assert jobs.remap == {"pending": "queued", "running": "processing"}
    outcome = run_migration(busy_db, settings)
    assert outcome.remapped()["batch_jobs.status"] == {"pending": 7, "running": 5}
    assert plan_for(busy_db, settings).empty
    with psycopg.connect(busy_db) as conn:
        (definition,) = conn.execute(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'batch_jobs'::regclass"
            " AND conname LIKE 'batch_jobs_status_check%' AND convalidated").fetchone()
    assert "pending" not in definition and "'queued'::text" in definition
