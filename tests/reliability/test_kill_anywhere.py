"""SIGKILL a real `bulkgen run` anywhere in its life, run it again: nothing lost, duplicated, stuck or orphaned.

The kills land at named points of the processing loop (`assets/generation/faults.py`, BULKGEN_KILL_AT),
so each case proves its point was reached: the killed process exits -9 and the database shows the state
that point leaves. Other kills are external, at a random moment of generation.
"""

import random
import signal

import psycopg
import pytest

from pipelines.cli import main
from resources.conversation_store import ConversationStore
from tests.reliability.conftest import GENERATION_JOBS, assert_generated_once, finished, progress, wait_until

pytestmark = pytest.mark.slow

TOPICS = ["ignored_401k", "esg_investing"]  # 2 topics x 3 personas x 8 arcs = 48 items


def _state(dsn: str, store: ConversationStore) -> dict:
    """What a killed run left: its job's status, items by status, conversations and files."""
    with psycopg.connect(dsn) as conn:
        job = conn.execute(f"SELECT id, status FROM batch_jobs WHERE {GENERATION_JOBS}").fetchall()
        items = dict(conn.execute("SELECT b.status, count(*) FROM batch_items b JOIN batch_jobs j"
                                  f" ON j.id = b.batch_job_id WHERE j.{GENERATION_JOBS} GROUP BY 1").fetchall())
        (conversations,) = conn.execute("SELECT count(*) FROM conversations").fetchone()
    root = store.root_path()
    files = [p for p in root.rglob("*.json")] if root.exists() else []
    return {"jobs": [status for _, status in job], "items": items, "conversations": conversations,
            "files": len(files)}


# point:n -> what the database and the store show once the process died there
KILL_POINTS = {
    "opened:1": lambda s: s["jobs"] == ["queued"] and s["items"] == {"queued": 48} and s["files"] == 0,
    "started:1": lambda s: s["jobs"] == ["processing"] and s["items"] == {"queued": 48},
    "claimed:1": lambda s: s["items"].get("processing", 0) > 0 and s["conversations"] == s["files"] == 0,
    "written:1": lambda s: s["files"] >= 1 and s["conversations"] == 0,  # a file whose item is not completed
    "recorded:1": lambda s: 0 < s["conversations"] == s["items"].get("completed"),
    "claimed:2": lambda s: 0 < s["conversations"] < 48 and s["items"].get("processing", 0) > 0,
    "written:20": lambda s: s["files"] >= 20 > s["conversations"],
    "recorded:3": lambda s: 0 < s["conversations"] == s["items"].get("completed") < 48,
    "written:48": lambda s: s["files"] == 48 > s["conversations"],  # the last file, never recorded
    "finishing:1": lambda s: s["jobs"] == ["processing"] and s["items"] == {"completed": 48},
}


def _killed_run(processes, dsn: str, env: dict, tmp_path, kill_at: str | None, delay_ms: int = 20):
    env = {**env, "GENERATOR_DELAY_MS": str(delay_ms), **({"BULKGEN_KILL_AT": kill_at} if kill_at else {})}
    return processes("run", "--database-url", dsn, "--topics", ",".join(TOPICS), env=env,
                     output=tmp_path / f"killed-{kill_at or 'external'}")


def _rerun(dsn: str, env: dict, monkeypatch) -> None:
    """The next run, in this process (the same code as the script; one Python start-up less)."""
    for name in ("DAGSTER_HOME", "CONVERSATION_STORE"):
        monkeypatch.setenv(name, env[name])
    monkeypatch.setenv("GENERATOR_DELAY_MS", "0")
    monkeypatch.delenv("DATABASE_URL", raising=False)
    assert main(["run", "--database-url", dsn, "--topics", ",".join(TOPICS)]) == 0


@pytest.mark.parametrize("kill_at", list(KILL_POINTS))
def test_killed_at_a_point_then_rerun_generates_each_item_exactly_once(
        legacy_db, cli_env, processes, tmp_path, monkeypatch, kill_at):
    store = ConversationStore(root=cli_env["CONVERSATION_STORE"])
    code, _, err = finished(_killed_run(processes, legacy_db, cli_env, tmp_path, kill_at))
    assert code == -signal.SIGKILL, err[-2000:]
    state = _state(legacy_db, store)
    assert KILL_POINTS[kill_at](state), state

    _rerun(legacy_db, cli_env, monkeypatch)
    assert_generated_once(legacy_db, store, TOPICS)


