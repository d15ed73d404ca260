"""The batch lifecycle in SQL: a job and its items, claimed with SKIP LOCKED, counted atomically.

The job goes `queued → processing → completed | failed | cancelled`, each item
`queued → processing → completed | failed`, or `cancelled` when its job stopped before it ran:

- `completed`: every item was processed and at least one succeeded;
- `failed`: every item failed, or `error_handling = 'stop'` stopped the job at its first failure;
- `cancelled`: someone decided so (`bulkgen cancel`, the app's own cancel, a new batch asked for).

Terminal jobs have nothing left `queued` or `processing`. An interrupt (Ctrl-C, SIGTERM, a
terminated Dagster run) or an unexpected error puts the job and the items it held back to
`queued`; a killed process leaves them `processing`. Either way the next run for the same topics
resumes that job, unless it asks for a new batch. The processing session holds an advisory lock
on its job, which PostgreSQL releases when the session dies: that tells a dead run from a live
one. Counters only change as `SET n = n + k`, in the transaction that moves the items counted.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from uuid import UUID

import orjson
import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb, set_json_loads

from assets.generation.owner import default_owner, owner_columns, parse_owner
from assets.generation.scaffolding import BASE_TIER, EDGE_TIER, Scaffolding, item_tier
from assets.partitions import topic_partition_key
from resources.generators import Usage

JOB_STATUSES = ("queued", "processing", "completed", "failed", "cancelled")
ITEM_STATUSES = ("queued", "processing", "completed", "failed", "cancelled")
CONVERSATION_STATUS = "pending_review"  # the app's review queue lists these
PROCESSING_STATUS = "completed"  # what the app's own generator writes once the file is stored
# How long a run waits for the unfinished job of its topics that another session holds: "0", until that session
# lets go (its run finished the job, so this one completes at once, or stopped or died, so this one resumes it).
RESUME_LOCK_WAIT = "0"


class JobBusy(RuntimeError):
    """Another live run is processing the batch job for these topics."""


@dataclass(frozen=True)
class JobSettings:
    concurrent_processing: int = 3
    error_handling: str = "continue"  # or "stop"
    priority: str = "normal"
    owner: str | UUID | None = None  # the app user the batch is for; None: $BULKGEN_OWNER
    conversation_status: str = CONVERSATION_STATUS

    def __post_init__(self):
        if self.concurrent_processing < 1:
            raise ValueError("concurrent_processing must be at least 1")
        if self.error_handling not in ("stop", "continue"):
            raise ValueError(f"error_handling must be 'stop' or 'continue', not {self.error_handling!r}")


def written_values(settings: JobSettings) -> dict[tuple[str, str], tuple[str, ...]]:
    """Every value generation writes into an enum-like column: what the gate checks before writing."""
    tiers = (BASE_TIER, EDGE_TIER)
    return {
        ("batch_jobs", "status"): JOB_STATUSES,
        ("batch_jobs", "tier"): tiers,
        ("batch_jobs", "priority"): (settings.priority,),
        ("batch_jobs", "error_handling"): (settings.error_handling,),
        ("batch_items", "status"): ITEM_STATUSES,
        ("batch_items", "tier"): tiers,
        ("conversations", "status"): (settings.conversation_status,),
        ("conversations", "processing_status"): (PROCESSING_STATUS,),
        ("conversations", "tier"): tiers,
    }


@dataclass(frozen=True)
class BatchJob:
    id: UUID
    name: str
    total_items: int
    resumed: bool
    processed_before: int  # items already processed when this run opened the job
    failed_before: int
    settings: JobSettings  # the job's own (a resumed job keeps the settings it was created with)


@dataclass(frozen=True)
class Item:
    id: UUID
    position: int
    topic: str
    tier: str
    parameters: dict


@dataclass(frozen=True)
class ConversationRow:
    """What a successful item writes into `conversations` (its file is already stored), by column name."""

    id: UUID
    conversation_id: str
    conversation_name: str
    persona_id: UUID
    emotional_arc_id: UUID
    training_topic_id: UUID
    persona_key: str
    emotional_arc_key: str
    topic_key: str
    tier: str
    parameters: dict
    turn_count: int
    total_tokens: int
    quality_score: float | None
    starting_emotion: str | None
    ending_emotion: str | None
    file_path: str
    file_size: int


# Each column a conversation row fills, with its type in the rows' JSON document.
_ROW_COLUMNS = {
    "id": "uuid", "conversation_id": "text", "conversation_name": "text", "persona_id": "uuid",
    "emotional_arc_id": "uuid", "training_topic_id": "uuid", "persona_key": "text", "emotional_arc_key": "text",
    "topic_key": "text", "tier": "text", "parameters": "jsonb", "turn_count": "int", "total_tokens": "int",
    "quality_score": "numeric", "starting_emotion": "text", "ending_emotion": "text", "file_path": "text",
    "file_size": "bigint",
}


@dataclass(frozen=True)
class ConversationInsert:
    """The INSERT of a job's conversations, over the columns the live table has (optional ones may be missing).

    Besides each row's own values, every row of a job gets its status, `processing_status`, the store's
    bucket, the owner in each owner column, and `is_active`, as the app's own generator writes them.
    """

    statement: sql.Composed
    job_values: tuple

    @classmethod
    def for_table(cls, conn: psycopg.Connection, *, owner: UUID, status: str, bucket: str) -> ConversationInsert:
        live = live_columns(conn, "conversations")
        per_job = {"status": status, "processing_status": PROCESSING_STATUS, "storage_bucket": bucket,
                   "is_active": True} | dict.fromkeys(owner_columns("conversations"), owner)
        per_job = {c: v for c, v in per_job.items() if c in live}
        per_row = [c for c in _ROW_COLUMNS if c in live]
        statement = sql.SQL("INSERT INTO conversations ({columns}) SELECT {values}"
                            " FROM jsonb_to_recordset(%s::jsonb) AS c({record})").format(
            columns=sql.SQL(", ").join(map(sql.Identifier, [*per_row, *per_job])),
            values=sql.SQL(", ").join([*(sql.Identifier("c", c) for c in per_row), *[sql.Placeholder()] * len(per_job)]),
            record=sql.SQL(", ").join(sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(_ROW_COLUMNS[c]))
                                      for c in per_row),
        )
        return cls(statement, tuple(per_job.values()))


def live_columns(conn: psycopg.Connection, table: str) -> set[str]:
    """The columns `table` (as the search path finds it) has."""
    rows = conn.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attnum > 0 AND NOT attisdropped",
        [table],
    ).fetchall()
    return {name for (name,) in rows}


@dataclass(frozen=True)
class Outcome:
    item: Item
    conversation: ConversationRow | None = None
    error: str | None = None
    usage: Usage | None = None  # what a metered generator was billed for the item, failed or not


def open_job(
    conn: psycopg.Connection, scaffolding: Scaffolding, settings: JobSettings, *, label: str, generator: str,
    new_batch: bool = False,
) -> BatchJob:
    """Resume the unfinished job of `settings.owner` for exactly these topics, or create it `queued` with its items.

    `new_batch` asks for a full new set: the unfinished job is cancelled (a run still processing it
    notices and stops) and a new one created. Either way this session then holds the job's advisory
    lock until `unlock_job` (or its end).
    """
    owner = parse_owner(settings.owner or default_owner())
    settings = replace(settings, owner=owner)
    topic_keys = sorted(t["topic_key"] for t in scaffolding.topics)
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [f"bulkgen.topics:{topic_keys}"])
        found = conn.execute(
            "SELECT id FROM batch_jobs WHERE job_type = 'generation' AND status IN ('queued', 'processing')"
            "   AND shared_parameters -> 'topics' = %s AND created_by = %s ORDER BY created_at LIMIT 1",
            [Jsonb(topic_keys), owner],
        ).fetchone()
        if found is not None and new_batch:
            _cancel(conn, found[0])
        if found is None or new_batch:
            job = _create_job(conn, scaffolding, settings, topic_keys, label=label, generator=generator)
            _lock_job(conn, job.id, wait=None)
            return job
    # The job's lock is waited for outside the topics' lock, so that every run for these topics that starts
    # meanwhile finds this same job and waits for it too, rather than a new one once this one is finished.
    with conn.transaction():
        _lock_job(conn, found[0], wait=RESUME_LOCK_WAIT)
        with conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute(
                "SELECT id, name, total_items, completed_items, failed_items, concurrent_processing, error_handling,"
                "       priority FROM batch_jobs WHERE id = %s",
                [found[0]],
            ).fetchone()
        conn.execute(
            "UPDATE batch_items SET status = 'queued', estimated_time = NULL, updated_at = now()"
            " WHERE batch_job_id = %s AND status = 'processing'",
            [row["id"]],
        )
        conn.execute(  # the run now processing the job, which the run-failure sensor looks it up by
            "UPDATE batch_jobs SET shared_parameters = jsonb_set(shared_parameters, '{run}', %s)"
            " WHERE id = %s AND status IN ('queued', 'processing')",
            [Jsonb(label), row["id"]],
        )
        return BatchJob(
            id=row["id"], name=row["name"], total_items=row["total_items"], resumed=True,
            processed_before=row["completed_items"], failed_before=row["failed_items"],
            settings=JobSettings(row["concurrent_processing"], row["error_handling"], row["priority"],
                                 owner=owner, conversation_status=settings.conversation_status),
        )


def _create_job(conn, scaffolding: Scaffolding, settings: JobSettings, topic_keys: list[str], *, label: str,
                generator: str) -> BatchJob:
    triples = list(itertools.product(scaffolding.topics, scaffolding.personas, scaffolding.arcs))
    tiers = {item_tier(arc) for arc in scaffolding.arcs}
    shown = ", ".join(map(topic_partition_key, topic_keys[:3]))  # printable and short, whatever the keys hold
    shown += f" +{len(topic_keys) - 3} more" if len(topic_keys) > 3 else ""
    name = f"generation {label}: {len(topic_keys)} topic(s) ({shown})"
    shared = {
        "topics": topic_keys,
        "personas": [p["persona_key"] for p in scaffolding.personas],
        "arcs": [a["arc_key"] for a in scaffolding.arcs],
        "generator": generator,
        "run": label,
    }
    owned = [c for c in owner_columns("batch_jobs") if c in live_columns(conn, "batch_jobs")]
    (job_id,) = conn.execute(
        sql.SQL("INSERT INTO batch_jobs (name, job_type, status, priority, total_items, tier, shared_parameters,"
                " concurrent_processing, error_handling, {owned})"
                " VALUES (%s, 'generation', 'queued', %s, %s, %s, %s, %s, %s, {owners}) RETURNING id").format(
            owned=sql.SQL(", ").join(map(sql.Identifier, owned)), owners=sql.SQL(", ").join([sql.Placeholder()] * len(owned))),
        [name, settings.priority, len(triples), tiers.pop() if len(tiers) == 1 else None, Jsonb(shared),
         settings.concurrent_processing, settings.error_handling, *[settings.owner] * len(owned)],
    ).fetchone()
    with conn.cursor() as cur, cur.copy(
        "COPY batch_items (batch_job_id, position, topic, tier, parameters, status, progress) FROM STDIN"
    ) as copy:  # text, not binary: binary data must match each column's exact type, whatever the app chose
        for position, (topic, persona, arc) in enumerate(triples, start=1):
            parameters = {
                "topic_key": topic["topic_key"], "persona_key": persona["persona_key"], "arc_key": arc["arc_key"],
                "topic_id": str(topic["id"]), "persona_id": str(persona["id"]), "arc_id": str(arc["id"]),
            }
            copy.write_row((job_id, position, topic["topic_key"], item_tier(arc), orjson.dumps(parameters).decode(),
                            "queued", 0))
    return BatchJob(id=job_id, name=name, total_items=len(triples), resumed=False, processed_before=0,
                    failed_before=0, settings=settings)


def _lock_job(conn: psycopg.Connection, job_id: UUID, *, wait: str | None) -> None:
    """Take the job's session-level advisory lock; JobBusy when a live session holds it past `wait`."""
    if wait is not None:
        conn.execute(f"SET LOCAL lock_timeout = '{wait}'")
    try:
        conn.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", [f"bulkgen.batch_job:{job_id}"])
    except psycopg.errors.LockNotAvailable:
        raise JobBusy(f"batch job {job_id} for these topics is being processed by another run") from None


