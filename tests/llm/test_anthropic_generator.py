"""The Anthropic generator through the real SDK, against a loopback server that speaks the Messages API."""

import json
import logging
import socket
import traceback
from concurrent.futures import ThreadPoolExecutor

import anthropic._base_client
import dagster as dg
import psycopg
import pytest

from assets.generation.batch import JobSettings
from assets.generation.processing import generate_conversations
from pipelines.demo import DEMO_DIR
import resources.anthropic_generator
import resources.limits
from resources.anthropic_generator import (
    AnthropicGenerationError,
    AnthropicGenerator,
    InvalidReply,
    parse_conversation,
    render_prompt,
    shared_limiter,
)
from resources.generator_choice import GENERATORS
from resources.generators import ConversationRequest, GenerationError, Usage
from resources.limits import RateLimiter
from tests.generation.conftest import fixed_db, fixed_template, store  # noqa: F401 (fixtures: a fixed database, a store)
from tests.llm.fake_anthropic import (
    MALFORMED,
    OTHER_PERSONA,
    TOO_FEW_TURNS,
    TOO_MANY_TURNS,
    TRUNCATED,
    WRONG_PERSONA,
    FakeAnthropic,
    overloaded,
    rate_limited,
    server_error,
    slow,
    unauthorized,
)
from tests.llm.virtual_clock import VirtualClock

KEY = "sk-ant-api03-test-7f3c9d2e1b5a"
CATALOG = {name: json.loads((DEMO_DIR / "catalog" / f"{name}.json").read_text())
           for name in ("personas", "emotional_arcs", "training_topics")}
PERSONA = CATALOG["personas"][0]
ARCS = {arc["arc_key"]: arc for arc in CATALOG["emotional_arcs"]}
TOPIC = CATALOG["training_topics"][0]


def request(arc_key: str = "confusion_to_clarity", persona: dict = PERSONA, topic: dict = TOPIC) -> ConversationRequest:
    return ConversationRequest(persona=persona, arc=ARCS.get(arc_key, {}), topic=topic, tier="template", seed=arc_key)


@pytest.fixture
def fake():
    with FakeAnthropic() as server:
        yield server


@pytest.fixture
def clock(monkeypatch, fake) -> VirtualClock:
    """The generator's waits (backoff, retry-after, rate limits) on a virtual clock the fake server also reads."""
    virtual = VirtualClock()
    monkeypatch.setattr(resources.anthropic_generator, "time", virtual)
    monkeypatch.setattr(resources.limits, "time", virtual)
    monkeypatch.setattr(anthropic._base_client, "time", virtual)  # the SDK's own backoff and retry-after waits
    fake.clock = virtual.monotonic
    return virtual


@pytest.fixture
def generator_for(fake):
    """Generators on the fake server: no rate limit and short backoffs unless a test says otherwise."""
    made = []

    def make(**config) -> AnthropicGenerator:
        defaults = dict(api_key=KEY, base_url=fake.url, requests_per_minute=None, timeout_s=5.0)
        made.append(AnthropicGenerator(**(defaults | config)))
        return made[-1]

    yield make
    for generator in made:
        generator.close()


def test_a_valid_conversation_from_a_prompt_built_from_the_rows(fake, generator_for):
    conversation = generator_for().generate(request())

    assert [t["role"] for t in conversation.turns] == ["user", "assistant"] * 3  # the fake answers the arc's minimum
    assert conversation.turn_count == 3 and "Marcus" in conversation.turns[0]["content"]
    [sent] = fake.requests
    assert sent.api_key == KEY and sent.headers["anthropic-version"]
    assert sent.body["model"] == "claude-sonnet-5" and sent.body["max_tokens"] == 8192
    assert "temperature" not in sent.body  # Sonnet 5 rejects any but the default
    assert sent.body["output_config"]["format"]["schema"]["required"] == ["persona", "turns"]
    arc = ARCS["confusion_to_clarity"]
    for text in (PERSONA["name"], PERSONA["archetype"], arc["name"], arc["starting_emotion"], arc["ending_emotion"],
                 "between 3 and 5 exchanges", TOPIC["name"], TOPIC["description"], *TOPIC["typical_question_examples"]):
        assert text in sent.prompt
    assert "JSON" in sent.body["system"]
    # The usage is the API's; the raw response is the API's message, kept for the file beside the conversation.
    input_tokens, output_tokens = fake.billed()
    assert conversation.usage == Usage(requests=1, replies=1, input_tokens=input_tokens, output_tokens=output_tokens)
    assert conversation.total_tokens == input_tokens + output_tokens
    raw = json.loads(conversation.raw)
    assert raw["id"] == "msg_fake_000001" and raw["usage"] == sent.usage