def test_a_kill_after_the_job_completed_leaves_it_final(legacy_db, cli_env, processes, tmp_path):
    """Killed once the job is final, before Dagster records the run: nothing is left to redo or clean.
    (A next run of these topics would be a new batch job by design: one job per run.)"""
    store = ConversationStore(root=cli_env["CONVERSATION_STORE"])
    code, _, err = finished(_killed_run(processes, legacy_db, cli_env, tmp_path, "finished:1"))
    assert code == -signal.SIGKILL, err[-2000:]
    assert_generated_once(legacy_db, store, TOPICS)


def test_killed_again_and_again_while_resuming(legacy_db, cli_env, processes, tmp_path):
    """Three kills of the same job, each in the run that resumed it; the last right after the job completed."""
    store = ConversationStore(root=cli_env["CONVERSATION_STORE"])
    for kill_at in ("written:5", "recorded:2", "finished:1"):
        code, _, err = finished(_killed_run(processes, legacy_db, cli_env, tmp_path, kill_at))
        assert code == -signal.SIGKILL, err[-2000:]
        if kill_at == "written:5":  # a writer killed mid-write leaves its item's file torn, its row never written
            (owner,) = store.root_path().iterdir()  # the owner's folder, a folder per conversation in it
            with psycopg.connect(legacy_db) as conn:
                recorded = {path for (path,) in conn.execute("SELECT file_path FROM conversations")}
            torn = next(f / "conversation.json" for f in sorted(owner.iterdir())
                        if f"{owner.name}/{f.name}/conversation.json" not in recorded)
            torn.write_bytes(b'{"half": ')
    with psycopg.connect(legacy_db) as conn:
        assert conn.execute(f"SELECT count(*) FROM batch_jobs WHERE {GENERATION_JOBS}").fetchone()[0] == 1
    assert_generated_once(legacy_db, store, TOPICS)


@pytest.mark.parametrize("seed", [1, 2])
def test_killed_from_outside_at_a_random_moment_then_rerun(legacy_db, cli_env, processes, tmp_path, monkeypatch,
                                                           seed):
    store = ConversationStore(root=cli_env["CONVERSATION_STORE"])
    at = random.Random(seed).randint(1, 40)  # items completed when the kill comes
    victim = _killed_run(processes, legacy_db, cli_env, tmp_path, None, delay_ms=60)
    wait_until(lambda: (p := progress(legacy_db)) and p[0] >= at, timeout=60, what=f"{at} items", alive=victim)
    victim.send_signal(signal.SIGKILL)
    assert finished(victim)[0] == -signal.SIGKILL
    assert progress(legacy_db)[0] < 48  # killed mid-generation

    _rerun(legacy_db, cli_env, monkeypatch)
    assert_generated_once(legacy_db, store, TOPICS)


def test_a_killed_run_of_all_twenty_demo_topics_ends_with_480_conversations(legacy_db, cli_env, processes,
                                                                           tmp_path):
    store = ConversationStore(root=cli_env["CONVERSATION_STORE"])
    env = {**cli_env, "GENERATOR_DELAY_MS": "10"}
    victim = processes("run", "--all", "--database-url", legacy_db, env=env, output=tmp_path / "all-killed")
    wait_until(lambda: (p := progress(legacy_db)) and p[0] >= 150, timeout=60, what="150 items", alive=victim)
    victim.send_signal(signal.SIGKILL)
    assert finished(victim)[0] == -signal.SIGKILL
    assert 150 <= progress(legacy_db)[0] < 480

    rerun = processes("run", "--all", "--database-url", legacy_db, env=cli_env, output=tmp_path / "all-rerun")
    code, out, err = finished(rerun)
    assert code == 0, err[-2000:]
    assert "items 480 (180 edge_case, 300 template); 480 completed" in out
    with psycopg.connect(legacy_db) as conn:
        topics = [k for (k,) in conn.execute("SELECT topic_key FROM training_topics WHERE is_active")]
        assert conn.execute("SELECT count(*) FROM conversations").fetchone()[0] == 480
    assert len(topics) == 20
    assert_generated_once(legacy_db, store, topics)
