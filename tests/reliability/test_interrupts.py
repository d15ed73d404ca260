"""Ctrl-C (SIGINT) and SIGTERM to a real `bulkgen run`, at every point the kill tests kill it: the run stops
starting items, records what finished, says so in one line (no traceback) and exits 130 or 143; its job waits,
`queued`, and the same command again does only what is left. A cancel, by contrast, is final.

The signals are real: the process sends one to itself at a named point (BULKGEN_KILL_AT=point:n:SIGINT), or
the test sends one from outside while it generates.
"""

import signal

import psycopg
import pytest

from pipelines.cli import main
from resources.conversation_store import ConversationStore
from tests.reliability.conftest import GENERATION_JOBS, assert_generated_once, finished, progress, wait_until
from tests.reliability.test_kill_anywhere import KILL_POINTS, TOPICS, _killed_run, _rerun, _state

pytestmark = pytest.mark.slow

SIGNALS = [signal.SIGINT, signal.SIGTERM]


def _assert_interrupted(code: int, out: str, err: str, signum: int) -> str:
    """Exit 128 + the signal, one line on stderr and nothing on stdout but the database's name; returns that line."""
    assert code == 128 + signum, err[-2000:]
    assert "Traceback" not in out + err and len(out.splitlines()) == 1 and out.startswith("== database: "), out + err
    [line] = err.splitlines()
    assert line.startswith(f"bulkgen: interrupted by {signal.Signals(signum).name}: "), line
    return line


# Every kill point, each with one of the two signals in turn (both take the same path: `interrupts`).
POINTS = [(point, SIGNALS[i % 2]) for i, point in enumerate(KILL_POINTS)]


@pytest.mark.parametrize("point, signum", POINTS, ids=[f"{p}-{signal.Signals(s).name}" for p, s in POINTS])
def test_interrupted_at_a_point_then_rerun_generates_each_item_exactly_once(
        legacy_db, cli_env, processes, tmp_path, monkeypatch, point, signum):
    store = ConversationStore(root=cli_env["CONVERSATION_STORE"])
    at = f"{point}:{signal.Signals(signum).name}"
    line = _assert_interrupted(*finished(_killed_run(processes, legacy_db, cli_env, tmp_path, at)), signum)
    state = _state(legacy_db, store)
    # Left to resume: the job queued, nothing held, every conversation recorded has its completed item.
    assert state["jobs"] == ["queued"] and "processing" not in state["items"], state
    assert state["conversations"] == state["items"].get("completed", 0), state
    assert f"queued, {state['conversations']} of 48 items done; the same command resumes it" in line

    _rerun(legacy_db, cli_env, monkeypatch)
    assert_generated_once(legacy_db, store, TOPICS)


@pytest.mark.parametrize("signum", SIGNALS, ids=lambda s: signal.Signals(s).name)
def test_interrupted_from_outside_while_generating_then_rerun(legacy_db, cli_env, processes, tmp_path, monkeypatch,
                                                              signum):
    store = ConversationStore(root=cli_env["CONVERSATION_STORE"])
    victim = _killed_run(processes, legacy_db, cli_env, tmp_path, None, delay_ms=60)
    wait_until(lambda: (p := progress(legacy_db)) and p[0] >= 10, timeout=60, what="10 items", alive=victim)
    victim.send_signal(signum)
    _assert_interrupted(*finished(victim), signum)
    state = _state(legacy_db, store)
    assert state["jobs"] == ["queued"] and "processing" not in state["items"], state
    assert 10 <= state["conversations"] == state["items"]["completed"] < 48, state

    _rerun(legacy_db, cli_env, monkeypatch)
    assert_generated_once(legacy_db, store, TOPICS)


def test_interrupted_after_the_job_completed_leaves_it_completed(legacy_db, cli_env, processes, tmp_path):
    store = ConversationStore(root=cli_env["CONVERSATION_STORE"])
    line = _assert_interrupted(*finished(_killed_run(processes, legacy_db, cli_env, tmp_path, "finished:1:SIGINT")),
                               signal.SIGINT)
    assert "completed, 48 of 48 items done" in line and "resumes" not in line
    assert_generated_once(legacy_db, store, TOPICS)


def test_a_new_batch_after_an_interrupt_cancels_the_old_job_and_generates_the_full_set(
        legacy_db, cli_env, processes, tmp_path):
    store = ConversationStore(root=cli_env["CONVERSATION_STORE"])
    _assert_interrupted(*finished(_killed_run(processes, legacy_db, cli_env, tmp_path, "recorded:2:SIGINT")),
                        signal.SIGINT)
    [(old_id, _)] = _jobs(legacy_db)
    rerun = processes("run", "--new-batch", "--database-url", legacy_db, "--topics", ",".join(TOPICS), env=cli_env,
                      output=tmp_path / "new-batch")
    code, out, err = finished(rerun)
    assert code == 0, err[-2000:]
    assert "items 48 (18 edge_case, 30 template); 48 completed" in out
    jobs = dict(_jobs(legacy_db))
    assert jobs.pop(old_id) == "cancelled" and list(jobs.values()) == ["completed"]
    with psycopg.connect(legacy_db) as conn:
        old = dict(conn.execute("SELECT status, count(*) FROM batch_items WHERE batch_job_id = %s GROUP BY 1",
                                [old_id]).fetchall())
        (conversations,) = conn.execute("SELECT count(*) FROM conversations").fetchone()
    assert set(old) == {"completed", "cancelled"} and conversations == 48 + old["completed"]


def test_bulkgen_cancel_stops_a_running_run_for_good(legacy_db, cli_env, processes, tmp_path, monkeypatch, capsys):
    victim = _killed_run(processes, legacy_db, cli_env, tmp_path, None, delay_ms=1000)  # 16 s of work at least
    wait_until(lambda: (p := progress(legacy_db)) and p[0] >= 3, timeout=60, what="3 items", alive=victim)
    [(job_id, _)] = _jobs(legacy_db)
    assert main(["cancel", str(job_id), "--database-url", legacy_db]) == 0  # the script's code, in this process
    assert f"\n== batch job {job_id} cancelled" in capsys.readouterr().out
    code, _, err = finished(victim)
    assert code == 2 and f"batch job {job_id} ended cancelled" in err, err[-2000:]
    with psycopg.connect(legacy_db) as conn:
        items = dict(conn.execute("SELECT status, count(*) FROM batch_items WHERE batch_job_id = %s GROUP BY 1",
                                  [job_id]).fetchall())
    assert set(items) == {"completed", "cancelled"} and sum(items.values()) == 48
    again = processes("cancel", str(job_id), "--database-url", legacy_db, env=cli_env, output=tmp_path / "again")
    code, _, err = finished(again)
    assert code == 2 and err == f"bulkgen: error: batch job {job_id} is already cancelled: nothing to cancel\n"

    _rerun(legacy_db, cli_env, monkeypatch)  # the next run is a new job: the cancelled one stays as it is
    jobs = dict(_jobs(legacy_db))
    assert jobs.pop(job_id) == "cancelled" and list(jobs.values()) == ["completed"]


def _jobs(dsn: str) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(f"SELECT id, status FROM batch_jobs WHERE {GENERATION_JOBS} ORDER BY created_at").fetchall()
