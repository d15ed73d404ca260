"""Batch mode: a job's items through the Anthropic Message Batches API, half the price of the Messages API.

The run claims the job's queued items, submits them as message batches (`custom_id` = item id, at most
`max_requests_per_batch` each), records each batch id on the job (`shared_parameters.message_batches`)
and on its items (`parameters.message_batch`), then polls with backoff, logging each batch's
processing, succeeded, errored and expired counts. An ended batch's results, in whatever order they
come, go through the same path as a reply from the Messages API: validated, the file stored, the
row, the item and the counters written by `record_outcomes`. An errored, expired or invalid result
puts its item in a follow-up batch, up to `batch_attempts` sends; then the item fails with the cause.

Why the run waits for its batches rather than a sensor finishing the job: the results must be
validated, stored and recorded under the job's lock, by the same code and with the same run log as
the Messages API's, which a sensor tick (bounded in time, no resources) cannot do for 100,000
results; a sensor would only launch a run to do it. A waiting run costs one idle process polling at
most every `batch_poll_max_s`, and it can be stopped at any time without loss: the next run for the
same topics re-attaches to the recorded batches and never submits an item twice. A terminated run
(or a job stopped from outside) cancels its batches.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from uuid import UUID

import orjson
import psycopg
from psycopg.types.json import Jsonb

from assets.generation.batch import BatchJob, ConversationInsert, Item, Outcome, record_outcomes
from assets.generation.budget import Budget
from resources.generators import GenerationError, Usage

RESULTS_PER_COMMIT = 500  # results recorded per transaction


@dataclass
class BatchTally:
    """What this run recorded from its batches."""

    processed: int = 0
    succeeded: int = 0
    usage: Usage = field(default_factory=Usage)
    preview_path: str | None = None
    cancelled: bool = False  # the job was cancelled from outside (a decision) while its batches ran
    interrupt: BaseException | None = None


def process_in_batches(conn: psycopg.Connection, job: BatchJob, producer, generator, budget: Budget,
                       insert: ConversationInsert, *, stop_on_failure: bool,
                       log: Callable[[str], None]) -> BatchTally:
    """Submit the job's queued items as message batches and record their results until none is left.

    Once the producer halts (an interrupt, a failure under 'stop') or the job is cancelled, the live
    batches are cancelled and it returns: the next run re-attaches to them and records what they
    finished. An error leaves the batches running for the next run to re-attach to; an interrupt
    raised rather than deferred comes back in `interrupt`.
    """
    tally = BatchTally()
    live = _live_batches(conn, job.id)  # id -> its reservation from the budget
    for reserved in live.values():
        budget.hold(reserved)
    if live:
        log(f"re-attached to message batch(es) {', '.join(sorted(live))}: their items are not submitted again")
    wait = generator.batch_poll_s
    shown: dict[str, str] = {}  # the progress last logged per batch
    try:
        while True:
            if not (producer.halt.is_set() or budget.reached):
                _submit(conn, job.id, producer, generator, budget, insert, tally, live, log)
            if not live:
                return tally
            producer.halt.wait(wait)  # an interrupt or a stop ends the wait
            wait = min(wait * 2, generator.batch_poll_max_s)
            for batch_id in list(live):
                batch = generator.retrieve_batch(batch_id)
                c = batch.request_counts
                progress = (f"message batch {batch_id} {batch.processing_status}: {c.processing} processing, "
                            f"{c.succeeded} succeeded, {c.errored} errored, {c.expired} expired, {c.canceled} canceled")
                if shown.get(batch_id) != progress:  # said when it changes, not at every poll
                    shown[batch_id] = progress
                    log(progress)
                if batch.processing_status == "ended":
                    _collect(conn, job.id, batch_id, live.pop(batch_id), producer, generator, budget, insert, tally,
                             stop_on_failure=stop_on_failure, log=log)
                    wait = generator.batch_poll_s  # a follow-up batch may start now
            tally.cancelled = tally.cancelled or _stopped(conn, job.id)
            if producer.halt.is_set() or tally.cancelled:
                _cancel(generator, live, log, "the job stopped" if tally.cancelled or not live else "the run stopped")
                return tally
    except Exception:
        raise  # the batches keep running; the next run re-attaches
    except BaseException as exc:  # an interrupt (a terminated run, Ctrl-C): the run's batches are cancelled
        _cancel(generator, live, log, "the run was interrupted")
        tally.interrupt = exc
        return tally


def cancel_job_batches(conn: psycopg.Connection, job_id: UUID, generator, log: Callable[[str], None]) -> list[str]:
    """Cancel the job's recorded batches whose results were never recorded: its run died and it was cancelled."""
    live = _live_batches(conn, job_id)
    _cancel(generator, live, log, f"batch job {job_id} was cancelled")
    return sorted(live)


