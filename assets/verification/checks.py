"""The verification queries: what proves a generation run left the database sound.

Each check reads the batch jobs of some topics (the latest job covering each) and returns a
`Verdict`: pass or fail, the numbers it measured, and the offending rows with their ids. The
SQL lives beside this file in `queries/`; the constraint check reuses the gate's (the audit's)
evaluation of each CHECK on each status the code writes. Nothing here writes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from uuid import UUID

import psycopg
from psycopg.rows import dict_row

from assets.audit.contract import Contract
from assets.generation.batch import JobSettings, written_values
from assets.generation.conversation_file import InvalidConversationFile, validate_document
from assets.generation.gate import value_refusals
from resources.conversation_store import ConversationStore

QUERIES = Path(__file__).resolve().parent / "queries"

CHECKS: dict[str, tuple[str, Callable[[Scope], Verdict]]] = {}  # name -> (what it proves, how), in order


def check(proves: str):
    """Register a check under its function's name: a new check is its query file and one decorated function."""
    def register(fn: Callable[[Scope], Verdict]) -> Callable[[Scope], Verdict]:
        CHECKS[fn.__name__] = (proves, fn)
        return fn
    return register


@dataclass(frozen=True)
class Verdict:
    passed: bool
    numbers: dict[str, int]  # what the check measured
    offending: list[dict] = field(default_factory=list)  # the rows that break it, ids as text


@dataclass(frozen=True)
class Scope:
    """What the checks read: the batch jobs of the verified topics, in one read-only transaction."""

    conn: psycopg.Connection
    contract: Contract
    jobs: list[UUID]
    topics_without_job: list[str]
    store: ConversationStore
    live_runs: set[str]  # the labels (`run_label`) of the Dagster runs that have not finished


@dataclass(frozen=True)
class Verification:
    jobs: list[UUID]  # the batch jobs verified
    topics_without_job: list[str]
    verdicts: dict[str, Verdict]  # by check name, in CHECKS order

    @property
    def passed(self) -> bool:
        return all(v.passed for v in self.verdicts.values())


def verify_topics(
    conn: psycopg.Connection,
    contract: Contract,
    topic_keys: list[str],
    store: ConversationStore,
    live_runs: set[str],
) -> Verification:
    """Every check over the batch jobs of `topic_keys`, in one read-only transaction (rolled back).

    `live_runs` are the labels (`run_label`) of the Dagster runs that have not finished.
    """
    with conn.transaction(force_rollback=True):
        conn.execute("SET TRANSACTION READ ONLY")
        by_topic = partition_jobs(conn, topic_keys)
        jobs = sorted(set(by_topic.values()))
        missing = [t for t in topic_keys if t not in by_topic]
        scope = Scope(conn, contract, jobs, missing, store, live_runs)
        verdicts = {name: run(scope) for name, (_, run) in CHECKS.items()}
    return Verification(jobs=jobs, topics_without_job=missing, verdicts=verdicts)


def partition_jobs(conn: psycopg.Connection, topic_keys: list[str]) -> dict[str, UUID]:
    """Topic key -> its latest generation batch job (topics without one are absent)."""
    return dict(conn.execute(_query("partition_jobs"), {"topics": topic_keys}).fetchall())


@check("The live constraints (CHECKs, enum types, domains, column types) accept every value the code writes into "
       "an enum-like column of batch jobs, items and conversations, each judged as PostgreSQL judges an INSERT.")
def code_values_accepted(scope: Scope) -> Verdict:
    writes = written_values(JobSettings())
    problems = value_refusals(scope.conn, scope.contract, writes)
    return Verdict(
        passed=not problems,
        numbers={"columns": len(writes), "values": sum(len(v) for v in writes.values())},
        offending=[{"problem": p} for p in problems],
    )


@check("Each job's counters match its items: total_items = items, completed_items = completed + failed, "
       "successful_items = completed ≤ completed_items, failed_items = failed.")
