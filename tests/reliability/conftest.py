"""Helpers for the fault tests: `bulkgen` in real processes, and the invariants a database ends with."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from resources.conversation_store import ConversationStore
from tests.generation.conftest import assert_job_sound, fixed_db, fixed_template  # noqa: F401 - fixtures

BULKGEN = Path(sys.executable).with_name("bulkgen")
GENERATION_JOBS = "shared_parameters ? 'topics'"  # the demo's legacy batch jobs have no topics


@pytest.fixture
def cli_env(tmp_path) -> dict[str, str]:
    """The environment of a `bulkgen` process: its own DAGSTER_HOME and store, no DATABASE_URL, no fault."""
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path / "dagster_home"),
           "CONVERSATION_STORE": str(tmp_path / "conversations"), "GENERATOR_DELAY_MS": "0"}
    for name in ("DATABASE_URL", "BULKGEN_KILL_AT", "ANTHROPIC_API_KEY"):
        env.pop(name, None)
    return env


@pytest.fixture
def processes() -> Iterator[Callable[..., subprocess.Popen]]:
    """Start `bulkgen` processes (stdout and stderr to files); any still running at teardown is killed."""
    started: list[subprocess.Popen] = []

    def start(*args: str, env: dict[str, str], output: Path) -> subprocess.Popen:
        output.parent.mkdir(parents=True, exist_ok=True)
        with open(output.with_suffix(".out"), "w") as out, open(output.with_suffix(".err"), "w") as err:
            process = subprocess.Popen([BULKGEN, *args], env=env, stdout=out, stderr=err, text=True)
        process.output = output  # type: ignore[attr-defined]
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def finished(process: subprocess.Popen, timeout: float = 120) -> tuple[int, str, str]:
    """Wait for a process from `processes`: (exit code, stdout, stderr)."""
    code = process.wait(timeout)
    output: Path = process.output  # type: ignore[attr-defined]
    return code, output.with_suffix(".out").read_text(), output.with_suffix(".err").read_text()


def wait_until(condition: Callable[[], object], *, timeout: float, what: str, alive: subprocess.Popen | None = None):
    """Poll `condition` every 10 ms until it returns something truthy (returned), or fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if alive is not None and alive.poll() is not None:
            pytest.fail(f"the process ended ({alive.returncode}) before {what}: {finished(alive, 1)[2][-2000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within {timeout} s")
        time.sleep(0.01)
    return value


def progress(dsn: str) -> tuple[int, int] | None:
    """(completed_items, total_items) of the newest generation job, None before there is one."""
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            f"SELECT completed_items, total_items FROM batch_jobs WHERE {GENERATION_JOBS} ORDER BY created_at DESC"
        ).fetchone()


def written(dsn: str) -> tuple:
    """Everything generation writes, to show that a refused command wrote nothing."""
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT (SELECT json_agg(t ORDER BY t.id) FROM batch_jobs t)::text,"
            " (SELECT count(*) FROM batch_items), (SELECT count(*) FROM conversations)"
        ).fetchone()


def assert_generated_once(dsn: str, store: ConversationStore, topics: list[str]) -> None:
    """Every (topic, persona, arc) of `topics` has exactly one completed item, in a completed job, with one
    conversation and one file; no other conversation or file exists; nothing is left queued or processing."""
    with psycopg.connect(dsn) as conn:
        jobs = conn.execute(f"SELECT id, status FROM batch_jobs WHERE {GENERATION_JOBS}").fetchall()
        items = conn.execute(
            "SELECT b.parameters ->> 'topic_key', b.parameters ->> 'persona_key', b.parameters ->> 'arc_key',"
            "       b.status, j.status, b.conversation_id FROM batch_items b JOIN batch_jobs j ON j.id = b.batch_job_id"
            f" WHERE j.{GENERATION_JOBS}"
        ).fetchall()
        expected = set(conn.execute(
            "SELECT t.topic_key, p.persona_key, a.arc_key FROM training_topics t, personas p, emotional_arcs a"
            " WHERE t.topic_key = ANY(%s) AND p.is_active AND a.is_active", [topics]
        ).fetchall())
        conversations = dict(conn.execute("SELECT id, file_path FROM conversations").fetchall())
    assert expected and len(expected) == 24 * len(topics)
    assert {status for _, status in jobs} == {"completed"}, jobs
    assert not [i for i in items if i[3] in ("queued", "processing")]
    completed = [i for i in items if i[3] == "completed"]
    assert sorted(i[:3] for i in completed) == sorted(expected)  # each triple exactly once
    assert {i[5] for i in completed} == set(conversations) and len(conversations) == len(completed)
    for job_id, _ in jobs:
        assert_job_sound(dsn, job_id, store)
    root = store.root_path()
    on_disk = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    assert on_disk == sorted(conversations.values())  # no orphan file, no temporary one
