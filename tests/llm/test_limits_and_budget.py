"""The three per-minute limits against a server that enforces them with 429, and a run's budget, in messages mode."""

import logging

import psycopg
import pytest

from assets.generation.batch import JobSettings
from assets.generation.processing import generate_conversations
from resources.anthropic_generator import AnthropicGenerator
from resources.generators import Usage
from resources.prices import PRICES, UnknownPrice, price_of
from tests.generation.conftest import assert_job_sound, fixed_db, fixed_template, store  # noqa: F401 (fixtures)
from tests.llm.fake_anthropic import Behaviour, FakeAnthropic, ServerLimits
from tests.llm.test_message_batches import JOBS, _item_costs

KEY = "sk-ant-api03-test-limits-0c2a"
TOPIC = "ignored_401k"  # 24 items; each prompt is about 960 input tokens, each reply about 200 output tokens
LIMITS = {  # each about 10 items a second, with the other two off
    "requests_per_minute": 600,
    "input_tokens_per_minute": 600_000,
    "output_tokens_per_minute": 150_000,
}


def _run(dsn, generator, store, workers=4, **options):
    with psycopg.connect(dsn, autocommit=True) as conn:
        return generate_conversations(conn, [TOPIC], generator, store, JobSettings(concurrent_processing=workers),
                                      label="test limits", **options)


@pytest.mark.slow
@pytest.mark.parametrize("limit", sorted(LIMITS))
def test_a_limit_the_client_keeps_gets_no_429_and_one_it_exceeds_is_retried_after_429(
        fixed_db, store, limit, caplog, server_url, fixed_template):
    caplog.set_level(logging.WARNING, logger="resources.anthropic_generator")
    # The server's buckets hold two seconds' worth, the client's one: a client kept at the limit never runs the
    # server's dry, whatever a token's estimate misses by.
    with FakeAnthropic(ServerLimits(**{limit: LIMITS[limit]}, burst_s=2)) as fake:
        kept = AnthropicGenerator(**{"api_key": KEY, "base_url": fake.url, "requests_per_minute": None,
                                     limit: LIMITS[limit]})
        result = _run(fixed_db, kept, store)
        kept.close()
        assert (result.succeeded, fake.rate_limited) == (24, 0)
        assert result.usage.requests == 24
    assert "429" not in caplog.text

    from tests.conftest import fresh_database
    from resources.embedded import database_url

    with FakeAnthropic(ServerLimits(**{limit: LIMITS[limit] // 4}, burst_s=2)) as fake, \
            fresh_database(server_url, fixed_template) as name:
        dsn = database_url(server_url, name)
        unlimited = AnthropicGenerator(api_key=KEY, base_url=fake.url, requests_per_minute=None, max_retries=10)
        result = _run(dsn, unlimited, store)
        unlimited.close()
        assert result.succeeded == 24 and fake.rate_limited > 0
        assert result.usage.requests == 24 + fake.rate_limited  # every attempt counted, the refused ones too
        assert_job_sound(dsn, result.job.id, store)
    assert "HTTP 429 rate_limit_error: This request would exceed your rate limit" in caplog.text


def test_a_budget_starts_only_what_fits_and_leaves_the_rest_queued_not_failed(fixed_db, store):
    with FakeAnthropic() as fake:
        generator = AnthropicGenerator(api_key=KEY, base_url=fake.url, requests_per_minute=None)
        with psycopg.connect(fixed_db) as conn:
            limit = sum(_item_costs(conn, generator)) * 0.15  # replies are billed at about a quarter of the estimate
        logged = []
        result = _run(fixed_db, generator, store, workers=3, max_cost_usd=limit, log=logged.append)

        assert result.status == "queued" and result.budget_reached
        assert 0 < result.succeeded == result.processed < 24 and result.items_left_queued == 24 - result.processed
        assert len(fake.requests) == result.processed  # nothing started past the budget
        assert generator.cost(result.usage) == pytest.approx(result.budget.billed_usd) and result.budget.billed_usd <= limit
        with psycopg.connect(fixed_db) as conn:
            statuses = dict(conn.execute(f"SELECT b.status, count(*) FROM batch_items b JOIN batch_jobs j ON"
                                         f" j.id = b.batch_job_id WHERE j.{JOBS} GROUP BY 1").fetchall())
        assert statuses == {"completed": result.processed, "queued": 24 - result.processed}
        assert any("item(s) left queued for a later run (not failures)" in line for line in logged)

        again = _run(fixed_db, generator, store)  # no limit: the same job finishes, nothing generated twice
        assert again.job.resumed and again.status == "completed" and again.processed == 24 - result.processed
        assert assert_job_sound(fixed_db, result.job.id, store) == {"completed": 24}
        assert len(fake.requests) == 24
        generator.close()


def test_cache_tokens_are_counted_and_priced_and_the_batch_discount_halves_the_price(store):
    price = PRICES["claude-sonnet-5"]
    usage = Usage(input_tokens=1_000_000, output_tokens=1_000_000, cache_creation_input_tokens=1_000_000,
                  cache_read_input_tokens=1_000_000)
    assert price.cost(usage) == pytest.approx(2.0 + 10.0 + 2.0 * 1.25 + 2.0 * 0.1)
    assert price.cost(usage, batch=True) == pytest.approx(price.cost(usage) / 2)
    assert price_of("claude-haiku-4-5-20251001") == PRICES["claude-haiku-4-5"]  # a dated id finds its family
    with pytest.raises(UnknownPrice, match="no price for model 'gpt-x'"):
        price_of("gpt-x")
    assert price_of("gpt-x", 1.0, 2.0).cost(Usage(output_tokens=10**6)) == 2.0

    with FakeAnthropic() as fake:
        fake.script(Behaviour(cache_creation=300, cache_read=500))
        generator = AnthropicGenerator(api_key=KEY, base_url=fake.url, requests_per_minute=None)
        from tests.llm.test_anthropic_generator import request

        conversation = generator.generate(request())
        generator.close()
    [sent] = fake.requests
    assert (conversation.usage.cache_creation_input_tokens, conversation.usage.cache_read_input_tokens) == (300, 500)
    assert conversation.total_tokens == sent.usage["input_tokens"] + sent.usage["output_tokens"] + 800
