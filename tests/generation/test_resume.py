"""Kill a real `bulkgen run` process mid-generation with SIGKILL, run it again: the job resumes, nothing is
generated twice, nothing is left processing, no file is orphaned."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from pipelines.cli import main
from tests.generation.conftest import assert_job_sound

TOPICS = "ignored_401k,esg_investing,grandparent_529"


def _bulkgen(dsn: str, env: dict) -> subprocess.Popen:
    script = Path(sys.executable).with_name("bulkgen")
    return subprocess.Popen([script, "run", "--database-url", dsn, "--topics", TOPICS], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _job(dsn: str):
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT id, status, completed_items FROM batch_jobs WHERE shared_parameters ? 'topics'"
        ).fetchone()


@pytest.mark.slow
def test_a_killed_run_is_resumed_by_the_next_one(legacy_db, store, tmp_path, monkeypatch, capsys):
    # The first run's fix step fixes the legacy schema; the second run's finds nothing left to do.
    settings = {"DAGSTER_HOME": str(tmp_path / "dagster_home"), "CONVERSATION_STORE": str(store.root_path())}
    env = {**os.environ, **settings, "GENERATOR_DELAY_MS": "40"}
    env.pop("DATABASE_URL", None)

    victim = _bulkgen(legacy_db, env)
    deadline = time.monotonic() + 60
    while (job := _job(legacy_db)) is None or job[2] < 12:
        assert victim.poll() is None, victim.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    victim.send_signal(signal.SIGKILL)
    victim.wait()

    job_id, status, _ = _job(legacy_db)
    with psycopg.connect(legacy_db) as conn:
        before = dict(conn.execute(
            "SELECT status, count(*) FROM batch_items WHERE batch_job_id = %s GROUP BY status", [job_id]
        ).fetchall())
        kept = {r[0] for r in conn.execute("SELECT id FROM conversations")}
    assert status == "processing" and before.get("processing", 0) > 0  # what the dead run held
    assert 12 <= before["completed"] < 72 and len(kept) == before["completed"]

    monkeypatch.delenv("DATABASE_URL", raising=False)  # the next run, in this process
    for name, value in {**settings, "GENERATOR_DELAY_MS": "0"}.items():
        monkeypatch.setenv(name, value)
    assert main(["run", "--database-url", legacy_db, "--topics", TOPICS]) == 0
    assert f"batch job {job_id} completed" in capsys.readouterr().out

    assert assert_job_sound(legacy_db, job_id, store) == {"completed": 72}
    with psycopg.connect(legacy_db) as conn:
        conversations = {r[0] for r in conn.execute("SELECT id FROM conversations")}
        jobs = conn.execute("SELECT count(*) FROM batch_jobs WHERE shared_parameters ? 'topics'").fetchone()[0]
    assert jobs == 1 and len(conversations) == 72 and kept <= conversations  # completed work kept, none twice