def test_configuration_reaches_the_request(fake, generator_for):
    generator_for(model="claude-haiku-4-5", temperature=0.7, max_tokens=2000).generate(request())
    [sent] = fake.requests
    assert (sent.body["model"], sent.body["temperature"], sent.body["max_tokens"]) == ("claude-haiku-4-5", 0.7, 2000)


def test_rows_with_only_some_columns_still_make_a_prompt_and_a_conversation(fake, generator_for):
    sparse = request(arc_key="no such arc", persona={"name": "Ana Ruiz"}, topic={"topic_key": "taxes"})
    system, user = render_prompt(sparse)
    assert "Name: Ana Ruiz" in user and "Archetype: (not given)" in user and "between 3 and 5 exchanges" in user
    assert "$" not in system + user
    assert generator_for().generate(sparse).turn_count == 3


def test_a_429_waits_for_its_retry_after_then_succeeds(fake, generator_for, clock, caplog):
    caplog.set_level(logging.WARNING, logger="resources.anthropic_generator")
    fake.script(rate_limited(retry_after="1"))
    conversation = generator_for().generate(request())

    [waited] = clock.sleeps  # the retry-after (plus at most 10%), not the 10 ms backoff; nothing waited after it
    assert 1.0 <= waited <= 1.1
    first, second = fake.requests
    assert second.arrived - first.arrived == pytest.approx(waited)
    assert conversation.usage.requests == 2 and conversation.usage.replies == 1
    assert "HTTP 429 rate_limit_error: Number of request tokens" in caplog.text and "(attempt 1 of 5)" in caplog.text


def test_529_and_500_back_off_exponentially_then_succeed(fake, generator_for, clock):
    fake.script(overloaded(), server_error())
    conversation = generator_for().generate(request())

    first, second = clock.sleeps  # the SDK's backoff: 0.5 s doubling, jittered down by at most a quarter
    assert 0.375 <= first <= 0.5
    assert 0.75 <= second <= 1.0
    assert len(fake.requests) == 3
    assert conversation.usage.requests == 3 and conversation.usage.replies == 1


def test_retries_run_out_with_the_apis_own_cause(fake, generator_for):
    fake.script(overloaded(), overloaded(), overloaded())
    with pytest.raises(AnthropicGenerationError) as failed:
        generator_for(max_retries=2).generate(request())

    assert isinstance(failed.value, GenerationError)  # the interface's error: processing reads its usage
    assert str(failed.value) == ("HTTP 529 overloaded_error: Overloaded (request-id req_fake_000003) "
                                 "(gave up after 3 attempts)")
    assert (failed.value.status_code, failed.value.error_type) == (529, "overloaded_error")
    assert len(fake.requests) == 3 and failed.value.usage == Usage(requests=3)


def test_a_client_error_is_not_retried(fake, generator_for):
    fake.script(unauthorized())
    with pytest.raises(AnthropicGenerationError, match=r"^HTTP 401 authentication_error: invalid x-api-key"):
        generator_for().generate(request())
    assert len(fake.requests) == 1