def unlock_job(conn: psycopg.Connection, job_id: UUID) -> None:
    conn.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", [f"bulkgen.batch_job:{job_id}"])


def start_job(conn: psycopg.Connection, job_id: UUID) -> None:
    """The job is `processing`, unless another run finished it while this one waited for its lock."""
    with conn.transaction():
        conn.execute(
            "UPDATE batch_jobs SET status = 'processing', started_at = COALESCE(started_at, now()),"
            " updated_at = now() WHERE id = %s AND status IN ('queued', 'processing')",
            [job_id],
        )


def queued_items(conn: psycopg.Connection, job_id: UUID) -> list[Item]:
    """The job's items waiting to run, unclaimed: what a run estimates its cost over before it starts."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "SELECT id, position, topic, tier, parameters FROM batch_items"
            " WHERE batch_job_id = %s AND status = 'queued' ORDER BY position",
            [job_id],
        ).fetchall()
    return [Item(r["id"], r["position"], r["topic"], r["tier"], r["parameters"]) for r in rows]


def claim_items(conn: psycopg.Connection, job_id: UUID, limit: int, estimated_time: int | None) -> list[Item]:
    """Move up to `limit` queued items to `processing` (committed), lowest positions first; none once the job
    is final (cancelled meanwhile)."""
    with conn.transaction(), conn.cursor() as cur:
        set_json_loads(orjson.loads, cur)  # the parameters of thousands of items a second
        rows = cur.execute(
            "UPDATE batch_items AS b SET status = 'processing', estimated_time = %s, updated_at = now()"
            "  FROM (SELECT id FROM batch_items WHERE batch_job_id = %s AND status = 'queued'"
            "           AND EXISTS (SELECT FROM batch_jobs WHERE id = %s AND status IN ('queued', 'processing'))"
            "         ORDER BY position LIMIT %s FOR UPDATE SKIP LOCKED) AS q"
            " WHERE b.id = q.id RETURNING b.id, b.position, b.topic, b.tier, b.parameters",
            [estimated_time, job_id, job_id, limit],
        ).fetchall()
    return sorted(itertools.starmap(Item, rows), key=lambda i: i.position)


_COMPLETE = (
    "UPDATE batch_items AS b SET status = 'completed', progress = 100, conversation_id = u.conversation,"
    " error_message = NULL, estimated_time = NULL, updated_at = now()"
    " FROM jsonb_to_recordset(%s::jsonb) AS u(item uuid, conversation uuid)"
    " WHERE b.id = u.item AND b.batch_job_id = %s AND b.status = 'processing'"
)

_FAIL = (
    "UPDATE batch_items AS b SET status = 'failed', progress = 100, error_message = u.message,"
    " estimated_time = NULL, updated_at = now()"
    " FROM jsonb_to_recordset(%s::jsonb) AS u(item uuid, message text)"
    " WHERE b.id = u.item AND b.batch_job_id = %s AND b.status = 'processing'"
)

_COUNT = """
UPDATE batch_jobs
   SET completed_items = completed_items + %(processed)s,
       successful_items = successful_items + %(succeeded)s,
       failed_items = failed_items + %(failed)s,
       estimated_time_remaining = CASE WHEN %(seconds_per_item)s::float8 IS NULL THEN estimated_time_remaining
           ELSE ceil(GREATEST(total_items - completed_items - %(processed)s, 0)
                     * %(seconds_per_item)s::float8)::int END,
       updated_at = now()
 WHERE id = %(job)s
