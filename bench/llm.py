"""llm_concurrency_efficiency: achieved items/s ÷ (concurrency ÷ latency) for the Anthropic generator.

The real generation path (`generate_conversations` with `AnthropicGenerator`, its SDK client,
prompts, validation and rate limiter, limits off) against the loopback Messages API server of the
tests, run in a process of its own, every reply taking `latency_s`. One conversation is generated
first, untimed, so the SDK's import and first connection are not counted as lack of concurrency.
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


def measure(server: Server, fixed: str, workdir: Path, *, items: int, concurrency: int, latency_s: float) -> dict:
    keys = topic_keys(math.ceil(items / ITEMS_PER_TOPIC))
    fake = subprocess.Popen([sys.executable, "-m", "bench.fake_llm", str(latency_s), str(items * 3)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[1])
    name = server.create(fixed)
    root = workdir / "llm"
    try:
        url = fake.stdout.readline().strip()
        generator = AnthropicGenerator(api_key=API_KEY, base_url=url, requests_per_minute=None,
                                       tokens_per_minute=None, timeout_s=30 + 10 * latency_s)
        with psycopg.connect(server.dsn(name), autocommit=True) as conn:
            _warm(conn, generator, keys[0])
            seconds, result = timed(lambda: generate_conversations(
                conn, keys, generator, ConversationStore(root=str(root)),
                JobSettings(concurrent_processing=concurrency), label="bench llm"))
        generator.close()
        if result.succeeded != result.job.total_items:
            raise RuntimeError(f"the LLM path failed items: {result.summary['items_by_status']}")
    finally:
        out, _ = fake.communicate(input="", timeout=30)
        server.drop(name)
        shutil.rmtree(root, ignore_errors=True)
    seen = json.loads(out.splitlines()[-1]) if out.strip() else {}
    achieved = result.processed / seconds
    ideal = concurrency / latency_s
    return {
        "llm_concurrency_efficiency": achieved / ideal,
        "raw": {"items": result.processed, "concurrency": concurrency, "latency_s": latency_s, "seconds": seconds,
                "items_per_s": achieved, "ideal_items_per_s": ideal,
                "processing_items_per_s": result.throughput, "server": seen},
    }


def _warm(conn: psycopg.Connection, generator: AnthropicGenerator, topic_key: str) -> None:
    """One conversation through the generator alone (imports the SDK, opens a connection)."""
    row = lambda query, *args: conn.cursor(row_factory=psycopg.rows.dict_row).execute(query, args).fetchone()
    generator.generate(ConversationRequest(
        persona=row("SELECT * FROM personas ORDER BY persona_key LIMIT 1"),
        arc=row("SELECT * FROM emotional_arcs ORDER BY arc_key LIMIT 1"),
        topic=row("SELECT * FROM training_topics WHERE topic_key = %s", topic_key),
        tier="template", seed="warm-up"))