def recorded_batches(conn: psycopg.Connection, job_id: UUID) -> list[str]:
    """The job's message batches whose results have not been recorded."""
    return sorted(_live_batches(conn, job_id))


def _live_batches(conn: psycopg.Connection, job_id: UUID) -> dict[str, float]:
    """The job's recorded batches whose results have not been recorded yet."""
    (batches,) = conn.execute(
        "SELECT COALESCE(shared_parameters -> 'message_batches', '{}'::jsonb) FROM batch_jobs WHERE id = %s", [job_id]
    ).fetchone()
    return {batch_id: float(info.get("estimated_usd") or 0.0) for batch_id, info in batches.items()
            if not info.get("collected")}


def _submit(conn, job_id: UUID, producer, generator, budget: Budget, insert: ConversationInsert, tally: BatchTally,
            live: dict[str, float], log) -> None:
    """Claim the queued items no live batch holds and submit them, batch by batch, while the budget allows; each
    batch joins `live` as soon as it exists, so that an interrupt from then on cancels it."""
    while items := _claim_unbatched(conn, job_id, generator.max_requests_per_batch):
        requests, sent, reserved, refused = [], [], 0.0, []
        for item in items:
            try:
                request = producer.request(item)
            except KeyError:  # a row gone since the job was made: fails as in messages mode
                _record(conn, job_id, [producer.produce(item, generator.generate)], insert, tally)
                continue
            cost = budget.reserve(generator.estimate_usage(request)) if not refused else None
            if cost is None:
                refused.append(item.id)
                continue
            reserved += cost
            requests.append(generator.batch_request(str(item.id), request))
            sent.append(item)
        if refused:
            _requeue(conn, job_id, refused)
            log(f"{budget.describe()}: {len(refused)} item(s) stay queued for a later run")
        if not sent:
            return
        try:
            batch_id = generator.create_batch(requests)
        except BaseException:
            _requeue(conn, job_id, [i.id for i in sent])
            budget.settle(reserved, None)
            raise
        live[batch_id] = reserved
        attempts = [int(i.parameters.get("batch_attempt", 0)) + 1 for i in sent]
        with conn.transaction():
            conn.execute(
                "UPDATE batch_jobs SET shared_parameters = jsonb_set(shared_parameters, '{message_batches}',"
                "   COALESCE(shared_parameters -> 'message_batches', '{}'::jsonb) || %s), updated_at = now()"
                " WHERE id = %s",
                [Jsonb({batch_id: {"requests": len(sent), "estimated_usd": round(reserved, 6)}}), job_id],
            )
            conn.execute(
                "UPDATE batch_items AS b SET parameters = b.parameters || jsonb_build_object("
                "   'message_batch', %s::text, 'batch_attempt', u.attempt), updated_at = now()"
                "  FROM jsonb_to_recordset(%s::jsonb) AS u(item uuid, attempt int) WHERE b.id = u.item",
                [batch_id, orjson.dumps([{"item": i.id, "attempt": a} for i, a in zip(sent, attempts)]).decode()],
            )
        log(f"submitted message batch {batch_id}: {len(sent)} request(s) (sends {min(attempts)} to {max(attempts)}"
            f" of at most {generator.batch_attempts}), estimated ${reserved:.4f}")
        if budget.reached:
            return


def _claim_unbatched(conn, job_id: UUID, limit: int) -> list[Item]:
    """Move up to `limit` queued items that no live batch holds to `processing`."""
    with conn.transaction():
        rows = conn.execute(
            "WITH live AS (SELECT key FROM batch_jobs j, jsonb_each(COALESCE(j.shared_parameters -> 'message_batches',"
            "                '{}'::jsonb)) WHERE j.id = %(job)s AND NOT COALESCE((value ->> 'collected')::bool, false))"
            " UPDATE batch_items AS b SET status = 'processing', updated_at = now()"
            "   FROM (SELECT id FROM batch_items WHERE batch_job_id = %(job)s AND status = 'queued'"
            "           AND COALESCE(parameters ->> 'message_batch', '') NOT IN (SELECT key FROM live)"
            "         ORDER BY position LIMIT %(limit)s FOR UPDATE SKIP LOCKED) AS q"
            "  WHERE b.id = q.id RETURNING b.id, b.position, b.topic, b.tier, b.parameters",
            {"job": job_id, "limit": limit},
        ).fetchall()
    return sorted((Item(*row) for row in rows), key=lambda i: i.position)


def _requeue(conn, job_id: UUID, item_ids: list[UUID]) -> None:
    conn.execute("UPDATE batch_items SET status = 'queued', updated_at = now()"
                 " WHERE batch_job_id = %s AND id = ANY(%s) AND status = 'processing'", [job_id, item_ids])


