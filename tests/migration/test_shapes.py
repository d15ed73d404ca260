"""Every way PostgreSQL limits a column's values, planned and applied: enum types, domains, a too-short
varchar, value lists inside multi-column checks and expressions that are no value list, on both paths."""

from __future__ import annotations

import random
import subprocess
import threading
import time

import psycopg
import pytest
import yaml

from assets.audit.contract import parse_contract
from assets.audit.findings import run_audit
from assets.migration.execute import MigrationFailed, migrate
from assets.migration.plan import MigrationSettings, make_plan
from pipelines.cli import main
from tests.migration.test_plan import SQUAWK

CODE = ("queued", "processing", "paused")
LEGACY = "'pending', 'running', 'paused'"
CONTRACT = parse_contract({"tables": {"t": {"columns": {
    "status": {"type": "text", "values": list(CODE)},
    "n": {"type": "integer", "nullable": True},
}}}}, "shapes-contract")

TABLE = "CREATE TABLE t (id serial PRIMARY KEY, status {type} NOT NULL, n int{checks})"
SHAPES = {
    "enum": f"CREATE TYPE s AS ENUM ({LEGACY});" + TABLE.format(type="s", checks=""),
    "shared_enum": f"CREATE TYPE s AS ENUM ({LEGACY});" + TABLE.format(type="s", checks="")
                   + "; CREATE TABLE other (status s); INSERT INTO other VALUES ('pending'), ('running')",
    "domain": f"CREATE DOMAIN s AS text CONSTRAINT s_status CHECK (VALUE IN ({LEGACY}))"
              " CONSTRAINT s_length CHECK (length(VALUE) < 30);" + TABLE.format(type="s", checks=""),
    "varchar_too_short": TABLE.format(type="varchar(7)", checks=f", CHECK (status IN ({LEGACY}, 'queued'))")
                         + "; CREATE VIEW v AS SELECT id, status FROM t; CREATE VIEW vv AS SELECT status FROM v"
                         + "; GRANT SELECT ON v TO PUBLIC; COMMENT ON VIEW v IS 'the app reads this'",
    "multi_column": TABLE.format(type="text", checks=f", CONSTRAINT t_guard CHECK (status IN ({LEGACY}) AND n >= 0)"),
    "expressions": TABLE.format(type="text", checks=", CONSTRAINT t_regex CHECK (status ~ '^[pr]')"
                                ", CONSTRAINT t_lower CHECK (lower(status) IN ('pending', 'running', 'paused'))"
                                ", CONSTRAINT t_not_in CHECK (status NOT IN ('queued'))"
                                ", CONSTRAINT t_length CHECK (length(status) <= 20)")
                   + "; ALTER TABLE t ADD CONSTRAINT t_not_valid CHECK (status <> 'processing') NOT VALID",
}
# What each shape keeps refusing, guarded by something the fix must not remove: (SQL, error it raises).
KEPT_GUARDS = {
    "domain": ("INSERT INTO t (status) VALUES (repeat('q', 31))", psycopg.errors.CheckViolation),
    "multi_column": ("INSERT INTO t (status, n) VALUES ('queued', -1)", psycopg.errors.CheckViolation),
    "expressions": ("INSERT INTO t (status) VALUES (repeat('q', 21))", psycopg.errors.CheckViolation),
}