def test_a_timeout_is_retried(fake, generator_for, caplog):
    caplog.set_level(logging.WARNING, logger="resources.anthropic_generator")
    fake.script(slow(1.0))
    conversation = generator_for(timeout_s=0.3).generate(request())
    assert len(fake.requests) == 2 and conversation.usage.requests == 2
    assert "no response within 0.3 s (timeout)" in caplog.text


def test_connection_errors_are_retried_then_reported():
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    generator = AnthropicGenerator(api_key=KEY, base_url=f"http://127.0.0.1:{port}", requests_per_minute=None,
                                   max_retries=2)
    with pytest.raises(AnthropicGenerationError, match=r"^connection failed: .+\(gave up after 3 attempts\)$") as failed:
        generator.generate(request())
    assert failed.value.usage == Usage(requests=3)
    generator.close()


@pytest.mark.parametrize("workers", [3, 8])
def test_concurrent_calls_fill_the_bound_and_never_pass_it(fake, generator_for, workers):
    generator = generator_for()
    items = 3 * workers
    fake.gather(workers)  # the replies wait until `workers` calls are in flight at once

    with ThreadPoolExecutor(max_workers=workers) as pool:
        conversations = list(pool.map(generator.generate, [request()] * items))

    assert fake.max_in_flight == workers  # calls overlap, up to the bound and never past it
    assert len(conversations) == items and all(c.turn_count == 3 for c in conversations)


def test_requests_per_minute_spread_calls_across_threads_and_generators(fake, generator_for, clock):
    # Two generators with the same API and model share the process's limiter: 4 a second in all.
    generators = [generator_for(requests_per_minute=240), generator_for(requests_per_minute=240)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda g: g.generate(request()), generators * 6))

    arrivals = sorted(r.arrived - clock.start for r in fake.requests)
    # A bucket of one second's worth goes at once, then one call every 0.25 s at most (a call arrives after its
    # grant, and threads that waited meanwhile moved the clock on, so these are lower bounds).
    assert len(arrivals) == 12
    for i in range(4, 12):
        assert arrivals[i] >= (i - 3) * 0.25, arrivals


def test_requests_per_minute_space_calls_evenly_after_the_first_second_s_worth(clock):
    limiter = RateLimiter(240, None, None)  # 4 a second, a bucket of 4
    granted = []
    for _ in range(8):
        limiter.acquire(1, 1)
        granted.append(clock.monotonic())
    assert [round(t - granted[0], 6) for t in granted] == [0, 0, 0, 0, 0.25, 0.5, 0.75, 1.0]


def test_generators_of_one_api_and_model_share_one_limiter(fake):
    assert shared_limiter(fake.url, "m", 240, None, None) is shared_limiter(fake.url, "m", 240, None, None)
    assert shared_limiter(fake.url, "m", 240, None, None) is not shared_limiter(fake.url, "other", 240, None, None)


def test_output_tokens_per_minute_charge_what_the_api_counted(clock):
    limiter = RateLimiter(None, None, 600)  # output: 10 a second, a bucket of 10
    assert limiter.acquire(1000, 5) == 0  # input tokens are not limited
    limiter.settle(reserved=(1000, 5), used=(1000, 15))  # the reply was bigger than the reservation: 10 more taken
    assert limiter.acquire(0, 5) == pytest.approx(1.0)  # from -5 back up to 5 at 10 a second
    assert sum(clock.sleeps) == pytest.approx(1.0)


def test_input_tokens_are_limited_apart_from_output_tokens(clock):
    limiter = RateLimiter(None, 600, 6000)
    limiter.acquire(10, 10)
    assert limiter.acquire(0, 90) == 0  # the output bucket (100 a second) still has room
    assert limiter.acquire(10, 0) == pytest.approx(1.0)  # the input bucket waits a second for its 10


def test_a_retry_after_pauses_every_caller(clock):
    limiter = RateLimiter(None, None, None)
    limiter.pause(0.3)
    assert limiter.acquire(1, 1) == pytest.approx(0.3) and clock.sleeps == [pytest.approx(0.3)]
    assert limiter.acquire(1, 1) == 0  # the pause is over


