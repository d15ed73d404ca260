"""Processing on a real database: the whole lifecycle, stop vs continue, the concurrency bound, interrupt, requeue."""

import dataclasses
import os
import resource
import signal
import threading

import psycopg
import pytest

from assets.generation.batch import JobSettings, cancel_job, written_values
from assets.generation.processing import generate_conversations
from resources.generators import ConversationRequest, GeneratedConversation, TemplateGenerator
from tests.generation.conftest import assert_job_sound

TOPICS = ["ignored_401k", "esg_investing", "grandparent_529"]


class FailingGenerator(TemplateGenerator):
    """A real generator that fails on every item of the chosen arcs."""

    fail_arcs: list[str] = []

    def generate(self, request: ConversationRequest) -> GeneratedConversation:
        if request.arc["arc_key"] in self.fail_arcs:
            raise RuntimeError(f"model refused arc {request.arc['arc_key']}")
        return super().generate(request)


class Probe:
    """Counts the generator calls running at once; can signal the process, or do anything, at the nth call."""

    def __init__(self, interrupt_after: int | None = None, signum: int = signal.SIGINT, action=None):
        self.lock, self.running, self.peak, self.calls = threading.Lock(), 0, 0, 0
        self.interrupt_after = interrupt_after
        self.action = action or (lambda: os.kill(os.getpid(), signum))  # as Ctrl-C, SIGTERM or a terminate would

    def __enter__(self):
        with self.lock:
            self.running += 1
            self.calls += 1
            self.peak = max(self.peak, self.running)
            if self.calls == self.interrupt_after:
                self.action()

    def __exit__(self, *exc):
        with self.lock:
            self.running -= 1


PROBES: dict[str, Probe] = {}


class ProbedGenerator(TemplateGenerator):
    probe: str

    def generate(self, request: ConversationRequest) -> GeneratedConversation:
        with PROBES[self.probe]:
            return super().generate(request)


class ComputingGenerator(ProbedGenerator):
    """Says it computes rather than waits (as the template generator without a delay does)."""

    @property
    def waits(self) -> bool:
        return False


def _run(dsn, store, generator, settings=JobSettings(), topics=TOPICS, **kwargs):
    with psycopg.connect(dsn, autocommit=True) as conn:
        return generate_conversations(conn, topics, generator, store, settings, label="test", **kwargs)


def test_three_topics_make_one_completed_job_with_72_conversations_and_files(fixed_db, store):
    result = _run(fixed_db, store, TemplateGenerator(delay_ms=0))
    assert (result.status, result.processed, result.succeeded, result.failed) == ("completed", 72, 72, 0)
    assert result.summary["items_by_tier"] == {"template": 45, "edge_case": 27}
    assert assert_job_sound(fixed_db, result.job.id, store) == {"completed": 72}
    with psycopg.connect(fixed_db) as conn:
        rows = conn.execute(
            "SELECT c.turn_count, a.typical_turn_count_min, a.typical_turn_count_max, c.total_tokens, c.parameters"
            "  FROM conversations c JOIN emotional_arcs a ON a.id = c.emotional_arc_id"
        ).fetchall()
        assert len(rows) == 72
        assert all(low <= turns <= high and tokens > 0 for turns, low, high, tokens, _ in rows)
        assert all(p["generator"] == "template" and p["batch_job_id"] == str(result.job.id) for *_, p in rows)
        scope = {"batch_jobs": "id = %s", "batch_items": "batch_job_id = %s",
                 "conversations": "parameters ->> 'batch_job_id' = %s::text"}
        for (table, column), allowed in written_values(JobSettings()).items():
            query = f"SELECT DISTINCT {column} FROM {table} WHERE {scope[table]}"
            seen = {v for (v,) in conn.execute(query, [result.job.id])}
            assert seen <= set(allowed) | {None}, (table, column, seen)
    assert result.preview["training_pairs"][0]["conversation_metadata"]["persona_name"] in {
        "Marcus Chen", "Jennifer Martinez", "David Chen"}


