"""The `topic_conversations` asset on the Anthropic generator: the batch's estimated and actual cost and the API's
tokens in its metadata, failed items included, and each failed item's real cause in `batch_items.error_message`."""

import re

import psycopg
import pytest

from pipelines.definitions import defs
from assets.partitions import add_topic_partitions, selection_range
from resources.anthropic_generator import AnthropicGenerator
from resources.database import TargetDatabase
from resources.generators import Usage, _tokens
from tests.generation.conftest import (  # noqa: F401 (fixtures: a fixed database, a Dagster instance, a store)
    assert_job_sound,
    fixed_db,
    fixed_template,
    instance,
    store,
)
from tests.llm.fake_anthropic import MALFORMED, FakeAnthropic, unauthorized

KEY = "sk-ant-api03-test-cost-91b3"
TOPIC = "ignored_401k"  # 3 personas x 8 arcs


@pytest.fixture
def fake():
    with FakeAnthropic() as server:
        yield server


def _generate(instance, dsn, store, generator, workers):
    """The generation job for TOPIC through Dagster on a fixed database, with `workers` items at once."""
    with psycopg.connect(dsn) as conn:
        add_topic_partitions(instance, conn)
    key_range = selection_range(instance, [TOPIC])
    return defs.resolve_job_def("generation_job").execute_in_process(
        instance=instance,
        tags={"dagster/asset_partition_range_start": key_range.start,
              "dagster/asset_partition_range_end": key_range.end},
        resources={"database": TargetDatabase(url=dsn), "conversation_store": store, "generator": generator},
        run_config={"ops": {"topic_conversations": {"config": {"concurrent_processing": workers}}}},
        raise_on_error=False,
    )


def _estimate(fake) -> int:
    """Tokens the generator's estimate should come to: each item's prompt in, its arc's longest conversation out."""
    prompts = {r.prompt: r.body["system"] for r in fake.requests}  # one per item, however often it was asked
    assert len(prompts) == 24
    longest = [int(re.search(r"between \d+ and (\d+) exchanges", user)[1]) for user in prompts]
    return sum(_tokens(system) + _tokens(user) for user, system in prompts.items()) + sum(2 * n * 120 for n in longest)


def test_a_failed_items_tokens_count_in_the_cost_and_its_cause_is_recorded(fixed_db, instance, store, fake,
                                                                           monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    generator = AnthropicGenerator(base_url=fake.url, requests_per_minute=None, input_price_per_mtok=3.0,
                                   output_price_per_mtok=15.0)
    fake.script(MALFORMED, MALFORMED)  # one item at a time: the first item's reply and the one asked again
    result = _generate(instance, fixed_db, store, generator, workers=1)

    assert result.success
    [materialization] = result.asset_materializations_for_node("topic_conversations")
    metadata = {k: v.value for k, v in materialization.metadata.items()}
    with psycopg.connect(fixed_db) as conn:
        errors = conn.execute("SELECT position, error_message FROM batch_items WHERE status = 'failed'").fetchall()
        (tokens,) = conn.execute("SELECT sum(total_tokens) FROM conversations").fetchone()
    assert (metadata["successes"], metadata["failures"]) == (23, 1)
    assert assert_job_sound(fixed_db, metadata["batch_job_id"], store) == {"completed": 23, "failed": 1}
    [(position, error)] = errors
    assert position == 1 and error.startswith(
        "AnthropicGenerationError: the model's replies failed validation (reply 1: the reply is not JSON "
        "(Unterminated string")
    assert "; reply 2: the reply is not JSON" in error

    billed = fake.billed()
    failed_item = sum(r.usage["input_tokens"] + r.usage["output_tokens"] for r in fake.requests[:2])
    assert tokens == sum(billed) - failed_item  # conversations hold their own tokens; the job's cost holds all
    assert (metadata["input_tokens"], metadata["output_tokens"], metadata["api_requests"]) == (*billed, 25)
    assert metadata["cost_usd"] == round(generator.cost(Usage(input_tokens=billed[0], output_tokens=billed[1])), 6)
    assert metadata["estimated_tokens"] == _estimate(fake)
    assert metadata["estimated_cost_usd"] > metadata["cost_usd"] > 0  # the fake writes the arc's shortest


def test_a_job_whose_every_item_failed_reports_its_cost_on_the_failure(fixed_db, instance, store, fake, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    fake.script(*[unauthorized()] * 24)
    result = _generate(instance, fixed_db, store, AnthropicGenerator(base_url=fake.url, requests_per_minute=None),
                       workers=3)

    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure).step_failure_data
    metadata = {k: v.value for k, v in failure.user_failure_data.metadata.items()}
    assert (metadata["batch_job_status"], metadata["failures"], metadata["api_requests"]) == ("failed", 24, 24)
    assert (metadata["cost_usd"], metadata["total_tokens"]) == (0.0, 0)  # an error is not billed
    with psycopg.connect(fixed_db) as conn:
        errors = {e for (e,) in conn.execute("SELECT error_message FROM batch_items WHERE status = 'failed'")}
    assert {re.sub(r"req_fake_\d+", "req_fake_N", e) for e in errors} == {
        "AnthropicGenerationError: HTTP 401 authentication_error: invalid x-api-key: [redacted] (request-id req_fake_N)"
    }