RETURNING status
"""


def record_outcomes(
    conn: psycopg.Connection, job_id: UUID, outcomes: list[Outcome], seconds_per_item: float | None,
    insert: ConversationInsert,
) -> str:
    """In one transaction: the conversations, the items' completion or failure, and the job's counters;
    returns the job's status (`cancelled`: someone cancelled it meanwhile).

    Only items still `processing` are moved; any other state rolls the whole batch back.
    """
    done = [o for o in outcomes if o.conversation is not None]
    failed = [o for o in outcomes if o.conversation is None]
    rows = [o.conversation for o in done]
    # Rows go as one JSON document per statement, serialized by orjson (dataclasses and UUIDs as they are):
    # adapting a dozen Python lists to arrays costs the thread that records outcomes (and holds the GIL)
    # many times as much.
    with conn.pipeline() as pipeline, conn.transaction():  # one round trip for the statements
        moved = []  # each UPDATE that moves items, with how many it must move
        if done:
            conn.execute(insert.statement, [*insert.job_values, orjson.dumps(rows).decode()])
            # Linking an item checks its conversation_id foreign key, one lookup per row through a plan the
            # session caches. Planned generically while `conversations` was still small (a new application's
            # first batch), it stays a sequential scan as the table grows: quadratic over a large batch. Set
            # after the INSERT, whose lookups go to personas, arcs and topics, which a batch does not grow:
            # replanning those for every row cost as much again as the INSERT itself.
            conn.execute("SET LOCAL plan_cache_mode = force_custom_plan")
            moved.append((conn.execute(_COMPLETE, [orjson.dumps(
                [{"item": o.item.id, "conversation": c.id} for o, c in zip(done, rows)]).decode(), job_id]), len(done)))
        if failed:
            moved.append((conn.execute(_FAIL, [orjson.dumps(
                [{"item": o.item.id, "message": o.error} for o in failed]).decode(), job_id]), len(failed)))
        counted = conn.execute(_COUNT, {"processed": len(outcomes), "succeeded": len(done), "failed": len(failed),
                                        "seconds_per_item": seconds_per_item, "job": job_id})
        pipeline.sync()
        if any(cursor.rowcount != expected for cursor, expected in moved):
            raise RuntimeError("some items were no longer processing by this run; the batch was rolled back")
        (status,) = counted.fetchone()
    return status


def finish_job(conn: psycopg.Connection, job_id: UUID, *, stopped: bool, cancelled: bool) -> str:
    """The job's final status; when stopped or cancelled, the items it never ran become `cancelled`.

    A job already final (another run finished it while this one waited for its lock, or someone
    cancelled it) keeps its status.
    """
    with conn.transaction():
        # Decided here under the row's lock and sent as a parameter: the column may be an enum type, which
        # accepts an untyped parameter but not the text a CASE of literals makes.
        row = conn.execute("SELECT successful_items FROM batch_jobs WHERE id = %s FOR UPDATE", [job_id]).fetchone()
        final = "cancelled" if cancelled else "failed" if stopped or not (row and row[0]) else "completed"
        (status,) = conn.execute(
            "WITH final AS ("
            " UPDATE batch_jobs SET status = %(final)s,"
            "       completed_at = now(), estimated_time_remaining = 0, updated_at = now()"
            " WHERE id = %(job)s AND status IN ('queued', 'processing') RETURNING status)"
            " SELECT status FROM final UNION ALL SELECT status FROM batch_jobs WHERE id = %(job)s"
            "   AND NOT EXISTS (SELECT FROM final)",
            {"final": final, "job": job_id},
        ).fetchone()
        if stopped or status == "cancelled":
            _cancel_items(conn, job_id)
    return status


def _cancel_items(conn: psycopg.Connection, job_id: UUID, statuses: tuple[str, ...] = ("queued", "processing")):
    conn.execute(
        "UPDATE batch_items SET status = 'cancelled', estimated_time = NULL, updated_at = now()"
        " WHERE batch_job_id = %s AND status::text = ANY(%s)",  # the column may be an enum type
        [job_id, list(statuses)],
    )


class NotCancellable(RuntimeError):
    """The batch job does not exist, or is already final."""


def cancel_job(conn: psycopg.Connection, job_id: UUID | str) -> dict:
    """Cancel a batch job as a decision: it stays cancelled, and a run processing it stops at its next step.

    Its queued items are cancelled at once; the items a live run holds are the run's to record or
    cancel, and those of a run that died are cancelled here. Returns the job's summary.
    """
    with conn.transaction():
        row = conn.execute("SELECT status FROM batch_jobs WHERE id::text = %s FOR UPDATE", [str(job_id)]).fetchone()
        if row is None:
            raise NotCancellable(f"no batch job {job_id}")
        if row[0] not in ("queued", "processing"):
            raise NotCancellable(f"batch job {job_id} is already {row[0]}: nothing to cancel")
        _cancel(conn, job_id)
    return job_summary(conn, job_id)


def _cancel(conn: psycopg.Connection, job_id: UUID | str) -> None:
    """In the caller's transaction: the job `cancelled`, and the items no live run holds."""
    conn.execute(
        "UPDATE batch_jobs SET status = 'cancelled', completed_at = now(), estimated_time_remaining = 0,"
        " updated_at = now() WHERE id = %s AND status IN ('queued', 'processing')",
        [job_id],
    )
    (free,) = conn.execute("SELECT pg_try_advisory_xact_lock(hashtextextended(%s, 0))",
                           [f"bulkgen.batch_job:{job_id}"]).fetchone()
    _cancel_items(conn, job_id, ("queued", "processing") if free else ("queued",))


