"""The verification queries: what proves a generation run left the database sound.

Each check reads the batch jobs of some topics (the latest job covering each) and returns a
`Verdict`: pass or fail, the numbers it measured, and the offending rows with their ids. The
SQL lives beside this file in `queries/`; the constraint check reuses the gate's (the audit's)
evaluation of each CHECK on each status the code writes. Nothing here writes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from uuid import UUID

import psycopg
from psycopg.rows import dict_row

from assets.audit.contract import Contract
from assets.generation.batch import JobSettings, written_values
from assets.generation.conversation_file import InvalidConversationFile, validate_document
from assets.generation.gate import database_refusals
from resources.conversation_store import ConversationStore

QUERIES = Path(__file__).resolve().parent / "queries"

CHECKS = {  # check name -> what it proves
    "statuses_accepted": "The live constraints accept every status the code writes (batch jobs, items, conversations) "
    "(each CHECK's own expression evaluated on each value, as the audit judges it).",
    "counters_match_items": "Each job's counters match its items: total_items = items, completed_items = completed "
    "+ failed, successful_items = completed ≤ completed_items, failed_items = failed.",
    "completed_items_have_conversations": "Every completed item points at an existing conversation whose file "
    "exists in the conversation store and is valid against the app's conversation file schema.",
    "nothing_left_processing": "No item is left `processing`, and no job is `processing` without a live Dagster run.",
    "items_per_topic": "Each topic of a job has one item per active persona × active emotional arc.",
    "no_duplicate_items": "No job holds the same (topic, persona, arc) twice.",
}


@dataclass(frozen=True)
class Verdict:
    passed: bool
    numbers: dict[str, int]  # what the check measured
    offending: list[dict] = field(default_factory=list)  # the rows that break it, ids as text


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
        verdicts = {
            "statuses_accepted": statuses_accepted(conn, contract),
            "counters_match_items": counters_match_items(conn, jobs),
            "completed_items_have_conversations": completed_items_have_conversations(conn, jobs, store),
            "nothing_left_processing": nothing_left_processing(conn, jobs, live_runs),
            "items_per_topic": items_per_topic(conn, jobs, missing),
            "no_duplicate_items": no_duplicate_items(conn, jobs),
        }
    return Verification(jobs=jobs, topics_without_job=missing, verdicts=verdicts)


def partition_jobs(conn: psycopg.Connection, topic_keys: list[str]) -> dict[str, UUID]:
    """Topic key -> its latest generation batch job (topics without one are absent)."""
    return dict(conn.execute(_query("partition_jobs"), {"topics": topic_keys}).fetchall())


def statuses_accepted(conn: psycopg.Connection, contract: Contract) -> Verdict:
    statuses = {column: values for column, values in written_values(JobSettings()).items() if column[1] == "status"}
    problems = database_refusals(conn, contract, statuses)
    return Verdict(
        passed=not problems,
        numbers={"columns": len(statuses), "values": sum(len(v) for v in statuses.values())},
        offending=[{"problem": p} for p in problems],
    )


def counters_match_items(conn: psycopg.Connection, jobs: list[UUID]) -> Verdict:
    rows = _rows(conn, "counters", jobs)
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


def completed_items_have_conversations(conn: psycopg.Connection, jobs: list[UUID], store: ConversationStore) -> Verdict:
    rows = _rows(conn, "completed_items", jobs)
    offending = []
    for r in rows:
        if problem := _conversation_problem(r, store):
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


def nothing_left_processing(conn: psycopg.Connection, jobs: list[UUID], live_runs: set[str]) -> Verdict:
    """A `processing` row is left behind unless its job is `processing` under one of the `live_runs`."""
    rows = _rows(conn, "processing", jobs)
    offending = [_text(r) for r in rows if not (r["job_status"] == "processing" and r["run"] in live_runs)]
    return Verdict(
        passed=not offending,
        numbers={"jobs_processing": sum(r["kind"] == "job" for r in rows),
                 "items_processing": sum(r["kind"] == "item" for r in rows)},
        offending=offending,
    )


def items_per_topic(conn: psycopg.Connection, jobs: list[UUID], topics_without_job: list[str]) -> Verdict:
    rows = _rows(conn, "topic_items", jobs)
    offending = [_text(r) for r in rows if r["items"] != r["expected"]]
    offending += [{"topic": t, "job_id": None, "items": 0, "problem": "no batch job"} for t in topics_without_job]
    return Verdict(
        passed=not offending,
        numbers={"topics": len(rows), "items": sum(r["items"] for r in rows),
                 "expected_per_topic": rows[0]["expected"] if rows else 0},
        offending=offending,
    )


def no_duplicate_items(conn: psycopg.Connection, jobs: list[UUID]) -> Verdict:
    offending = [_text(r) for r in _rows(conn, "duplicate_items", jobs)]
    return Verdict(passed=not offending, numbers={"jobs": len(jobs)}, offending=offending)


@cache
def _query(name: str) -> str:
    return (QUERIES / f"{name}.sql").read_text()


def _rows(conn: psycopg.Connection, name: str, jobs: list[UUID]) -> list[dict]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(_query(name), {"jobs": jobs}).fetchall()


def _text(row: dict) -> dict:
    """The row JSON-ready: ids (and lists of them) as text."""
    def plain(value):
        if isinstance(value, list):
            return [plain(v) for v in value]
        return str(value) if isinstance(value, UUID) else value

    return {k: plain(v) for k, v in row.items()}
