"""`bulkgen run --generator anthropic` as a user runs it: a real subprocess with the key in its environment,
the real SDK talking to the loopback API, the runs recorded in a DAGSTER_HOME of its own."""

import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import psycopg
import pytest

from pipelines.cli import main
from resources.conversation_store import RAW_SUFFIX, ConversationStore
from tests.generation.conftest import assert_job_sound
from tests.llm.fake_anthropic import MALFORMED, FakeAnthropic, rate_limited

KEY = "sk-ant-api03-FAKE-cli-4d9e2b7a1c6f0e85"  # recognizable wherever it might leak
TOPIC = "ignored_401k"  # 3 personas x 8 arcs
PRICES = (2.0, 10.0)  # the generator's default dollars per million input and output tokens


@pytest.fixture
def fake():
    with FakeAnthropic() as server:
        yield server


@pytest.mark.slow
def test_run_generates_a_topic_end_to_end_and_the_key_is_nowhere(legacy_db, fake, tmp_path):
    home, root = tmp_path / "dagster_home", tmp_path / "conversations"
    env = {**os.environ, "ANTHROPIC_API_KEY": KEY, "ANTHROPIC_BASE_URL": fake.url, "DAGSTER_HOME": str(home),
           "CONVERSATION_STORE": str(root), "ANTHROPIC_LOG": "debug"}  # the SDK's own logging on stderr too
    env.pop("DATABASE_URL", None)
    fake.script(rate_limited(retry_after="0"), MALFORMED)  # a retry and a reply asked for again, both logged
    command = [Path(sys.executable).with_name("bulkgen"), "run", "--generator", "anthropic", "--topics", TOPIC,
               "--database-url", legacy_db, "--requests-per-minute", "0"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]

    # The database: one completed job of 24 items, each with its conversation, its file and the API's raw message.
    with psycopg.connect(legacy_db) as conn:
        (job_id, status, total, successful, failed, generator), = conn.execute(
            "SELECT id, status, total_items, successful_items, failed_items, shared_parameters ->> 'generator'"
            "  FROM batch_jobs WHERE shared_parameters ? 'topics'"
        ).fetchall()
        rows = conn.execute(
            "SELECT c.total_tokens, c.file_path, c.parameters ->> 'generator' FROM conversations c"
            "  JOIN batch_items b ON b.conversation_id = c.id WHERE b.batch_job_id = %s", [job_id]
        ).fetchall()
    assert (status, total, successful, failed, generator) == ("completed", 24, 24, 0, "anthropic")
    store = ConversationStore(root=str(root))
    assert assert_job_sound(legacy_db, job_id, store) == {"completed": 24}
    assert len(rows) == 24 and {g for *_, g in rows} == {"anthropic"}
    for _, path, _ in rows:
        pairs = store.read(path)["training_pairs"]
        assert pairs[0]["training_metadata"]["generator"] == "anthropic"
        # The model's emotion per user turn and strategy per reply, where the app reads them.
        assert pairs[0]["emotional_context"]["detected_emotions"]["primary"] == pairs[0]["emotional_context"][
            "starting_emotion"]
        assert [p["response_strategy"]["primary_strategy"] for p in pairs] == [
            f"step {i}: list the numbers" for i in range(1, len(pairs) + 1)]
        assert json.loads(store.path(path + RAW_SUFFIX).read_text())["type"] == "message"

    # Tokens are the API's: what the fake billed, in the conversations and in the materialization's metadata.
    input_tokens, output_tokens = fake.billed()
    assert len(fake.requests) == 26 and {r.api_key for r in fake.requests} == {KEY}
    assert sum(tokens for tokens, *_ in rows) == input_tokens + output_tokens
    with dg.DagsterInstance.from_config(str(home)) as instance:
        [run] = instance.get_runs()
        [record] = instance.fetch_materializations(dg.AssetKey("topic_conversations"), limit=10).records
        metadata = {k: v.value for k, v in record.asset_materialization.metadata.items()}
        stored = dg.serialize_value(run) + "".join(
            dg.serialize_value(r.event_log_entry) for r in instance.get_records_for_run(run.run_id).records)
    assert run.is_success and run.job_name == "chain_job"
    cost = round((input_tokens * PRICES[0] + output_tokens * PRICES[1]) / 1e6, 6)
    assert (metadata["input_tokens"], metadata["output_tokens"], metadata["api_requests"]) == (
        input_tokens, output_tokens, 26)
    assert metadata["total_tokens"] == input_tokens + output_tokens and metadata["cost_usd"] == cost > 0
    assert metadata["estimated_cost_usd"] > 0 and metadata["estimated_tokens"] > 0
    assert f"cost ${cost:.4f}" in done.stdout and "24 completed" in done.stdout

    # The key was sent every time and recorded nowhere: not in the output, the run storage, the event log, the
    # metadata, the conversation files or any other file of the instance or the store.
    seen = {"stdout": done.stdout, "stderr": done.stderr, "run and event log": stored, "metadata": repr(metadata)}
    seen |= {str(p): p.read_bytes().decode(errors="replace") for folder in (home, root)
             for p in folder.rglob("*") if p.is_file()}
    assert [where for where, text in seen.items() if KEY in text] == []
    # What was searched holds what was written: the metadata, the generator's warnings, the SDK's debug logging.
    assert "cost_usd" in stored and "(attempt 1 of 5)" in stored and "invalid reply 1 of 2" in stored
    assert "Request options" in done.stderr


@pytest.mark.parametrize("args, environment, error", [
    (["--generator", "anthropic"], {}, "--generator anthropic needs the API key in ANTHROPIC_API_KEY"),
    (["--model", "claude-haiku-4-5"], {"ANTHROPIC_API_KEY": KEY}, "--model is for --generator anthropic"),
    (["--batch"], {"ANTHROPIC_API_KEY": KEY}, "--batch is for --generator anthropic"),
    (["--max-cost-usd", "0"], {}, "--max-cost-usd must be more than 0"),
    (["--topics-per-run", "2"], {}, "--topics-per-run takes a number of at least 1, with --submit"),
    (["--submit"], {}, "--submit needs an instance that queues runs (run_coordinator: QueuedRunCoordinator, as in "
                       "deploy/dagster.yaml) and a running dagster-daemon"),
])
def test_refusals_before_anything_runs(legacy_db, tmp_path, monkeypatch, capsys, args, environment, error):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert main(["run", "--database-url", legacy_db, "--topics", TOPIC, *args]) == 2
    assert capsys.readouterr().err == f"bulkgen: error: {error}\n"
    assert not (tmp_path / "dagster_home").exists()
