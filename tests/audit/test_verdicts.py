"""The audit's verdict on each CHECK shape against PostgreSQL's own verdict on a real INSERT."""

from __future__ import annotations

import psycopg
import pytest

from assets.audit.contract import parse_contract
from assets.audit.findings import run_audit

CODE = ("queued", "processing", "paused", "completed", "failed", "cancelled")
LEGACY = "'pending', 'running', 'paused', 'completed', 'failed', 'cancelled'"

# name -> (DDL creating table t, the code values PostgreSQL refuses, allowed list the audit reports)
SHAPES = {
    "text_in_list": (
        f"CREATE TABLE t (id serial, status text CHECK (status IN ({LEGACY})))",
        {"queued", "processing"},
        ["pending", "running", "paused", "completed", "failed", "cancelled"],
    ),
    "varchar_cast_any": (
        f"CREATE TABLE t (id serial, status varchar(9) CHECK (status IN ('queued', 'processing', {LEGACY})))",
        {"processing"},  # allowed by the list, but 10 characters do not fit varchar(9)
        ["queued", "processing", "pending", "running", "paused", "completed", "failed", "cancelled"],
    ),
    "enum_type": (
        "CREATE TYPE job_status AS ENUM ('pending', 'running', 'paused', 'completed', 'failed', 'cancelled');"
        "CREATE TABLE t (id serial, status job_status)",
        {"queued", "processing"},
        ["pending", "running", "paused", "completed", "failed", "cancelled"],
    ),
    "enum_type_with_check": (
        "CREATE TYPE job_status AS ENUM ('queued', 'processing', 'paused', 'completed', 'failed', 'cancelled');"
        "CREATE TABLE t (id serial, status job_status CHECK (status <> 'paused'))",
        {"paused"},
        ["queued", "processing", "paused", "completed", "failed", "cancelled"],
    ),
    "not_valid": (
        "CREATE TABLE t (id serial, status text);"
        "INSERT INTO t (status) VALUES ('weird');"
        f"ALTER TABLE t ADD CONSTRAINT t_status_check CHECK (status IN ({LEGACY})) NOT VALID",
        {"queued", "processing"},
        ["pending", "running", "paused", "completed", "failed", "cancelled"],
    ),
    "not_in": (
        "CREATE TABLE t (id serial, status text CHECK (status NOT IN ('queued', 'archived')))",
        {"queued"},
        None,
    ),
    "or_of_equalities": (
        "CREATE TABLE t (id serial, status text CHECK (status = 'queued' OR status = 'failed'))",
        {"processing", "paused", "completed", "cancelled"},
        ["queued", "failed"],
    ),
    "function_of_column": (
        "CREATE TABLE t (id serial, status text CHECK (lower(status) IN ('queued', 'processing', 'paused')))",
        {"completed", "failed", "cancelled"},
        None,
    ),
    "regular_expression": (
        "CREATE TABLE t (id serial, status text CHECK (status ~ '^(q|p)[a-z]+$'))",
        {"completed", "failed", "cancelled"},
        None,
    ),
    "length_and_list": (
        f"CREATE TABLE t (id serial, status text CHECK (status IN ('queued', 'processing', {LEGACY})),"
        " CONSTRAINT t_status_len CHECK (length(status) <= 8))",
        {"processing", "completed", "cancelled"},
        ["queued", "processing", "pending", "running", "paused", "completed", "failed", "cancelled"],
    ),
    "domain_with_check": (
        f"CREATE DOMAIN job_status AS text CHECK (VALUE IN ({LEGACY}));"
        "CREATE TABLE t (id serial, status job_status)",
        {"queued", "processing"},
        None,
    ),
    "multi_column_conjunct": (
        "CREATE TABLE t (id serial, status text, done_at timestamptz,"
        f" CHECK (status IN ({LEGACY}) AND (status <> 'completed' OR done_at IS NOT NULL)))",
        {"queued", "processing"},  # decided by the single-column conjunct alone
        ["pending", "running", "paused", "completed", "failed", "cancelled"],
    ),
    "multi_column_undecidable": (
        "CREATE TABLE t (id serial, status text, done_at timestamptz,"
        " CHECK (status <> 'completed' OR done_at IS NOT NULL))",
        set(),  # 'completed' passes with done_at set: never a false rejection
        None,
    ),
}