def requeue_job(conn: psycopg.Connection, job_id: UUID) -> str:
    """After an interrupt or an unexpected error: the job and the items it held wait, `queued`, for the next
    run. A job cancelled meanwhile stays cancelled, and so do the items it held. Returns the job's status."""
    with conn.transaction():
        (status,) = conn.execute("SELECT status FROM batch_jobs WHERE id = %s FOR UPDATE", [job_id]).fetchone()
        if status in ("queued", "processing"):
            status = "queued"
            conn.execute("UPDATE batch_jobs SET status = 'queued', updated_at = now() WHERE id = %s", [job_id])
            conn.execute(
                "UPDATE batch_items SET status = 'queued', estimated_time = NULL, updated_at = now()"
                " WHERE batch_job_id = %s AND status = 'processing'",
                [job_id],
            )
        elif status == "cancelled":
            _cancel_items(conn, job_id)
    return status


def release_run_jobs(conn: psycopg.Connection, label: str) -> list[UUID]:
    """After the run `label` ended with its job still `processing` (its process died): leave nothing `processing`.

    The job is requeued, as after an interrupt, for the next run to resume, whether the run failed or
    was canceled (terminated is interrupted, not a decision about the job). A job a live session holds
    (resumed since) is left alone.
    """
    candidates = conn.execute(
        "SELECT id FROM batch_jobs WHERE status = 'processing' AND shared_parameters ->> 'run' = %s", [label]
    ).fetchall()
    released = []
    for (job_id,) in candidates:
        try:
            with conn.transaction():
                _lock_job(conn, job_id, wait="100ms")
        except JobBusy:
            continue
        try:
            status, run = conn.execute(
                "SELECT status, shared_parameters ->> 'run' FROM batch_jobs WHERE id = %s", [job_id]
            ).fetchone()
            if (status, run) != ("processing", label):  # finished or resumed while this waited
                continue
            requeue_job(conn, job_id)
            released.append(job_id)
        finally:
            unlock_job(conn, job_id)
    return released


