"""The rows generation draws on: personas, emotional arcs and training topics.

Rows are read with `SELECT *`, so the generator gets whatever columns the tables have; only
the keys, ids, `is_active` and the arc's `tier` are required (the contract names them).
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

import psycopg
from psycopg.rows import dict_row

EDGE_TIER = "edge_case"
BASE_TIER = "template"


@dataclass(frozen=True)
class Scaffolding:
    """The active personas and arcs, and the requested topics in the order asked."""

    personas: list[dict]
    arcs: list[dict]
    topics: list[dict]


def load_scaffolding(conn: psycopg.Connection, topic_keys: list[str]) -> Scaffolding:
    """Rows for a new batch over `topic_keys`; raises ValueError when one is missing or there is nothing to pair."""
    with conn.cursor(row_factory=dict_row) as cur:
        personas = cur.execute("SELECT * FROM personas WHERE is_active ORDER BY persona_key").fetchall()
        arcs = cur.execute("SELECT * FROM emotional_arcs WHERE is_active ORDER BY arc_key").fetchall()
        found = {
            row["topic_key"]: row
            for row in cur.execute("SELECT * FROM training_topics WHERE topic_key = ANY(%s)", [topic_keys])
        }
    missing = [k for k in topic_keys if k not in found]
    if missing:
        raise ValueError(f"no training topic {', '.join(missing)}")
    if not personas or not arcs:
        raise ValueError("no active personas or emotional arcs to generate for")
    return Scaffolding(personas=personas, arcs=arcs, topics=[found[k] for k in topic_keys])


def item_tier(arc: dict) -> str:
    return EDGE_TIER if arc.get("tier") == EDGE_TIER else BASE_TIER


@dataclass(frozen=True)
class JobRows:
    """The rows a job's items were built from, by id as text (as the items' parameters hold it)."""

    personas: dict[str, dict]
    arcs: dict[str, dict]
    topics: dict[str, dict]

    @classmethod
    def of(cls, scaffolding: Scaffolding) -> JobRows:
        """The rows of a job just made from `scaffolding` (every one of them)."""
        return cls(*({str(r["id"]): r for r in rows}
                     for rows in (scaffolding.personas, scaffolding.arcs, scaffolding.topics)))


_JOB_ROWS = ("SELECT * FROM {table} WHERE id IN"
             " (SELECT DISTINCT (parameters ->> %s)::uuid FROM batch_items WHERE batch_job_id = %s)")


def load_job_rows(conn: psycopg.Connection, job_id: UUID) -> JobRows:
    """Every persona, arc and topic a job's items point at (whatever columns the tables have)."""
    with conn.cursor(row_factory=dict_row) as cur:
        def rows(table: str, key: str) -> dict[str, dict]:
            return {str(r["id"]): r for r in cur.execute(_JOB_ROWS.format(table=table), [key, job_id])}

        return JobRows(
            personas=rows("personas", "persona_id"),
            arcs=rows("emotional_arcs", "arc_id"),
            topics=rows("training_topics", "topic_id"),
        )