def _collect(conn, job_id: UUID, batch_id: str, reserved: float, producer, generator, budget: Budget,
             insert: ConversationInsert, tally: BatchTally, *, stop_on_failure: bool, log) -> None:
    """Record an ended batch's results; its items without a conversation and sends left go back to `queued`."""
    billed, retried = Usage(), 0
    results = generator.batch_results(batch_id)
    while chunk := [r for _, r in zip(range(RESULTS_PER_COMMIT), results)]:
        items = _claim_results(conn, job_id, batch_id, [r.custom_id for r in chunk])
        outcomes = []
        for result in chunk:
            item = items.get(result.custom_id)
            if item is None:  # recorded before this run was killed, or not this batch's
                continue
            outcome, usage = _outcome(item, result.result, producer, generator)
            billed += usage
            if outcome is None:
                retried += 1
            else:
                outcomes.append(outcome)
        _record(conn, job_id, outcomes, insert, tally)
        if (stop_on_failure and any(o.conversation is None for o in outcomes)) or tally.cancelled:
            producer.halt.set()
    budget.settle(reserved, billed)
    tally.usage += billed
    with conn.transaction():  # what has no conversation yet goes into a follow-up batch
        conn.execute(
            "UPDATE batch_items SET status = 'queued', parameters = parameters - 'message_batch', updated_at = now()"
            " WHERE batch_job_id = %s AND parameters ->> 'message_batch' = %s AND status IN ('queued', 'processing')",
            [job_id, batch_id],
        )
        conn.execute(
            "UPDATE batch_jobs SET shared_parameters = jsonb_set(shared_parameters, %s, 'true'), updated_at = now()"
            " WHERE id = %s", [["message_batches", batch_id, "collected"], job_id],
        )
    if retried:
        log(f"message batch {batch_id}: {retried} item(s) without a conversation go into a follow-up batch")


def _claim_results(conn, job_id: UUID, batch_id: str, custom_ids: list[str]) -> dict[str, Item]:
    """The batch's items that these results are for and that have no outcome yet, moved to `processing`."""
    ids = [UUID(c) for c in custom_ids if _is_uuid(c)]
    rows = conn.execute(
        "UPDATE batch_items SET status = 'processing', updated_at = now()"
        " WHERE batch_job_id = %s AND id = ANY(%s) AND parameters ->> 'message_batch' = %s"
        "   AND status IN ('queued', 'processing') RETURNING id, position, topic, tier, parameters",
        [job_id, ids, batch_id],
    ).fetchall()
    return {str(row[0]): Item(*row) for row in rows}


def _outcome(item: Item, result, producer, generator) -> tuple[Outcome | None, Usage]:
    """The item's outcome from its result and what the result was billed; None: it goes into a follow-up batch."""
    usage = Usage()
    try:
        request = producer.request(item)
    except KeyError:  # a row gone since the batch was sent: the item fails with that
        return producer.produce(item, generator.generate), usage
    if result.type == "succeeded":
        try:
            generated = generator.conversation_from(result.message, request)
        except GenerationError as exc:
            cause, usage = str(exc), exc.usage
        else:
            return producer.produce(item, lambda _: generated), generated.usage or usage
    elif result.type == "errored":
        error = result.error.error
        cause = generator.redact(f"the batch request errored: {error.type}: {error.message}")
    elif result.type == "expired":
        cause = "the batch expired before the request was processed"
    else:
        cause = f"the batch request was {result.type}"
    sends = int(item.parameters.get("batch_attempt", 1))
    if sends < generator.batch_attempts:
        return None, usage
    return Outcome(item, error=f"AnthropicGenerationError: {cause} (after {sends} batch sends)", usage=usage), usage


def _record(conn, job_id: UUID, outcomes: list[Outcome], insert: ConversationInsert, tally: BatchTally) -> None:
    if not outcomes:
        return
    if record_outcomes(conn, job_id, outcomes, None, insert) == "cancelled":
        tally.cancelled = True  # cancelled as a decision meanwhile
    ok = [o for o in outcomes if o.conversation is not None]
    tally.processed += len(outcomes)
    tally.succeeded += len(ok)
    tally.preview_path = tally.preview_path or (ok[0].conversation.file_path if ok else None)


def _stopped(conn, job_id: UUID) -> bool:
    """Whether the job was stopped from outside (the app, an operator) while its batches ran."""
    (status,) = conn.execute("SELECT status FROM batch_jobs WHERE id = %s", [job_id]).fetchone()
    return status not in ("queued", "processing")


def _cancel(generator, live: dict[str, float], log, why: str) -> None:
    for batch_id in list(live):
        try:
            generator.cancel_batch(batch_id)
            log(f"cancelled message batch {batch_id}: {why}")
        except GenerationError as exc:
            log(f"could not cancel message batch {batch_id}: {exc}")


def _is_uuid(text: str) -> bool:
    try:
        UUID(text)
    except ValueError:
        return False
    return True