def unlinked_items(conn: psycopg.Connection, job_id: UUID) -> list[UUID]:
    """The job's items that point at no conversation: a file stored for one of them is an orphan."""
    rows = conn.execute(
        "SELECT id FROM batch_items WHERE batch_job_id = %s AND conversation_id IS NULL", [job_id]
    ).fetchall()
    return [item for (item,) in rows]


def job_summary(conn: psycopg.Connection, job_id: UUID) -> dict:
    """The job's row and its items per status and tier, for metadata and the CLI."""
    with conn.cursor(row_factory=dict_row) as cur:
        job = cur.execute(
            "SELECT id, name, status, total_items, completed_items, successful_items, failed_items,"
            "       concurrent_processing, error_handling, started_at, completed_at, estimated_time_remaining"
            "  FROM batch_jobs WHERE id = %s",
            [job_id],
        ).fetchone()
        counts = cur.execute(
            "SELECT status, tier, count(*) AS n FROM batch_items WHERE batch_job_id = %s GROUP BY status, tier",
            [job_id],
        ).fetchall()
    by_status, by_tier = {}, {}
    for row in counts:
        by_status[row["status"]] = by_status.get(row["status"], 0) + row["n"]
        by_tier[row["tier"]] = by_tier.get(row["tier"], 0) + row["n"]
    return job | {"items_by_status": by_status, "items_by_tier": by_tier}