@pytest.mark.parametrize("flaw, reason", [
    (MALFORMED, "the reply is not JSON (Unterminated string"),
    (TRUNCATED, "the reply was cut off at max_tokens"),
    (WRONG_PERSONA, f"the reply renames the persona 'Marcus Chen' to '{OTHER_PERSONA}'"),
    (TOO_FEW_TURNS, "2 exchanges where the arc asks for 3 to 5"),
    (TOO_MANY_TURNS, "6 exchanges where the arc asks for 3 to 5"),
])
def test_an_invalid_reply_is_asked_for_once_more_then_fails_with_the_reason(fake, generator_for, flaw, reason):
    fake.script(flaw, flaw)
    with pytest.raises(AnthropicGenerationError) as failed:
        generator_for().generate(request())

    message = str(failed.value)
    assert message.startswith("the model's replies failed validation (reply 1: ")
    assert message.count(reason) == 2 and "; reply 2: " in message
    input_tokens, output_tokens = fake.billed()
    assert failed.value.usage == Usage(2, 2, input_tokens, output_tokens)  # what the failed item cost


@pytest.mark.parametrize("flaw", [MALFORMED, WRONG_PERSONA, TOO_FEW_TURNS])
def test_one_invalid_reply_then_a_valid_one_and_the_tokens_of_both(fake, generator_for, flaw):
    fake.script(flaw)
    conversation = generator_for().generate(request())

    input_tokens, output_tokens = fake.billed()
    assert conversation.usage == Usage(requests=2, replies=2, input_tokens=input_tokens, output_tokens=output_tokens)
    assert conversation.total_tokens == input_tokens + output_tokens
    assert json.loads(conversation.raw)["id"] == "msg_fake_000002"


@pytest.mark.parametrize("reply, reason", [
    ({"persona": "Marcus Chen", "turns": [{"role": "assistant", "content": "Hi"}, {"role": "user", "content": "Hi"}]},
     "turn 1 is 'assistant' where 'user' was due"),
    ({"persona": "Marcus Chen", "turns": [{"role": "user", "content": "Hi"}] * 2}, "turn 2 is 'user'"),
    ({"persona": "Marcus Chen", "turns": [{"role": "user", "content": " "}]}, "turn 1 has no text"),
    ({"persona": "Marcus Chen", "turns": [{"role": "user", "content": "Hi"}]}, "does not end with the assistant"),
    ({"persona": "Marcus Chen", "conversation": []}, "no list of turns"),
])
def test_turns_alternate_from_the_user_to_the_assistant(reply, reason):
    with pytest.raises(InvalidReply, match=reason):
        parse_conversation(json.dumps(reply), request())


def test_a_fenced_reply_and_the_persona_in_other_spacing_or_case_are_accepted():
    turns = [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}] * 3
    text = "```json\n" + json.dumps({"persona": "  marcus   CHEN ", "turns": turns}) + "\n```"
    assert parse_conversation(text, request()) == turns


def test_cost_at_the_configured_prices_and_an_estimate_before_any_call(fake, generator_for):
    generator = generator_for(input_price_per_mtok=3.0, output_price_per_mtok=15.0)
    assert generator.cost(Usage(input_tokens=1_000_000, output_tokens=100_000)) == pytest.approx(4.5)
    estimate = generator.estimate_usage(request("hostility_to_boundary"))  # up to 8 exchanges
    assert estimate.output_tokens == 2 * 8 * 120 and estimate.input_tokens > 500
    assert not fake.requests


