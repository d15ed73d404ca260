"""The ledger: one row per applied migration step, in the target database beside what it changed.

A step's row is written in the step's own transaction, so the step and its record commit or
roll back together; the table is created on first use inside that same transaction, so a
migration that rolls back leaves no ledger behind either.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

LEDGER_TABLE = "bulkgen_migration_ledger"

_CREATE = """
CREATE TABLE IF NOT EXISTS {ledger} (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now(),
    plan_hash text NOT NULL,
    step text NOT NULL,
    kind text NOT NULL,
    sql text NOT NULL,
    rows_remapped jsonb NOT NULL,
    transactions integer NOT NULL,
    attempts integer NOT NULL,
    lock_wait_ms numeric NOT NULL,
    hold_ms numeric NOT NULL,
    duration_ms numeric NOT NULL,
    applied_by text NOT NULL,
    db_user text NOT NULL DEFAULT current_user,
    dagster_run_id text
)
"""

_INSERT = """
INSERT INTO {ledger} (plan_hash, step, kind, sql, rows_remapped, transactions, attempts,
                      lock_wait_ms, hold_ms, duration_ms, applied_by, dagster_run_id)
VALUES (%(plan_hash)s, %(step)s, %(kind)s, %(sql)s, %(rows_remapped)s, %(transactions)s, %(attempts)s,
        %(lock_wait_ms)s, %(hold_ms)s, %(duration_ms)s, %(applied_by)s, %(dagster_run_id)s)
"""


def record_step(conn: psycopg.Connection, schema: str, **entry: Any) -> None:
    """Create the ledger if missing and add one step (the columns of `_INSERT`) in the caller's transaction.

    Only a missing ledger is created: CREATE ... IF NOT EXISTS would need CREATE on the schema every time.
    """
    ledger = sql.Identifier(schema, LEDGER_TABLE)
    if not ledger_exists(conn, schema):
        conn.execute(sql.SQL(_CREATE).format(ledger=ledger))
    conn.execute(sql.SQL(_INSERT).format(ledger=ledger), {**entry, "rows_remapped": Jsonb(entry["rows_remapped"])})


def ledger_exists(conn: psycopg.Connection, schema: str) -> bool:
    ledger = sql.Identifier(schema, LEDGER_TABLE).as_string(conn)
    return conn.execute("SELECT to_regclass(%s) IS NOT NULL", [ledger]).fetchone()[0]


def ledger_entries(conn: psycopg.Connection, schema: str) -> list[dict[str, Any]]:
    """Every recorded step, oldest first; none when the ledger does not exist yet or this role may not read it."""
    ledger = sql.Identifier(schema, LEDGER_TABLE)
    if not ledger_exists(conn, schema) or not conn.execute(
            "SELECT has_table_privilege(%s::regclass, 'SELECT')", [ledger.as_string(conn)]).fetchone()[0]:
        return []
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(sql.SQL("SELECT * FROM {} ORDER BY id").format(ledger)).fetchall()