def counters_match_items(scope: Scope) -> Verdict:
    rows = _rows(scope, "counters")
    offending = []
    for r in rows:
        wrong = [rule for rule, holds in [
            ("total_items = items", r["total_items"] == r["items"]),
            ("completed_items = completed + failed", r["completed_items"] == r["completed"] + r["failed"]),
            ("successful_items <= completed_items", r["successful_items"] <= r["completed_items"]),
            ("successful_items = completed", r["successful_items"] == r["completed"]),
            ("failed_items = failed", r["failed_items"] == r["failed"]),
        ] if not holds]
        if wrong:
            offending.append({**_text(r), "wrong": wrong})
    return Verdict(
        passed=not offending,
        numbers={"jobs": len(rows), "items": sum(r["items"] for r in rows),
                 "completed": sum(r["completed"] for r in rows), "failed": sum(r["failed"] for r in rows)},
        offending=offending,
    )


@check("Every completed item points at an existing conversation whose file exists in the conversation store and "
       "is valid against the app's conversation file schema.")
def completed_items_have_conversations(scope: Scope) -> Verdict:
    rows = _rows(scope, "completed_items")
    offending = []
    for r in rows:
        if problem := _conversation_problem(r, scope.store):
            offending.append({**_text(r), "problem": problem})
    return Verdict(passed=not offending, numbers={"completed_items": len(rows), "sound": len(rows) - len(offending)},
                   offending=offending)


def _conversation_problem(row: dict, store: ConversationStore) -> str | None:
    if row["conversation_id"] is None:
        return "points at no conversation"
    if row["conversation"] is None:
        return "its conversation does not exist"
    if not row["file_path"]:
        return "its conversation has no file"
    try:
        document = store.read(row["file_path"])
    except FileNotFoundError:
        return "its conversation's file is missing"
    except (OSError, ValueError) as exc:
        return f"its conversation's file does not parse: {type(exc).__name__}"
    try:
        validate_document(document)
    except InvalidConversationFile as exc:
        return str(exc)
    return None


@check("No item is left `processing`, and no job is `processing` without a live Dagster run.")
def nothing_left_processing(scope: Scope) -> Verdict:
    """A `processing` row is left behind unless its job is `processing` under one of the live runs."""
    rows = _rows(scope, "processing")
    offending = [_text(r) for r in rows if not (r["job_status"] == "processing" and r["run"] in scope.live_runs)]
    return Verdict(
        passed=not offending,
        numbers={"jobs_processing": sum(r["kind"] == "job" for r in rows),
                 "items_processing": sum(r["kind"] == "item" for r in rows)},
        offending=offending,
    )


@check("Each topic of a job has one item per active persona × active emotional arc.")
def items_per_topic(scope: Scope) -> Verdict:
    rows = _rows(scope, "topic_items")
    offending = [_text(r) for r in rows if r["items"] != r["expected"]]
    offending += [{"topic": t, "job_id": None, "items": 0, "problem": "no batch job"} for t in scope.topics_without_job]
    return Verdict(
        passed=not offending,
        numbers={"topics": len(rows), "items": sum(r["items"] for r in rows),
                 "expected_per_topic": rows[0]["expected"] if rows else 0},
        offending=offending,
    )


@check("No job holds the same (topic, persona, arc) twice.")
def no_duplicate_items(scope: Scope) -> Verdict:
    offending = [_text(r) for r in _rows(scope, "duplicate_items")]
    return Verdict(passed=not offending, numbers={"jobs": len(scope.jobs)}, offending=offending)


@cache
def _query(name: str) -> str:
    return (QUERIES / f"{name}.sql").read_text()


def _rows(scope: Scope, name: str) -> list[dict]:
    with scope.conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(_query(name), {"jobs": scope.jobs}).fetchall()


def _text(row: dict) -> dict:
    """The row JSON-ready: ids (and lists of them) as text."""
    def plain(value):
        if isinstance(value, list):
            return [plain(v) for v in value]
        return str(value) if isinstance(value, UUID) else value

    return {k: plain(v) for k, v in row.items()}
