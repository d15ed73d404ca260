"""The migration tests' data and yardsticks: legacy rows, unrelated constraints, whole-database snapshots."""

from __future__ import annotations

import psycopg
from psycopg import sql

from assets.audit.contract import CONTRACT
from assets.migration.execute import Outcome, migrate
from assets.migration.plan import MigrationSettings

BATCH_JOBS_CODE = ("queued", "processing", "paused", "completed", "failed", "cancelled")
LEGACY_STATUSES = ("pending", "running", "paused", "completed", "failed", "cancelled")

# Constraints the migration must leave alone, byte for byte: on the same table (one on the same
# column that is no value list, one on another column whose values include 'pending') and on
# another table whose own status column allows 'pending'.
UNRELATED_DDL = """
ALTER TABLE batch_jobs ADD CONSTRAINT batch_jobs_status_length_check CHECK (length(status) <= 20);
ALTER TABLE batch_jobs ADD COLUMN review_status text
    CONSTRAINT batch_jobs_review_status_check CHECK (review_status IN ('pending', 'approved'));
CREATE TABLE other_jobs (
    id serial PRIMARY KEY,
    status text NOT NULL CONSTRAINT other_jobs_status_check CHECK (status IN ('pending', 'running', 'done'))
);
INSERT INTO other_jobs (status) VALUES ('pending'), ('running'), ('pending'), ('done');
"""


def add_jobs(conn: psycopg.Connection, per_status: dict[str, int]) -> None:
    """More legacy batch jobs, `n` of each status (completed ones with completed_at, as the multi-column check wants)."""
    for status, n in per_status.items():
        conn.execute(
            "INSERT INTO batch_jobs (name, status, completed_at) SELECT 'job ' || i, %s, now()"
            " FROM generate_series(1, %s) i",
            [status, n],
        )


def run_migration(dsn: str, settings: MigrationSettings | None = None, **kwargs) -> Outcome:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return migrate(conn, CONTRACT, settings, applied_by="tests", **kwargs)


def snapshot(dsn: str) -> dict:
    """Every constraint (OID and definition), every table's rows, every comment in the public schema."""
    with psycopg.connect(dsn) as conn:
        constraints = conn.execute(
            "SELECT conrelid::regclass::text, conname, oid::int8, pg_get_constraintdef(oid), convalidated"
            "  FROM pg_constraint WHERE connamespace = 'public'::regnamespace ORDER BY 1, 2"
        ).fetchall()
        tables = [r[0] for r in conn.execute(
            "SELECT relname::text FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind = 'r' ORDER BY 1"
        )]
        rows = {
            t: conn.execute(sql.SQL("SELECT count(*), md5(coalesce(string_agg(r::text, ',' ORDER BY r::text), ''))"
                                    " FROM {} r").format(sql.Identifier(t))).fetchone()
            for t in tables
        }
        comments = conn.execute(
            "SELECT objoid::regclass::text, objsubid, description FROM pg_description"
            " WHERE objoid IN (SELECT oid FROM pg_class WHERE relnamespace = 'public'::regnamespace) ORDER BY 1, 2"
        ).fetchall()
    return {"constraints": constraints, "tables": tables, "rows": rows, "comments": comments}


def status_counts(dsn: str, table: str = "batch_jobs") -> dict[str, int]:
    with psycopg.connect(dsn) as conn:
        return dict(conn.execute(
            sql.SQL("SELECT status, count(*) FROM {} GROUP BY status").format(sql.Identifier(table))
        ).fetchall())


def column_checks(dsn: str, table: str, column: str) -> dict[str, tuple[int, str, bool]]:
    """The checks that constrain exactly this column: name -> (oid, definition, validated)."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT conname, oid::int8, pg_get_constraintdef(oid), convalidated FROM pg_constraint"
            " WHERE conrelid = %s::regclass AND contype = 'c'"
            "   AND conkey = ARRAY[(SELECT attnum FROM pg_attribute WHERE attrelid = %s::regclass AND attname = %s)]",
            [table, table, column],
        ).fetchall()
    return {name: (oid, definition, validated) for name, oid, definition, validated in rows}


def remapped(counts: dict[str, int], remap: dict[str, str]) -> dict[str, int]:
    """Per-status counts as they must be once `remap` is applied."""
    after: dict[str, int] = {}
    for status, n in counts.items():
        after[remap.get(status, status)] = after.get(remap.get(status, status), 0) + n
    return after
