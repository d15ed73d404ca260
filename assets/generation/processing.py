"""The processing loop: bounded concurrent generation, batched commits, no orphans.

The calling thread claims items and records outcomes on one connection; a pool of
`concurrent_processing` threads generates conversations and stores their files (one thread when
the generator computes and the store is a local folder: with nothing to wait on, more would only
contend for the GIL). Each file is stored before the transaction that inserts its conversation and
completes its item, so a completed item always has its row and its file. A file whose transaction never
committed (the process died in between) is rewritten when its item is retried, and removed by
the prune that ends the run resuming the job. Outcomes are committed together every COMMIT_EVERY_S,
so commits grow with throughput instead of costing a transaction per item.

A metered generator estimates the queued items' usage before the first one starts, and every
outcome carries what its item was billed, so the job's estimated and actual cost can be compared.
With a budget (`max_cost_usd`), an item starts only while the run's cost stays within it
(`budget.py`); once it would not, no further item starts and the job's remaining items stay
`queued` for a later run. A generator in batch mode sends the items through the Message Batches
API instead of the threads (`message_batches.py`), recording each result the same way.

Once an item fails under `error_handling = 'stop'`, no further item starts: those already running
are recorded and the job's remaining items are cancelled. An interrupt (Ctrl-C, SIGTERM, a
terminate from the UI; see `interrupts`) also stops new items and records the running ones, but
leaves the job `queued`: the next run for the same topics resumes it and does only what is left.
A job cancelled as a decision (`bulkgen cancel`, the app's own cancel) stays cancelled: the run
notices, stops and cancels what it had not run.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from uuid import UUID, uuid5

import psycopg

from assets.generation.batch import (
    BatchJob,
    ConversationInsert,
    ConversationRow,
    Item,
    JobSettings,
    Outcome,
    claim_items,
    finish_job,
    job_summary,
    open_job,
    queued_items,
    record_outcomes,
    requeue_job,
    start_job,
    unlinked_items,
    unlock_job,
)
from assets.generation.conversation_file import (
    conversation_document,
    file_key,
    validate_document,
)
from assets.generation.budget import Budget
from assets.generation.faults import fault_point
from assets.generation.interrupts import DeferredInterrupts
from assets.generation.message_batches import process_in_batches
from assets.generation.scaffolding import JobRows, load_job_rows, load_scaffolding
from resources.conversation_store import RAW_SUFFIX, ConversationStore
from resources.generators import (
    ConversationGenerator,
    ConversationRequest,
    GeneratedConversation,
    GenerationError,
    Usage,
)

CONVERSATION_NAMESPACE = UUID("6f1c0a52-41f4-4c3e-9f55-bb1f3d0c9a27")  # conversation id = uuid5(item id)
CLAIM_AHEAD = 16  # items claimed beyond the busy workers, so they never wait on the database ...
CLAIM_AHEAD_S = 1.0  # ... or as many as they finish in this long, when that is more (fewer, larger claims)
COMMIT_EVERY_S = 0.05  # outcomes finished within this long are committed together
MAX_ERROR = 1000


@dataclass(frozen=True)
class GenerationResult:
    job: BatchJob
    status: str  # the job's final status
    processed: int  # by this run (a resumed job had some processed before)
    succeeded: int
    failed: int
    duration_s: float
    summary: dict  # job_summary() after the run
    preview: dict | None  # one conversation this run wrote, as stored
    estimated_usage: Usage | None  # for the items queued when this run started; None: the generator bills nothing
    usage: Usage  # what this run's items were billed, failed items included
    budget: Budget | None = None  # the run's spending limit and what it was billed; None: no limit
    items_left_queued: int = 0  # left for a later run: the budget was reached

    @property
    def budget_reached(self) -> bool:
        return self.budget is not None and self.budget.reached

    @property
    def throughput(self) -> float:
        """Items processed per second by this run."""
        return self.processed / self.duration_s if self.duration_s > 0 else 0.0


def generate_conversations(
    conn: psycopg.Connection,
    topic_keys: list[str],
    generator: ConversationGenerator,
    store: ConversationStore,
    settings: JobSettings,
    *,
    label: str,
    log: Callable[[str], None] = lambda _: None,
    new_batch: bool = False,
    max_cost_usd: float | None = None,
) -> GenerationResult:
    """Resume the unfinished batch job for `topic_keys` (or, with `new_batch` or none to resume, create one)
    and process it to a final status; interrupted, the job is left `queued` and the interrupt raised; with a
    budget `max_cost_usd` reached, its remaining items are left `queued` for a later run.

    `conn` must be in autocommit mode: every step commits on its own. The gate (and the owner's check
    against the users table) is the caller's; the owner is `settings.owner`, unset: $BULKGEN_OWNER.
    """
    if not conn.autocommit:
        raise ValueError("generation needs an autocommit connection: each step commits on its own")
    with DeferredInterrupts() as interrupts:
        scaffolding = load_scaffolding(conn, topic_keys)
        job = open_job(conn, scaffolding, settings, label=label, generator=generator.name, new_batch=new_batch)
        fault_point("opened")
        log(f"{'resumed' if job.resumed else 'created'} batch job {job.id}: {job.total_items} items"
            + (f", {job.processed_before} already processed" if job.resumed else ""))
        try:
            # A resumed job's items keep the rows they were made from, which may since have been deactivated.
            rows = load_job_rows(conn, job.id) if job.resumed else JobRows.of(scaffolding)
            result = _process(conn, job, rows, generator, store, interrupts, Budget(max_cost_usd, generator.cost),
                              log)
        finally:
            if not conn.broken:
                unlock_job(conn, job.id)
    if interrupts.interrupted:
        log(f"interrupted: batch job {job.id} {result.status} after {result.processed} items this run; "
            "the next run for these topics resumes it")
        interrupts.deliver()
    return result


def _process(conn, job: BatchJob, rows: JobRows, generator, store: ConversationStore,
             interrupts: DeferredInterrupts, budget: Budget, log: Callable[[str], None]) -> GenerationResult:
    estimated = _estimate(conn, job.id, rows, generator)
    start_job(conn, job.id)
    fault_point("started")
    stop_on_failure = job.settings.error_handling == "stop"
    halt = threading.Event()  # once set, no item starts: a failure under 'stop', an interrupt, a cancel
    interrupts.on_interrupt = halt.set
    if (stop_on_failure and job.failed_before) or interrupts.interrupted:
        halt.set()
    waits = generator.waits or store.remote  # on the network: threads overlap the waits
    batched = getattr(generator, "batched", False)  # message batches: the API does the work, no thread waits on it
    producer = _Producer(job, rows, generator, store, halt, stop_on_failure, budget)
    workers = _Workers(0 if batched else job.settings.concurrent_processing if waits else 1,  # a bound, not a quota
                       producer)
    insert = ConversationInsert.for_table(conn, owner=job.settings.owner, status=job.settings.conversation_status,
                                          bucket=store.bucket)
    interrupt, exhausted, cancelled = None, False, False  # interrupt: one raised rather than deferred
    in_flight = processed = succeeded = 0  # in flight: handed to the workers, outcome not yet back
    usage = Usage()
    preview_path = None
    started = time.monotonic()
    try:
        if batched:  # the Message Batches API takes the items instead of the threads below
            tally = process_in_batches(conn, job, producer, generator, budget, insert,
                                       stop_on_failure=stop_on_failure, log=log)
            processed, succeeded, usage, preview_path = tally.processed, tally.succeeded, tally.usage, tally.preview_path
            interrupt, cancelled = tally.interrupt, tally.cancelled
        while not batched:
            try:
                draining = interrupt is not None or interrupts.interrupted
                if draining:  # what was handed out is all back once the threads have ended
                    finished, in_flight = workers.drain(), 0
                else:
                    window = _window(workers.count, processed, started)
                    if not (halt.is_set() or exhausted) and in_flight <= window // 2:
                        wanted = window - in_flight
                        per_item = (math.ceil((time.monotonic() - started) * workers.count / processed)
                                    if processed else None)
                        items = claim_items(conn, job.id, wanted, per_item)
                        fault_point("claimed")
                        exhausted = len(items) < wanted
                        workers.submit(items)
                        in_flight += len(items)
                    if not in_flight:
                        break
                    workers.wait(in_flight, COMMIT_EVERY_S)
                    finished = workers.results()
                    in_flight -= len(finished)
                outcomes = [o for o in finished if o is not None]  # None: never started
                if outcomes:
                    processed += len(outcomes)
                    usage = sum((o.usage for o in outcomes if o.usage is not None), usage)
                    recorded = record_outcomes(conn, job.id, outcomes, (time.monotonic() - started) / processed, insert)
                    if recorded == "cancelled":
                        cancelled = True  # cancelled as a decision meanwhile: no further item starts
                        halt.set()
                    fault_point("recorded")
                    ok = [o for o in outcomes if o.conversation is not None]
                    succeeded += len(ok)
                    preview_path = preview_path or (ok[0].conversation.file_path if ok else None)
                if draining:
                    break
            except Exception:
                raise
            except BaseException as exc:  # an interrupt not deferred (a second one): as a deferred one, then raised
                if interrupt is not None:
                    raise
                interrupt = exc
                halt.set()
    except BaseException:
        halt.set()
        workers.stop()
        if not conn.broken:
            requeue_job(conn, job.id)
        raise
    workers.stop()
    stopped = stop_on_failure and (job.failed_before + processed - succeeded) > 0
    fault_point("finishing")
    left_queued = 0
    if interrupt is not None or interrupts.interrupted:
        status = requeue_job(conn, job.id)  # the next run resumes it; a job cancelled meanwhile stays cancelled
        if interrupt is not None:
            raise interrupt
    elif budget.reached and not (stopped or cancelled):
        status = requeue_job(conn, job.id)  # what the budget kept from starting waits for a later run
        left_queued = job_summary(conn, job.id)["items_by_status"].get("queued", 0)
        log(f"{budget.describe()}: {left_queued} item(s) left queued for a later run (not failures)")
    else:
        # A file no row points at comes only from a run that died after writing it (its job is then resumed) or
        # from a write that failed half way (its item failed); otherwise every file written has its row.
        if job.resumed or processed > succeeded:  # before the job is final: a kill after leaves no orphan
            # An unlinked item's file and the model's raw response beside it are all its folder can hold: deleted
            # by key in batches, not listed folder by folder (a LIST request per item on S3).
            files = [file_key(job.settings.owner, conversation_of(item)) for item in unlinked_items(conn, job.id)]
            store.delete(files + [f + RAW_SUFFIX for f in files])
        status = finish_job(conn, job.id, stopped=stopped, cancelled=cancelled)
        fault_point("finished")
    return GenerationResult(
        job=job,
        status=status,
        processed=processed,
        succeeded=succeeded,
        failed=processed - succeeded,
        duration_s=time.monotonic() - started,
        summary=job_summary(conn, job.id),
        preview=store.read(preview_path) if preview_path else None,
        estimated_usage=estimated,
        usage=usage,
        budget=budget if budget.max_cost_usd is not None else None,
        items_left_queued=left_queued,
    )


def _estimate(conn, job_id: UUID, rows: JobRows, generator: ConversationGenerator) -> Usage | None:
    """The usage the queued items should take, asked of the generator before any is generated."""
    if type(generator).estimate_usage is ConversationGenerator.estimate_usage:
        return None  # not metered: no need to read every queued item to learn that
    total = Usage()
    for item in queued_items(conn, job_id):
        try:
            request = _request(item, rows)
        except KeyError:  # a row gone since the job was made: the item fails with that when it runs
            continue
        estimate = generator.estimate_usage(request)
        if estimate is None:
            return None  # not metered
        total += estimate
    return total


def _window(workers: int, processed: int, started: float) -> int:
    """How many items to hold claimed: the busy workers plus what they finish in CLAIM_AHEAD_S."""
    rate = processed / max(time.monotonic() - started, 1e-3)
    return workers + max(CLAIM_AHEAD, int(rate * CLAIM_AHEAD_S))


class _Failed:
    """What a worker hands back when producing an item raised past the producer (the loop re-raises it)."""

    def __init__(self, error: BaseException):
        self.error = error


class _Workers:
    """`count` threads that turn claimed items into outcomes: a queue in, a list out.

    Not a Future per item, which takes a condition, a lock and, on every wait, a waiter: at thousands of
    items a second that was a visible share of the loop's thread. Waiting takes nothing, so an
    interrupt that ends a wait (where one usually lands) loses no outcome.
    """

    def __init__(self, count: int, produce: Callable[[Item], Outcome | None]):
        self.count = count
        self._todo: queue.SimpleQueue = queue.SimpleQueue()
        self._arrived = threading.Condition()
        self._finished: list[Outcome | None | _Failed] = []  # back from the threads, not yet taken
        self._wanted = 1
        self._stopped = False
        self._threads = [threading.Thread(target=self._work, args=(produce,), name=f"generate-{i}", daemon=True)
                         for i in range(count)]
        for thread in self._threads:
            thread.start()

    def submit(self, items: list[Item]) -> None:
        for item in items:
            self._todo.put(item)

    def wait(self, outcomes: int, within_s: float) -> None:
        """Until `outcomes` are back, or `within_s` has passed."""
        with self._arrived:
            self._wanted = outcomes
            self._arrived.wait_for(lambda: len(self._finished) >= outcomes, within_s)

    def results(self) -> list[Outcome | None]:
        """The outcomes back since the last call; None for an item that was never started."""
        with self._arrived:
            results, self._finished = self._finished, []
        for result in results:
            if isinstance(result, _Failed):
                raise result.error
        return results

    def drain(self) -> list[Outcome | None]:
        """Every outcome not yet taken, once the threads have finished what they were handed."""
        self.stop()
        return self.results()

    def stop(self) -> None:
        """Let the threads finish what they were handed (a halted producer skips it), then end them."""
        if not self._stopped:
            self._stopped = True
            for _ in self._threads:
                self._todo.put(None)
        for thread in self._threads:
            thread.join()

    def _work(self, produce: Callable[[Item], Outcome | None]) -> None:
        while (item := self._todo.get()) is not None:
            try:
                result = produce(item)
            except BaseException as exc:
                result = _Failed(exc)
            with self._arrived:
                self._finished.append(result)
                if len(self._finished) >= self._wanted:
                    self._arrived.notify()


class _Producer:
    """Generates one item's conversation, checks its file against the app's schema and stores it; an error fails
    that item (and halts under 'stop')."""

    def __init__(self, job: BatchJob, rows: JobRows, generator: ConversationGenerator, store: ConversationStore,
                 halt: threading.Event, stop_on_failure: bool, budget: Budget):
        self.job_id, self.owner = str(job.id), job.settings.owner
        self.rows, self.generator, self.store = rows, generator, store
        self.halt, self.stop_on_failure, self.budget = halt, stop_on_failure, budget

    def __call__(self, item: Item) -> Outcome | None:
        """None when the job halted, or the budget closed, before the item started: it stays claimed until the job
        cancels or requeues it."""
        if self.halt.is_set():
            return None
        return self.produce(item, self._generate_within_budget)

    def request(self, item: Item) -> ConversationRequest:
        """What the item asks of the generator; KeyError when a row it was made from is gone."""
        return _request(item, self.rows)

    def produce(self, item: Item, generate: Callable[[ConversationRequest], GeneratedConversation]) -> Outcome | None:
        """The item's outcome: its conversation from `generate`, checked and stored, or the reason it has none."""
        p = item.parameters
        generated = None
        try:
            request = _request(item, self.rows)
            generated = generate(request)
            _check_turns(generated)
            conversation_id = conversation_of(item.id)
            document = conversation_document(
                conversation_id=str(conversation_id), persona=request.persona, arc=request.arc, topic=request.topic,
                tier=item.tier, turns=generated.turns, generator=self.generator.name,
                quality_score=generated.quality_score,
            )
            validate_document(document)
            key = file_key(self.owner, conversation_id)
            size = self.store.write(key, document, raw=generated.raw)
            fault_point("written")  # the file is stored, its item not yet completed
        except _OverBudget:
            self.halt.set()
            return None
        except Exception as exc:
            if self.stop_on_failure:
                self.halt.set()
            billed = exc.usage if isinstance(exc, GenerationError) else generated.usage if generated else None
            return Outcome(item, error=f"{type(exc).__name__}: {exc}"[:MAX_ERROR], usage=billed)
        arc = request.arc
        return Outcome(item, ConversationRow(
            id=conversation_id,
            conversation_id=str(conversation_id),
            conversation_name=document["dataset_metadata"]["dataset_name"],
            persona_id=request.persona["id"],
            emotional_arc_id=arc["id"],
            training_topic_id=request.topic["id"],
            persona_key=p["persona_key"],
            emotional_arc_key=p["arc_key"],
            topic_key=p["topic_key"],
            tier=item.tier,
            parameters={"topic_key": p["topic_key"], "persona_key": p["persona_key"], "arc_key": p["arc_key"],
                        "batch_job_id": self.job_id, "batch_item_id": str(item.id),
                        "generator": self.generator.name},
            turn_count=generated.turn_count,
            total_tokens=generated.total_tokens,
            quality_score=generated.quality_score,
            starting_emotion=arc.get("starting_emotion"),
            ending_emotion=arc.get("ending_emotion"),
            file_path=key,
            file_size=size,
        ), usage=generated.usage)

    def _generate_within_budget(self, request: ConversationRequest) -> GeneratedConversation:
        reserved = self.budget.reserve(self.generator.estimate_usage(request))
        if reserved is None:
            raise _OverBudget
        billed = None
        try:
            generated = self.generator.generate(request)
            billed = generated.usage
            return generated
        except GenerationError as exc:
            billed = exc.usage
            raise
        finally:
            self.budget.settle(reserved, billed)


def conversation_of(item_id: UUID) -> UUID:
    """An item's conversation id, stable across retries: a rewritten file replaces the same key."""
    return uuid5(CONVERSATION_NAMESPACE, str(item_id))


class _OverBudget(Exception):
    """The item would take the run past its budget: it does not start."""


def _request(item: Item, rows: JobRows) -> ConversationRequest:
    """What an item asks of the generator: its rows, and a seed stable for the item."""
    p = item.parameters
    return ConversationRequest(
        persona=rows.personas[p["persona_id"]], arc=rows.arcs[p["arc_id"]], topic=rows.topics[p["topic_id"]],
        tier=item.tier, seed=f"{p['topic_key']}|{p['persona_key']}|{p['arc_key']}",
    )


def _check_turns(generated: GeneratedConversation) -> None:
    """A conversation is non-empty, starts with the user and alternates roles."""
    roles = [t.get("role") for t in generated.turns]
    expected = ["user" if i % 2 == 0 else "assistant" for i in range(len(roles))]
    if not roles or roles != expected or not all(str(t.get("content") or "").strip() for t in generated.turns):
        raise ValueError("the generator returned no conversation or turns that do not alternate user/assistant")
