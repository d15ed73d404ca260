"""The LLM figures, each through the real generation path (`generate_conversations` with `AnthropicGenerator`,
its SDK client, prompts, validation and limiter) against the tests' loopback API server in a process of its own.

- llm_concurrency_efficiency: achieved items/s ÷ (concurrency ÷ latency), limits off, every reply taking
  `latency_s`. One conversation is generated first, untimed, so the SDK's import and first connection are
  not counted as lack of concurrency.
- llm_batch_cost_ratio: what `batch_items` conversations cost through the Message Batches API ÷ through the
  Messages API, the same prompts (the same topics), each priced from the usage the API reported.
- llm_rate_limit_utilization: items/s achieved ÷ the most the server's enforced limits let through, for a
  run of about `utilization_s` seconds under all three limits (requests, input and output tokens per minute),
  the generator given the same limits. The ceiling is computed from the run's own mean tokens per item; the
  first second's worth of items (the generator's full buckets at the start) is not counted as achieved.
- llm_failed_items: items that failed in all three runs.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import psycopg

from assets.generation.batch import JobSettings
from assets.generation.processing import generate_conversations
from bench.common import ITEMS_PER_TOPIC, Server, timed, topic_keys
from resources.anthropic_generator import AnthropicGenerator
from resources.conversation_store import ConversationStore
from resources.generators import ConversationRequest

API_KEY = "sk-ant-bench-loopback"
UTILIZATION_LIMITS = {  # about 10 items a second each (prompts of ~960 tokens, replies of ~220), all three close
    "requests_per_minute": 600,
    "input_tokens_per_minute": 620_000,
    "output_tokens_per_minute": 150_000,
}


def measure(server: Server, fixed: str, workdir: Path, *, items: int, concurrency: int, latency_s: float,
            batch_items: int, utilization_s: float) -> dict:
    concurrency_figure = _concurrency(server, fixed, workdir, items=items, concurrency=concurrency,
                                      latency_s=latency_s)
    batch_figure = _batch_cost(server, fixed, workdir, items=batch_items, concurrency=concurrency)
    utilization_figure = _utilization(server, fixed, workdir, seconds=utilization_s, concurrency=concurrency)
    failed = sum(f["raw"]["failed"] for f in (concurrency_figure, batch_figure, utilization_figure))
    return {
        "llm_concurrency_efficiency": concurrency_figure["value"],
        "llm_batch_cost_ratio": batch_figure["value"],
        "llm_rate_limit_utilization": utilization_figure["value"],
        "llm_failed_items": failed,
        "raw": {"concurrency": concurrency_figure["raw"], "batch_cost": batch_figure["raw"],
                "rate_limit_utilization": utilization_figure["raw"]},
    }


class _FakeApi:
    """The loopback API server in its own process; `seen` holds what it counted once it stopped."""

    def __init__(self, *args: str):
        self.process = subprocess.Popen([sys.executable, "-m", "bench.fake_llm", *args], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True,
                                        cwd=Path(__file__).resolve().parents[1])
        self.url = self.process.stdout.readline().strip()
        self.seen: dict = {}

    def __enter__(self) -> _FakeApi:
        return self

    def __exit__(self, *exc) -> None:
        out, _ = self.process.communicate(input="", timeout=60)
        self.seen = json.loads(out.splitlines()[-1]) if out.strip() else {}


def _run(server: Server, fixed: str, root: Path, keys: list[str], generator: AnthropicGenerator, concurrency: int,
         *, warm: bool = False):
    """generate_conversations over `keys` on a fresh database: (seconds, result)."""
    name = server.create(fixed)
    try:
        with psycopg.connect(server.dsn(name), autocommit=True) as conn:
            if warm:
                _warm(conn, generator, keys[0])
            return timed(lambda: generate_conversations(
                conn, keys, generator, ConversationStore(root=str(root)),
                JobSettings(concurrent_processing=concurrency), label="bench llm"))
    finally:
        generator.close()
        server.drop(name)
        shutil.rmtree(root, ignore_errors=True)


def _concurrency(server, fixed, workdir, *, items, concurrency, latency_s) -> dict:
    keys = topic_keys(math.ceil(items / ITEMS_PER_TOPIC))
    with _FakeApi("--latency-s", str(latency_s), "--requests", str(items * 3)) as fake:
        generator = AnthropicGenerator(api_key=API_KEY, base_url=fake.url, requests_per_minute=None,
                                       timeout_s=30 + 10 * latency_s)
        seconds, result = _run(server, fixed, workdir / "llm", keys, generator, concurrency, warm=True)
    achieved, ideal = result.processed / seconds, concurrency / latency_s
    return {"value": achieved / ideal, "raw": {
        "items": result.processed, "failed": result.failed, "concurrency": concurrency, "latency_s": latency_s,
        "seconds": seconds, "items_per_s": achieved, "ideal_items_per_s": ideal,
        "processing_items_per_s": result.throughput, "server": fake.seen}}


def _batch_cost(server, fixed, workdir, *, items, concurrency) -> dict:
    keys = topic_keys(math.ceil(items / ITEMS_PER_TOPIC))
    costs, raw = {}, {}
    for mode in ("messages", "batch"):
        with _FakeApi() as fake:
            generator = AnthropicGenerator(api_key=API_KEY, base_url=fake.url, mode=mode, requests_per_minute=None,
                                           batch_poll_s=0.05, batch_poll_max_s=0.5)
            seconds, result = _run(server, fixed, workdir / f"llm-{mode}", keys, generator, concurrency)
        costs[mode] = generator.cost(result.usage)
        raw[mode] = {"items": result.processed, "succeeded": result.succeeded, "failed": result.failed,
                     "cost_usd": costs[mode], "input_tokens": result.usage.input_tokens,
                     "output_tokens": result.usage.output_tokens, "seconds": seconds, "server": fake.seen}
    return {"value": costs["batch"] / costs["messages"],
            "raw": {**raw, "failed": raw["messages"]["failed"] + raw["batch"]["failed"]}}


def _utilization(server, fixed, workdir, *, seconds, concurrency) -> dict:
    rate = min(UTILIZATION_LIMITS["requests_per_minute"] / 60, 10.0)
    keys = topic_keys(math.ceil(seconds * rate / ITEMS_PER_TOPIC))
    flags = [f"--{k.replace('_', '-')}" for k in UTILIZATION_LIMITS]
    with _FakeApi(*[a for f, v in zip(flags, UTILIZATION_LIMITS.values()) for a in (f, str(v))]) as fake:
        generator = AnthropicGenerator(api_key=API_KEY, base_url=fake.url, **UTILIZATION_LIMITS, max_retries=10)
        elapsed, result = _run(server, fixed, workdir / "llm-limits", keys, generator, concurrency, warm=True)
    usage = result.usage
    per_item_in, per_item_out = usage.input_tokens / usage.replies, usage.output_tokens / usage.replies
    ceilings = {"requests": UTILIZATION_LIMITS["requests_per_minute"] / 60,
                "input_tokens": UTILIZATION_LIMITS["input_tokens_per_minute"] / 60 / per_item_in,
                "output_tokens": UTILIZATION_LIMITS["output_tokens_per_minute"] / 60 / per_item_out}
    ceiling = min(ceilings.values())
    # The generator's buckets start full, one second's worth, a burst no steady rate includes: not counted.
    achieved = (result.processed - ceiling) / elapsed
    return {"value": achieved / ceiling, "raw": {
        "items": result.processed, "failed": result.failed, "seconds": elapsed, "items_per_s": achieved,
        "ceiling_items_per_s": ceilings, "limits": UTILIZATION_LIMITS, "mean_input_tokens": per_item_in,
        "mean_output_tokens": per_item_out, "api_requests": usage.requests, "server": fake.seen}}


def _warm(conn: psycopg.Connection, generator: AnthropicGenerator, topic_key: str) -> None:
    """One conversation through the generator alone (imports the SDK, opens a connection)."""
    row = lambda query, *args: conn.cursor(row_factory=psycopg.rows.dict_row).execute(query, args).fetchone()
    generator.generate(ConversationRequest(
        persona=row("SELECT * FROM personas ORDER BY persona_key LIMIT 1"),
        arc=row("SELECT * FROM emotional_arcs ORDER BY arc_key LIMIT 1"),
        topic=row("SELECT * FROM training_topics WHERE topic_key = %s", topic_key),
        tier="template", seed="warm-up"))