def build(dsn: str, shape: str, rows: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(SHAPES[shape])
        (kind,) = conn.execute("SELECT format_type(atttypid, atttypmod) FROM pg_attribute"
                               " WHERE attrelid = 't'::regclass AND attname = 'status'").fetchone()
        conn.execute(f"INSERT INTO t (status, n) SELECT (ARRAY['pending', 'running', 'paused'])[1 + i %% 3]::{kind},"
                     " i FROM generate_series(1, %s) i", [rows])
        conn.execute("ANALYZE t")


def counts(dsn: str) -> dict[str, int]:
    with psycopg.connect(dsn) as conn:
        return dict(conn.execute("SELECT status::text, count(*) FROM t GROUP BY 1").fetchall())


def expected_after(rows: int) -> dict[str, int]:
    """The rows `build` makes (i % 3 picks pending, running, paused), remapped."""
    return {"queued": rows // 3, "processing": (rows + 2) // 3, "paused": (rows + 1) // 3}


def assert_fixed(dsn: str, shape: str, rows: int, settings: MigrationSettings) -> None:
    assert counts(dsn) == expected_after(rows)
    with psycopg.connect(dsn, autocommit=True) as conn:
        findings = run_audit(conn, CONTRACT)
        assert not [f for f in findings if f.kind in ("rejected_values", "legacy_values_allowed", "not_valid_check")]
        assert make_plan(conn, CONTRACT, settings).empty  # a second run has nothing to do
        for value in CODE:
            with conn.transaction(force_rollback=True):
                conn.execute("INSERT INTO t (status, n) VALUES (%s, 1)", [value])
        for value in ("pending", "running"):
            with pytest.raises(psycopg.errors.CheckViolation), conn.transaction():
                conn.execute("INSERT INTO t (status, n) VALUES (%s, 1)", [value])
        if shape in KEPT_GUARDS:
            statement, error = KEPT_GUARDS[shape]
            with pytest.raises(error), conn.transaction():
                conn.execute(statement)
        assert conn.execute("SELECT count(*) FROM pg_constraint WHERE NOT convalidated").fetchone()[0] == 0


def shape_specifics(dsn: str, shape: str) -> None:
    with psycopg.connect(dsn) as conn:
        labels = [r[0] for r in conn.execute("SELECT enumlabel FROM pg_enum WHERE enumtypid = 's'::regtype")] \
            if shape.endswith("enum") else []
        if shape == "enum":  # labels added, the legacy ones kept in the type and refused by the column's check
            assert set(labels) == {"pending", "running", "paused", "queued", "processing"}
        if shape == "shared_enum":  # the type is unchanged for the column outside the contract
            assert labels == ["pending", "running", "paused"]
            assert conn.execute("SELECT format_type(atttypid, atttypmod) FROM pg_attribute"
                                " WHERE attrelid = 't'::regclass AND attname = 'status'").fetchone() == ("text",)
            assert sorted(r[0] for r in conn.execute("SELECT status::text FROM other")) == ["pending", "running"]
        if shape == "domain":
            names = {r[0] for r in conn.execute("SELECT conname FROM pg_constraint WHERE contypid = 's'::regtype")}
            assert "s_length" in names and "s_status" not in names
        if shape == "varchar_too_short":
            assert conn.execute("SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = "
                                "'t'::regclass AND attname = 'status'").fetchone() == ("character varying(10)",)
            assert conn.execute("SELECT count(*) FROM vv WHERE status = 'processing'").fetchone()[0] > 0
            assert conn.execute("SELECT obj_description('v'::regclass, 'pg_class'),"
                                " has_table_privilege('public', 'v', 'SELECT')").fetchone() == ("the app reads this",
                                                                                               True)
        if shape == "multi_column":
            survivors = conn.execute("SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE"
                                     " conrelid = 't'::regclass AND contype = 'c' AND conname <> 't_status_check'"
                                     ).fetchall()
            assert survivors == [("t_n_check", "CHECK ((n >= 0))")]
        if shape == "expressions":
            names = {r[0] for r in conn.execute("SELECT conname FROM pg_constraint WHERE conrelid = 't'::regclass"
                                                " AND contype = 'c'")}
            assert names == {"t_length", "t_status_check"}


@pytest.mark.parametrize("shape", list(SHAPES))
def test_each_shape_is_fixed_in_one_transaction(empty_db, shape):
    build(empty_db, shape, 300)
    settings = MigrationSettings()
    with psycopg.connect(empty_db, autocommit=True) as conn:
        outcome = migrate(conn, CONTRACT, settings, applied_by="tests")
    assert outcome.applied, outcome.message
    assert [s.kind for s in outcome.steps] == (["enum", "replace"] if shape == "enum" else ["replace"])
    assert outcome.remapped() == {"t.status": {"pending": 100, "running": 100}}
    assert_fixed(empty_db, shape, 300, settings)
    shape_specifics(empty_db, shape)


ROWS = 100_000


@pytest.mark.parametrize("shape", [s for s in SHAPES if s != "shared_enum"])
def test_each_shape_on_a_large_table_while_the_application_writes(empty_db, shape):
    build(empty_db, shape, ROWS)
    settings = MigrationSettings(large_table_rows=50_000, batch_size=10_000)
    stop, writes, errors = threading.Event(), [0], []

    def writer():  # the application, updating random rows (legacy ones too) all along
        rng = random.Random(7)
        with psycopg.connect(empty_db, autocommit=True) as conn:
            while not stop.is_set():
                try:
                    conn.execute("UPDATE t SET n = n + 1 WHERE id = %s", [rng.randint(1, ROWS)])
                    writes[0] += 1
                except psycopg.Error as exc:
                    errors.append(exc)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        time.sleep(0.1)
        with psycopg.connect(empty_db, autocommit=True) as conn:
            outcome = migrate(conn, CONTRACT, settings, applied_by="tests")
        time.sleep(0.1)
    finally:
        stop.set()
        thread.join(30)
    assert errors == [] and writes[0] > 0, errors[:3]
    assert outcome.applied, outcome.message
    kinds = [s.kind for s in outcome.steps]
    assert "replace" not in kinds and "remap" in kinds and "validate" in kinds
    assert ("widen" in kinds) == (shape == "varchar_too_short") and ("enum" in kinds) == (shape == "enum")
    assert_fixed(empty_db, shape, ROWS, settings)
    shape_specifics(empty_db, shape)


def test_a_shared_enum_on_a_large_table_is_refused_with_the_sql_to_run(empty_db):
    build(empty_db, "shared_enum", 600)
    with psycopg.connect(empty_db, autocommit=True) as conn:
        plan = make_plan(conn, CONTRACT, MigrationSettings(large_table_rows=500))
    assert not plan.steps and len(plan.errors) == 1
    assert "also the type of public.other.status" in plan.errors[0] and "rewrites all 600 rows" in plan.errors[0]
    text = plan.sql()
    assert 'ALTER TABLE "public"."t" ALTER COLUMN "status" TYPE text USING "status"::text;' in text
    assert "SET LOCAL lock_timeout" in text and "ADD CONSTRAINT \"t_status_check\" CHECK (\"status\" IN (" in text


def test_a_shared_domain_is_refused_naming_its_columns_unless_allowed(empty_db):
    build(empty_db, "domain", 30)
    with psycopg.connect(empty_db, autocommit=True) as conn:
        conn.execute("CREATE TABLE elsewhere (kind s); INSERT INTO elsewhere VALUES ('pending')")
        plan = make_plan(conn, CONTRACT)
        assert not plan.steps and "shared with public.elsewhere.kind" in plan.errors[0]
        assert 'ALTER DOMAIN public.s ADD CONSTRAINT' in plan.sql()
        with pytest.raises(MigrationFailed, match='"elsewhere" contains values that violate.*exactly as it was'):
            migrate(conn, CONTRACT, MigrationSettings(allow_shared_domain=True), applied_by="tests")
        assert counts(empty_db)["pending"] == 10  # rolled back whole
        conn.execute("UPDATE elsewhere SET kind = 'paused'")
        outcome = migrate(conn, CONTRACT, MigrationSettings(allow_shared_domain=True), applied_by="tests")
    assert outcome.applied
    assert_fixed(empty_db, "domain", 30, MigrationSettings())


@pytest.mark.parametrize("large", [False, True], ids=["one transaction", "expand/contract"])
@pytest.mark.parametrize("shape", [s for s in SHAPES if s != "shared_enum"])
def test_each_shape_plans_sql_that_passes_squawk(empty_db, tmp_path, shape, large):
    build(empty_db, shape, 30)
    with psycopg.connect(empty_db, autocommit=True) as conn:
        plan = make_plan(conn, CONTRACT, MigrationSettings(large_table_rows=10 if large else 50_000))
    assert plan.steps and not plan.errors
    file = tmp_path / "migration.sql"
    file.write_text(plan.sql())
    lint = subprocess.run([str(SQUAWK), "--reporter", "gcc", str(file)], capture_output=True, text=True)
    assert lint.returncode == 0 and "warning" not in lint.stdout + lint.stderr, lint.stdout + lint.stderr


def test_migrate_prints_the_sql_a_person_would_run_for_a_refused_shape(empty_db, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    build(empty_db, "domain", 30)
    with psycopg.connect(empty_db, autocommit=True) as conn:
        conn.execute("CREATE TABLE elsewhere (kind s)")
    contract = tmp_path / "contract.yaml"
    contract.write_text(yaml.safe_dump({"tables": {"t": {"columns": {
        "status": {"type": "text", "values": list(CODE)}, "n": {"type": "integer", "nullable": True}}}}}))
    assert main(["migrate", "--database-url", empty_db, "--contract", str(contract)]) == 1
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and "shared with public.elsewhere.kind" in captured.err
    assert "-- The SQL a person would run instead, reviewed first:" in captured.out
    assert 'ALTER DOMAIN public.s DROP CONSTRAINT "s_status";' in captured.out
    assert counts(empty_db) == {"pending": 10, "running": 10, "paused": 10}  # nothing ran
    assert main(["migrate", "--database-url", empty_db, "--contract", str(contract), "--allow-shared-domain"]) == 0
    assert counts(empty_db) == expected_after(30)


def test_a_type_change_under_a_view_with_a_trigger_is_refused_naming_it(empty_db):
    build(empty_db, "varchar_too_short", 30)
    with psycopg.connect(empty_db, autocommit=True) as conn:
        conn.execute("CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;"
                     "CREATE TRIGGER v_write INSTEAD OF INSERT ON v FOR EACH ROW EXECUTE FUNCTION refuse()")
        plan = make_plan(conn, CONTRACT)
    assert not plan.steps and "would not restore read it" in plan.errors[0] and "public.v" in plan.errors[0]