def _failure_messages(dsn, job_id) -> list[str]:
    """The distinct error messages of the job's failed items."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT DISTINCT error_message FROM batch_items WHERE batch_job_id = %s AND status = 'failed'", [job_id]
        ).fetchall()
    return [message for (message,) in rows]


def test_continue_processes_every_item_and_records_each_failure(fixed_db, store):
    generator = FailingGenerator(delay_ms=0, fail_arcs=["crisis_to_referral"])
    result = _run(fixed_db, store, generator, JobSettings(concurrent_processing=3, error_handling="continue"))
    assert result.status == "completed"
    assert assert_job_sound(fixed_db, result.job.id, store) == {"completed": 63, "failed": 9}
    assert _failure_messages(fixed_db, result.job.id) == ["RuntimeError: model refused arc crisis_to_referral"]


@pytest.mark.parametrize("workers", [1, 3])
def test_stop_stops_at_the_first_failure_and_cancels_the_rest(fixed_db, store, workers):
    generator = FailingGenerator(delay_ms=5, fail_arcs=["confusion_to_clarity"])  # first arc: item 1 fails
    result = _run(fixed_db, store, generator, JobSettings(concurrent_processing=workers, error_handling="stop"))
    assert result.status == "failed"
    counts = assert_job_sound(fixed_db, result.job.id, store)
    # Nothing starts once item 1 failed: only items already running when it failed were processed.
    assert counts["failed"] == 1 and result.processed <= workers
    assert counts["cancelled"] == 72 - result.processed


@pytest.mark.parametrize("workers", [1, 4])
def test_concurrency_is_bounded_by_concurrent_processing(fixed_db, store, workers):
    PROBES["bound"] = probe = Probe()
    result = _run(fixed_db, store, ProbedGenerator(delay_ms=15, probe="bound"),
                  JobSettings(concurrent_processing=workers), topics=["ignored_401k"])
    assert result.status == "completed" and probe.calls == 24
    assert probe.peak == workers


def test_a_generator_that_computes_rather_than_waits_runs_on_one_thread(fixed_db, store):
    """Threads would only contend for the GIL: concurrent_processing is a bound, not a quota."""
    assert not TemplateGenerator(delay_ms=0).waits and TemplateGenerator(delay_ms=1).waits
    PROBES["computes"] = probe = Probe()
    generator = ComputingGenerator(delay_ms=10, probe="computes")  # slow enough to overlap, were there threads
    result = _run(fixed_db, store, generator, JobSettings(concurrent_processing=4), topics=["ignored_401k"])
    assert result.status == "completed" and probe.calls == 24 and probe.peak == 1


def _job_state(dsn: str) -> tuple:
    """The generation jobs (id, status), and the newest one's items by status and its conversations."""
    with psycopg.connect(dsn) as conn:
        jobs = conn.execute("SELECT id, status FROM batch_jobs WHERE shared_parameters ? 'topics'"
                            " ORDER BY created_at").fetchall()
        items = dict(conn.execute("SELECT status, count(*) FROM batch_items WHERE batch_job_id = %s GROUP BY 1",
                                  [jobs[-1][0]]).fetchall())
        (conversations,) = conn.execute("SELECT count(*) FROM conversations").fetchone()
    return jobs, items, conversations


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_run_leaves_its_job_queued_and_the_next_run_does_only_the_rest(fixed_db, store, signum):
    PROBES["interrupt"] = Probe(interrupt_after=6, signum=signum)
    with pytest.raises(KeyboardInterrupt):  # let through once the job is safe: the caller stops
        _run(fixed_db, store, ProbedGenerator(delay_ms=10, probe="interrupt"), JobSettings(concurrent_processing=2))
    [(job_id, status)], items, conversations = _job_state(fixed_db)
    assert status == "queued" and "processing" not in items  # what ran was recorded, the rest waits
    assert 6 <= items["completed"] == conversations and items["queued"] == 72 - items["completed"], items
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handlers are back

    resumed = _run(fixed_db, store, TemplateGenerator(delay_ms=0))
    assert resumed.job.id == job_id and resumed.processed == 72 - items["completed"]
    assert assert_job_sound(fixed_db, job_id, store) == {"completed": 72}


def test_a_second_interrupt_is_not_deferred(fixed_db, store):
    """Pressing Ctrl-C twice means it: the second one raises at once; the job is still left to resume."""
    PROBES["twice"] = Probe(interrupt_after=3, action=lambda: [os.kill(os.getpid(), signal.SIGINT)] * 2)
    with pytest.raises(KeyboardInterrupt):
        _run(fixed_db, store, ProbedGenerator(delay_ms=10, probe="twice"))
    [(job_id, status)], items, _ = _job_state(fixed_db)
    assert status == "queued" and "processing" not in items
    assert _run(fixed_db, store, TemplateGenerator(delay_ms=0)).job.id == job_id
    assert assert_job_sound(fixed_db, job_id, store) == {"completed": 72}


