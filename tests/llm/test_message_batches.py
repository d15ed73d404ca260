"""Batch mode: the job's items through the Message Batches API of the loopback server, via the real SDK."""

import _thread
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest

from assets.generation.batch import JobSettings
from assets.generation.processing import generate_conversations
from resources.anthropic_generator import AnthropicGenerator
from pipelines.cli import main
from resources.generators import Usage
from resources.prices import PRICES
from tests.generation.conftest import assert_job_sound, fixed_db, fixed_template, store  # noqa: F401 (fixtures)
from tests.llm.fake_anthropic import ERRORED, EXPIRED, MALFORMED, VALID, FakeAnthropic, FakeBatch

KEY = "sk-ant-api03-test-batches-5e1d"
TOPIC = "ignored_401k"  # 3 personas x 8 arcs = 24 items
JOBS = "shared_parameters ? 'topics'"  # the demo's legacy batch jobs have no topics


@pytest.fixture
def fake():
    with FakeAnthropic(polls_to_end=2) as server:
        yield server


@pytest.fixture
def batch_generator(fake):
    made = []

    def make(**config) -> AnthropicGenerator:
        defaults = dict(api_key=KEY, base_url=fake.url, mode="batch", requests_per_minute=None, batch_poll_s=0.01,
                        batch_poll_max_s=0.05, max_retries=0)
        made.append(AnthropicGenerator(**(defaults | config)))
        return made[-1]

    yield make
    for generator in made:
        generator.close()


def _generate(dsn, generator, store, **options):
    with psycopg.connect(dsn, autocommit=True) as conn:
        return generate_conversations(conn, [TOPIC], generator, store, JobSettings(), label="test batches",
                                      **options)


def _items(dsn) -> dict[str, tuple]:
    with psycopg.connect(dsn) as conn:
        return {str(i): (status, p.get("batch_attempt"), error) for i, status, p, error in conn.execute(
            "SELECT id, status, parameters, error_message FROM batch_items WHERE batch_job_id IN"
            f" (SELECT id FROM batch_jobs WHERE {JOBS})")}


def test_every_result_is_recorded_and_errored_expired_or_invalid_ones_go_into_a_follow_up_batch(
        fixed_db, store, fake, batch_generator):
    fake.batch_script(ERRORED, EXPIRED, MALFORMED)  # the first three requests of the first batch
    generator = batch_generator()
    logged = []
    result = _generate(fixed_db, generator, store, log=logged.append)

    assert (result.status, result.processed, result.succeeded) == ("completed", 24, 24)
    assert assert_job_sound(fixed_db, result.job.id, store) == {"completed": 24}
    first, follow_up = fake.batches.values()
    assert len(first.requests) == 24 and not fake.requests  # nothing went through the Messages API
    retried = {r["custom_id"] for r in first.requests[:3]}
    assert {r["custom_id"] for r in follow_up.requests} == retried
    assert {str(i) for i in _items(fixed_db)} == {r["custom_id"] for r in first.requests}  # custom_id = item id
    assert {_items(fixed_db)[i][1] for i in retried} == {2}  # sent twice

    # Billed: every succeeded result served, the invalid one's included, at the batch discount.
    billed = Usage(input_tokens=sum(u["input_tokens"] for u in fake.batch_billed),
                   output_tokens=sum(u["output_tokens"] for u in fake.batch_billed))
    assert len(fake.batch_billed) == 25
    assert (result.usage.input_tokens, result.usage.output_tokens) == (billed.input_tokens, billed.output_tokens)
    assert generator.cost(result.usage) == pytest.approx(PRICES["claude-sonnet-5"].cost(billed) / 2)
    with psycopg.connect(fixed_db) as conn:
        (batches,) = conn.execute("SELECT shared_parameters -> 'message_batches' FROM batch_jobs WHERE id = %s",
                                  [result.job.id]).fetchone()
    assert set(batches) == {first.id, follow_up.id} and all(b["collected"] for b in batches.values())
    assert any(f"message batch {first.id} ended: 0 processing, 22 succeeded, 1 errored, 1 expired" in line
               for line in logged), logged