def contract_for(values=CODE, extra_columns=None):
    columns = {"status": {"type": "text", "nullable": True, "values": list(values)}, **(extra_columns or {})}
    return parse_contract({"tables": {"t": {"columns": columns}}}, "test-contract")


def postgres_refuses(conn: psycopg.Connection, value: str, others: list[dict]) -> bool:
    """True when every candidate row with this status fails to INSERT (each in a rolled-back savepoint)."""
    for extra in others:
        columns = ["status", *extra]
        try:
            with conn.transaction(force_rollback=True):
                conn.execute(
                    f"INSERT INTO t ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))})",
                    [value, *extra.values()],
                )
            return False
        except psycopg.errors.IntegrityError:
            continue
        except psycopg.errors.DataError:
            continue
    return True


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_audit_verdict_is_postgres_verdict(empty_db, shape):
    ddl, refused, allowed = SHAPES[shape]
    with psycopg.connect(empty_db, autocommit=True) as conn:
        conn.execute(ddl)
    with psycopg.connect(empty_db) as conn:
        extra = {"done_at": None} if "done_at" in ddl else {}
        others = [extra, {"done_at": "2026-01-01"}] if extra else [{}]
        actual_refusals = {v for v in CODE if postgres_refuses(conn, v, others)}
        findings = run_audit(conn, contract_for(extra_columns={"done_at": {"type": "timestamp", "nullable": True}} if extra else None))
    rejected = [f for f in findings if f.kind == "rejected_values"]
    reported = set(rejected[0].rejected) if rejected else set()
    assert actual_refusals == refused, "the shape itself is not what the test means it to be"
    assert reported == actual_refusals
    if rejected:
        assert rejected[0].severity == "error"
        assert rejected[0].allowed == allowed


def test_not_valid_and_undecidable_are_reported(empty_db):
    with psycopg.connect(empty_db, autocommit=True) as conn:
        conn.execute(SHAPES["not_valid"][0])
        conn.execute("ALTER TABLE t ADD COLUMN done_at timestamptz,"
                     " ADD CHECK (status <> 'completed' OR done_at IS NOT NULL)")
    with psycopg.connect(empty_db) as conn:
        findings = run_audit(conn, contract_for(extra_columns={"done_at": {"type": "timestamp", "nullable": True}}))
    kinds = {f.kind: f for f in findings}
    assert kinds["not_valid_check"].severity == "warning"
    assert "t_status_check" in kinds["not_valid_check"].actual
    assert kinds["undecidable_check"].severity == "info"


def test_audit_is_read_only(empty_db):
    """A CHECK whose function would write cannot write: the audit's transaction is read-only."""
    with psycopg.connect(empty_db, autocommit=True) as conn:
        conn.execute("CREATE TABLE side_effects (n int)")
        conn.execute(
            "CREATE FUNCTION sneaky(v text) RETURNS boolean LANGUAGE plpgsql AS "
            "$$ BEGIN INSERT INTO side_effects VALUES (1); RETURN true; END $$"
        )
        conn.execute("CREATE TABLE t (id serial, status text CHECK (sneaky(status)))")
    with psycopg.connect(empty_db) as conn:
        findings = run_audit(conn, contract_for())
        assert conn.execute("SELECT count(*) FROM side_effects").fetchone()[0] == 0
    # A check that writes cannot be judged read-only: reported as undecidable, never as a rejection.
    assert not [f for f in findings if f.kind == "rejected_values"]
    assert [f.actual for f in findings if f.kind == "undecidable_check"] == [
        "t_status_check depends on other columns or writes when evaluated; only what one value decides is judged"
    ]