@pytest.mark.parametrize("how", ["bulkgen cancel", "the app's cancel"])
def test_a_job_cancelled_while_a_run_processes_it_stays_cancelled_and_the_run_stops(fixed_db, store, how):
    def cancel():
        with psycopg.connect(fixed_db, autocommit=True) as conn:
            (job_id,) = conn.execute("SELECT id FROM batch_jobs WHERE shared_parameters ? 'topics'").fetchone()
            if how == "bulkgen cancel":
                cancel_job(conn, job_id)
            else:  # the app writes the job's status, and nothing else
                conn.execute("UPDATE batch_jobs SET status = 'cancelled' WHERE id = %s", [job_id])

    PROBES["cancel"] = Probe(interrupt_after=5, action=cancel)
    result = _run(fixed_db, store, ProbedGenerator(delay_ms=10, probe="cancel"), JobSettings(concurrent_processing=2))
    assert result.status == "cancelled"
    counts = assert_job_sound(fixed_db, result.job.id, store)
    assert 5 <= counts["completed"] < 72 and counts["completed"] + counts["cancelled"] == 72
    # Final: the next run for these topics makes a new job, it does not revive the cancelled one.
    again = _run(fixed_db, store, TemplateGenerator(delay_ms=0))
    assert again.job.id != result.job.id and not again.job.resumed and again.status == "completed"
    assert assert_job_sound(fixed_db, result.job.id, store) == counts


def test_a_new_batch_cancels_the_unfinished_job_and_makes_a_full_new_set(fixed_db, store):
    PROBES["new"] = Probe(interrupt_after=4)
    with pytest.raises(KeyboardInterrupt):
        _run(fixed_db, store, ProbedGenerator(delay_ms=10, probe="new"))
    [(old_id, _)], before, _ = _job_state(fixed_db)

    new = _run(fixed_db, store, TemplateGenerator(delay_ms=0), new_batch=True)
    assert new.job.id != old_id and not new.job.resumed and new.status == "completed" and new.processed == 72
    assert assert_job_sound(fixed_db, old_id, store) == {"completed": before["completed"],
                                                        "cancelled": 72 - before["completed"]}
    assert assert_job_sound(fixed_db, new.job.id, store) == {"completed": 72}


class OversizedGenerator(TemplateGenerator):
    """Keeps a raw response beside each file, as a model's generator does; one arc's conversations are huge."""

    huge_arc: str

    def generate(self, request: ConversationRequest) -> GeneratedConversation:
        conversation = dataclasses.replace(super().generate(request), raw='{"id": "msg_1"}')
        if request.arc["arc_key"] != self.huge_arc:
            return conversation
        return dataclasses.replace(conversation, turns=[{**t, "content": t["content"] * 200} for t in conversation.turns])


def test_a_file_write_cut_short_fails_its_item_and_leaves_no_file_behind(fixed_db, store):
    """The kernel refuses bytes past RLIMIT_FSIZE (EFBIG), as a full disk would: a raw response is stored, its
    conversation file half written. The item fails with the system's reason, and neither file outlives the run."""
    limit = 64 * 1024  # every file fits but the huge arc's, which the raw response beside it precedes
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failed write, not a killed process
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        result = _run(fixed_db, store, OversizedGenerator(delay_ms=0, huge_arc="crisis_to_referral"))
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, handler)
    assert result.status == "completed" and not result.job.resumed
    assert assert_job_sound(fixed_db, result.job.id, store) == {"completed": 63, "failed": 9}  # and no orphan file
    assert _failure_messages(fixed_db, result.job.id) == ["OSError: [Errno 27] File too large"]


class OverflowingGenerator(TemplateGenerator):
    """Writes a quality score numeric(4, 2) cannot hold: the database itself rejects the batch."""

    def generate(self, request: ConversationRequest) -> GeneratedConversation:
        conversation = super().generate(request)
        if request.arc["arc_key"] == "shame_to_acceptance":
            return GeneratedConversation(conversation.turns, conversation.total_tokens, quality_score=1000.0)
        return conversation


def test_an_unexpected_error_requeues_the_job_and_the_next_run_resumes_it(fixed_db, store):
    with pytest.raises(psycopg.errors.NumericValueOutOfRange):
        _run(fixed_db, store, OverflowingGenerator(delay_ms=0))
    with psycopg.connect(fixed_db) as conn:
        job_id, status, processed = conn.execute(
            "SELECT id, status, completed_items FROM batch_jobs WHERE shared_parameters ? 'topics'"
        ).fetchone()
        left = dict(conn.execute(
            "SELECT status, count(*) FROM batch_items WHERE batch_job_id = %s GROUP BY status", [job_id]
        ).fetchall())
    assert status == "queued" and "processing" not in left and left["queued"] == 72 - processed
    result = _run(fixed_db, store, TemplateGenerator(delay_ms=0))
    assert result.job.id == job_id and result.job.resumed and result.job.processed_before == processed
    assert result.status == "completed" and result.processed == 72 - processed
    assert assert_job_sound(fixed_db, job_id, store) == {"completed": 72}