def test_an_item_fails_with_its_cause_once_its_sends_run_out(fixed_db, store, fake, batch_generator):
    fake.batch_script(ERRORED, *[VALID] * 23, ERRORED)  # the first item errors in both batches it is sent in
    result = _generate(fixed_db, batch_generator(batch_attempts=2), store)

    assert (result.status, result.succeeded, result.processed - result.succeeded) == ("completed", 23, 1)
    assert assert_job_sound(fixed_db, result.job.id, store) == {"completed": 23, "failed": 1}
    first, second = fake.batches.values()
    failed = first.requests[0]["custom_id"]
    assert [r["custom_id"] for r in second.requests] == [failed]
    assert _items(fixed_db)[failed] == ("failed", 2, "AnthropicGenerationError: the batch request errored: api_error: "
                                                     "Internal server error (after 2 batch sends)")


def _killed_while_waiting(dsn, fake, store, tmp_path) -> FakeBatch:
    """A `bulkgen run --batch` SIGKILLed while it waits for its batch, which then never ends until told to."""
    fake.polls_to_end = 10**6
    env = {**os.environ, "ANTHROPIC_API_KEY": KEY, "ANTHROPIC_BASE_URL": fake.url,
           "DAGSTER_HOME": str(tmp_path / "dagster_home"), "CONVERSATION_STORE": str(store.root_path())}
    env.pop("DATABASE_URL", None)
    killed = subprocess.Popen([Path(sys.executable).with_name("bulkgen"), "run", "--generator", "anthropic", "--batch",
                               "--topics", TOPIC, "--database-url", dsn], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: _recorded_batches(dsn) or killed.poll() is not None, timeout=120)
        assert killed.poll() is None, killed.stderr.read()[-2000:]
    finally:
        killed.send_signal(signal.SIGKILL)
        killed.wait(10)
    [batch] = fake.batches.values()
    assert _recorded_batches(dsn) == [batch.id]  # on the job, as the run left it: still processing
    return batch


@pytest.mark.slow
def test_a_killed_run_is_resumed_by_reattaching_to_its_batch_without_resubmitting(legacy_db, store, fake, tmp_path,
                                                                                 batch_generator):
    fake.batch_script(EXPIRED)
    batch = _killed_while_waiting(legacy_db, fake, store, tmp_path)

    fake.polls_to_end = 1
    logged = []
    result = _generate(legacy_db, batch_generator(), store, log=logged.append)
    assert result.job.resumed and (result.status, result.succeeded) == ("completed", 24)
    assert assert_job_sound(legacy_db, result.job.id, store) == {"completed": 24}
    first, follow_up = fake.batches.values()  # the expired item alone was sent again, nothing else
    assert first is batch and len(follow_up.requests) == 1
    assert any(f"re-attached to message batch(es) {batch.id}" in line for line in logged)


@pytest.mark.slow
def test_bulkgen_cancel_cancels_a_dead_runs_batches_with_its_job(legacy_db, store, fake, tmp_path, monkeypatch,
                                                                 capsys):
    batch = _killed_while_waiting(legacy_db, fake, store, tmp_path)
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", fake.url)
    with psycopg.connect(legacy_db) as conn:
        (job_id,) = conn.execute(f"SELECT id FROM batch_jobs WHERE {JOBS}").fetchone()
    assert main(["cancel", "--database-url", legacy_db, str(job_id)]) == 0

    assert batch.canceled
    assert f"cancelled message batch {batch.id}: batch job {job_id} was cancelled" in capsys.readouterr().out
    with psycopg.connect(legacy_db) as conn:
        assert conn.execute("SELECT status FROM batch_jobs WHERE id = %s", [job_id]).fetchone() == ("cancelled",)


def _recorded_batches(dsn) -> list[str]:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(f"SELECT shared_parameters -> 'message_batches' FROM batch_jobs WHERE {JOBS}").fetchone()
    return list(row[0] or {}) if row else []