def test_the_api_key_never_appears_in_logs_errors_or_results(fake, generator_for, caplog, capfd):
    caplog.set_level(logging.DEBUG)  # the SDK's and httpx's debug logging too
    generator = generator_for()
    fake.script(rate_limited(retry_after="0"), MALFORMED)
    conversation = generator.generate(request())
    fake.script(unauthorized())  # a 401 that echoes the key
    with pytest.raises(AnthropicGenerationError) as failed:
        generator.generate(request())

    assert [r.api_key for r in fake.requests] == [KEY] * 4  # the key was sent every time ...
    assert "invalid x-api-key: [redacted]" in str(failed.value)  # ... and kept out of the error
    assert "Request options" in caplog.text  # the SDK's debug logging was on
    out, err = capfd.readouterr()
    seen = {
        "logs": caplog.text, "stdout": out, "stderr": err, "repr": repr(generator), "str": str(generator),
        "conversation": repr(conversation), "error": repr(failed.value),
        "traceback": "".join(traceback.format_exception(failed.value)),
    }
    assert [where for where, text in seen.items() if KEY in text] == []


def test_in_a_dagster_run_the_key_comes_from_the_environment_and_stays_out_of_the_event_log(fake, monkeypatch, capfd):
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)

    @dg.asset
    def conversation(generator: AnthropicGenerator) -> dg.MaterializeResult:
        generated = generator.generate(request())
        return dg.MaterializeResult(metadata={"total_tokens": generated.total_tokens,
                                              "cost_usd": generator.cost(generated.usage)})

    with dg.instance_for_test() as instance:
        result = dg.materialize([conversation], instance=instance,
                                resources={"generator": AnthropicGenerator(base_url=fake.url, requests_per_minute=None)})
        assert result.success
        records = instance.get_records_for_run(result.run_id).records
        stored = "".join(dg.serialize_value(r.event_log_entry) for r in records)
        stored += dg.serialize_value(instance.get_run_by_id(result.run_id))
    assert fake.requests[0].api_key == KEY
    assert "cost_usd" in stored and KEY not in stored
    out, err = capfd.readouterr()
    assert KEY not in out + err


def test_registered_and_usable_without_arguments(fake, monkeypatch):
    """`bulkgen run --generator anthropic` builds it with no arguments: the key and URL come from the environment."""
    assert GENERATORS["anthropic"] is AnthropicGenerator
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", fake.url)
    generator = GENERATORS["anthropic"]()
    assert generator.generate(request()).turn_count == 3 and fake.requests[0].api_key == KEY
    generator.close()

    monkeypatch.delenv("ANTHROPIC_API_KEY")
    with pytest.raises(AnthropicGenerationError, match="^no Anthropic API key: ANTHROPIC_API_KEY is not set$"):
        GENERATORS["anthropic"]().generate(request())


def test_the_processing_loop_generates_a_topic_within_its_concurrency(fake, generator_for, fixed_db, store):
    """The batch's `concurrent_processing` bounds the calls in flight; a failed item records the API's cause."""
    fake.script(rate_limited(retry_after="0"), unauthorized(), *[slow(0.1)] * 30)
    with psycopg.connect(fixed_db, autocommit=True) as conn:
        result = generate_conversations(conn, [TOPIC["topic_key"]], generator_for(), store,
                                        JobSettings(concurrent_processing=4), label="llm")
        errors = conn.execute("SELECT error_message FROM batch_items WHERE batch_job_id = %s AND status = 'failed'",
                              [result.job.id]).fetchall()
        rows = conn.execute("SELECT total_tokens, file_path FROM conversations WHERE parameters ->> 'batch_job_id' = %s",
                            [str(result.job.id)]).fetchall()

    assert (result.status, result.succeeded, result.failed) == ("completed", 23, 1)  # 3 personas x 8 arcs
    assert fake.max_in_flight == 4
    assert errors == [("AnthropicGenerationError: HTTP 401 authentication_error: invalid x-api-key: [redacted]"
                       " (request-id req_fake_000002)",)]
    assert sum(tokens for tokens, _ in rows) == sum(fake.billed())  # every billed reply is in a conversation
    for _, path in rows:  # the API's raw message beside each conversation file
        assert json.loads(store.path(path + ".raw").read_text())["type"] == "message"
