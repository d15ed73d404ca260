"""The demo database: the application's legacy (broken) schema, legacy rows and the catalog rows."""

from __future__ import annotations

import json
from importlib.resources import files

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

DEMO_DIR = files("demo")
# The demo's own app user (a row of user_profiles): the owner of the batches the demo generates.
DEMO_OWNER = "d3e0c0de-0000-4000-8000-000000000001"
DEMO_OWNER_NAME = "Demo Reviewer"
CATALOG_TABLES = {  # table -> (catalog file, key column)
    "personas": ("personas.json", "persona_key"),
    "emotional_arcs": ("emotional_arcs.json", "arc_key"),
    "training_topics": ("training_topics.json", "topic_key"),
}


class DemoDatabaseError(RuntimeError):
    """The demo schema cannot be loaded here (e.g. the database already has its tables)."""


def load_demo_database(conn: psycopg.Connection, topics_file: str = "training_topics.json") -> dict[str, int]:
    """Create the legacy schema and its rows in an empty database, in one transaction.

    Returns the row count per table. Refuses a database that already has any of the tables,
    so it never touches an application's real data.
    """
    with conn.transaction():
        existing = conn.execute(
            "SELECT array_agg(relname::text ORDER BY relname) FROM pg_class "
            "WHERE relnamespace = 'public'::regnamespace AND relname = ANY(%s)",
            [[*CATALOG_TABLES, "batch_jobs", "batch_items", "batch_checkpoints", "conversations", "user_profiles"]],
        ).fetchone()[0]
        if existing:
            raise DemoDatabaseError(f"the database already has table(s) {', '.join(existing)}; load into an empty one")
        conn.execute((DEMO_DIR / "legacy_schema.sql").read_text())
        conn.execute((DEMO_DIR / "legacy_rows.sql").read_text())
        conn.execute("INSERT INTO user_profiles (id, email, full_name) VALUES (%s, 'demo@bulkgen.invalid', %s)",
                     [DEMO_OWNER, DEMO_OWNER_NAME])
        files = {**{t: f for t, (f, _) in CATALOG_TABLES.items()}, "training_topics": topics_file}
        for table, file in files.items():
            insert_catalog_rows(conn, table, json.loads((DEMO_DIR / "catalog" / file).read_text()))
        return {
            table: conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()[0]
            for table in [*CATALOG_TABLES, "batch_jobs"]
        }


def insert_catalog_rows(conn: psycopg.Connection, table: str, rows: list[dict]) -> None:
    """Insert catalog rows, keeping the fields the table has columns for; lists go into an array column as arrays,
    lists and maps elsewhere as JSON."""
    live = dict(
        conn.execute(
            "SELECT a.attname, t.typcategory = 'A' FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid"
            " WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped",
            [table],
        ).fetchall()
    )
    columns = [c for c in rows[0] if c in live]
    statement = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
        sql.Identifier(table),
        sql.SQL(", ").join(map(sql.Identifier, columns)),
        sql.SQL(", ").join([sql.Placeholder()] * len(columns)),
    )
    with conn.cursor() as cur:
        cur.executemany(
            statement,
            [[Jsonb(r[c]) if isinstance(r[c], (list, dict)) and not live[c] else r[c] for c in columns] for r in rows],
        )