def test_an_interrupted_run_cancels_its_batches_and_the_next_run_records_what_they_finished(
        fixed_db, store, fake, batch_generator):
    fake.polls_to_end = 10**6
    generator = batch_generator(batch_poll_s=0.3, batch_poll_max_s=0.3)  # the run waits between polls, as it would
    polled = lambda: any(b.polls for b in fake.batches.values())
    threading.Thread(target=lambda: (_wait_for(polled), _thread.interrupt_main()), daemon=True).start()
    with pytest.raises(KeyboardInterrupt):  # taken at a safe point, then delivered
        _generate(fixed_db, generator, store)

    [batch] = fake.batches.values()
    assert batch.canceled
    with psycopg.connect(fixed_db) as conn:
        assert conn.execute(f"SELECT status FROM batch_jobs WHERE {JOBS}").fetchone() == ("queued",)
    assert {status for status, *_ in _items(fixed_db).values()} == {"queued"}

    fake.polls_to_end = 1
    result = _generate(fixed_db, batch_generator(), store)  # re-attaches: the cancelled batch's items go again
    assert result.job.resumed and (result.status, result.succeeded) == ("completed", 24)
    assert assert_job_sound(fixed_db, result.job.id, store) == {"completed": 24}
    first, follow_up = fake.batches.values()
    assert first is batch and sorted(r["custom_id"] for r in follow_up.requests) == sorted(
        r["custom_id"] for r in batch.requests)


def test_a_job_stopped_from_outside_cancels_its_batches(fixed_db, store, fake, batch_generator):
    fake.polls_to_end = 10**6

    def stop():
        _wait_for(lambda: fake.batches)
        with psycopg.connect(fixed_db, autocommit=True) as conn:  # as the app's stop button would
            conn.execute(f"UPDATE batch_jobs SET status = 'cancelled' WHERE status = 'processing' AND {JOBS}")

    threading.Thread(target=stop, daemon=True).start()
    result = _generate(fixed_db, batch_generator(), store)

    assert result.status == "cancelled" and next(iter(fake.batches.values())).canceled
    assert assert_job_sound(fixed_db, result.job.id, store) == {"cancelled": 24}


def test_a_budget_submits_only_what_fits_and_the_rest_stays_queued(fixed_db, store, fake, batch_generator):
    generator = batch_generator()
    with psycopg.connect(fixed_db, autocommit=True) as conn:
        limit = sum(_item_costs(conn, generator)) * 0.45  # about 10 of the 24 items
    result = _generate(fixed_db, generator, store, max_cost_usd=limit)

    [batch] = fake.batches.values()
    assert result.status == "queued" and result.budget_reached and 0 < len(batch.requests) < 24
    assert result.succeeded == len(batch.requests) and result.items_left_queued == 24 - len(batch.requests)
    statuses = [status for status, *_ in _items(fixed_db).values()]
    assert statuses.count("queued") == 24 - len(batch.requests) and "failed" not in statuses
    assert 0 < result.budget.billed_usd <= limit

    again = _generate(fixed_db, generator, store)  # a later run, without a limit, finishes the job
    assert again.job.resumed and again.status == "completed"
    assert assert_job_sound(fixed_db, result.job.id, store) == {"completed": 24}
    assert sum(len(b.requests) for b in fake.batches.values()) == 24  # no item sent twice


def _item_costs(conn, generator) -> list[float]:
    """The estimated cost of each of TOPIC's 24 items, as the budget reserves it."""
    from resources.generators import ConversationRequest

    rows = lambda query, *args: conn.cursor(row_factory=psycopg.rows.dict_row).execute(query, args).fetchall()
    [topic] = rows("SELECT * FROM training_topics WHERE topic_key = %s", TOPIC)
    return [generator.cost(generator.estimate_usage(ConversationRequest(persona, arc, topic, "template", "estimate")))
            for persona in rows("SELECT * FROM personas WHERE is_active")
            for arc in rows("SELECT * FROM emotional_arcs WHERE is_active")]


def _wait_for(condition, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.01)
