"""A real `dagster-webserver` (which starts the code server) on loopback, over a fresh legacy database.

The webserver runs as an operator runs it: `dagster-webserver -w workspace.yaml` from the repo
root, with its own DAGSTER_HOME (SQLite storage) and DATABASE_URL pointing at a fresh copy of
the legacy demo database. `dagster-webserver` alone runs no daemon, so the temporary instance
uses the DefaultRunCoordinator: a launched run starts at once in a run worker process (the
DefaultRunLauncher), with no queue to drain. Everything the server starts shares its process
group, which teardown stops even when the test failed.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from dagster_graphql import DagsterGraphQLClient, DagsterGraphQLClientError

REPO_ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO_ROOT / "test-output" / "screenshots"
WEBSERVER = Path(sys.executable).with_name("dagster-webserver")
LOCATION = "pipelines.definitions"  # the location name workspace.yaml gives the module
REPOSITORY = "__repository__"

# The legacy demo schema (README, "What the demo shows"): two status constraints reject code
# values, so these checks fail on it (check name -> the values it rejects); every other passes.
LEGACY_FAILED_CHECKS = {
    "batch_jobs_status_accepts_code_values": {"queued", "processing"},
    "batch_items_status_accepts_code_values": {"cancelled"},
}

STARTUP_TIMEOUT = 60.0
RUN_TIMEOUT = 120.0

INSTANCE_YAML = """\
telemetry:
  enabled: false
run_coordinator:
  module: dagster.core.run_coordinator
  class: DefaultRunCoordinator
"""

LOCATION_QUERY = """
query Location($name: String!) {
  workspaceLocationEntryOrError(name: $name) {
    __typename
    ... on WorkspaceLocationEntry {
      loadStatus
      locationOrLoadError {
        __typename
        ... on PythonError { message }
      }
    }
  }
}
"""

RUN_QUERY = """
query Run($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run { status }
  }
}
"""

RUN_FAILURES_QUERY = """
query RunFailures($runId: ID!) {
  logsForRun(runId: $runId, limit: 1000) {
    __typename
    ... on EventConnection {
      events {
        __typename
        ... on MessageEvent { message stepKey }
        ... on ExecutionStepFailureEvent { error { message } }
      }
    }
  }
}
"""

ADD_PARTITION_MUTATION = """
mutation AddTopic($key: String!, $repository: RepositorySelector!) {
  addDynamicPartition(partitionKey: $key, partitionsDefName: "topics", repositorySelector: $repository) {
    __typename
    ... on AddDynamicPartitionSuccess { partitionsDefName partitionKey }
    ... on PythonError { message }
  }
}
"""

TERMINAL = {"SUCCESS", "FAILURE", "CANCELED"}


def active_topics(dsn: str, limit: int) -> list[str]:
    """The first `limit` active training topics' keys, in the order the partitions follow."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT topic_key FROM training_topics WHERE is_active ORDER BY created_at, topic_key LIMIT %s", [limit]
        ).fetchall()
    return [key for (key,) in rows]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Webserver:
    """A running webserver: its URL, the GraphQL client, and the helpers the tests share."""

    port: int
    home: Path
    log: Path
    process: subprocess.Popen
    client: DagsterGraphQLClient = field(init=False)

    def __post_init__(self) -> None:
        self.client = DagsterGraphQLClient("127.0.0.1", port_number=self.port, timeout=30)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def query(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.client._execute(query, variables)

    def log_tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def launch(self, job_name: str, **kwargs: Any) -> str:
        return self.client.submit_job_execution(
            job_name, repository_location_name=LOCATION, repository_name=REPOSITORY, **kwargs
        )

    def wait_for_run(self, run_id: str, timeout: float = RUN_TIMEOUT) -> str:
        """Poll the run through GraphQL until it ends; its final status (not asserted here)."""
        deadline = time.monotonic() + timeout
        status = "?"
        while time.monotonic() < deadline:
            result = self.query(RUN_QUERY, {"runId": run_id})["runOrError"]
            assert result["__typename"] == "Run", f"run {run_id} not found: {result}"
            status = result["status"]
            if status in TERMINAL:
                return status
            time.sleep(0.25)
        raise AssertionError(
            f"run {run_id} still {status} after {timeout:.0f}s\n--- webserver log ---\n{self.log_tail()}"
        )

    def run_failures(self, run_id: str) -> str:
        """The step and run failure messages of a run, for an assertion message."""
        logs = self.query(RUN_FAILURES_QUERY, {"runId": run_id})["logsForRun"]
        events = logs.get("events", [])
        lines = [
            f"{e['__typename']} {e.get('stepKey') or ''}: {(e.get('error') or {}).get('message') or e.get('message')}"
            for e in events
            if "Failure" in e["__typename"]
        ]
        return "\n".join(lines) or "(no failure events)"

    def add_topic_partitions(self, keys: list[str]) -> None:
        """Add `topics` partitions through the API, as the UI's "Add partition" does."""
        repository = {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY}
        for key in keys:
            added = self.query(ADD_PARTITION_MUTATION, {"key": key, "repository": repository})
            assert added["addDynamicPartition"] == {
                "__typename": "AddDynamicPartitionSuccess", "partitionsDefName": "topics", "partitionKey": key,
            }, added

    def run_chain(self, partitions: list[str]) -> str:
        """Add the partitions, then one chain run over them (a range: they were added in this order)."""
        self.add_topic_partitions(partitions)
        return self.run_to_success(
            "chain_job",
            tags={
                "dagster/asset_partition_range_start": partitions[0],
                "dagster/asset_partition_range_end": partitions[-1],
            },
        )

    def run_to_success(self, job_name: str, **kwargs: Any) -> str:
        run_id = self.launch(job_name, **kwargs)
        status = self.wait_for_run(run_id)
        assert status == "SUCCESS", f"{job_name} run {run_id} ended {status}:\n{self.run_failures(run_id)}"
        return run_id


def _wait_until_ready(server: Webserver) -> None:
    """Until /server_info answers and the code location has loaded (or the server died)."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    answered = False
    last = "no answer yet"
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise AssertionError(
                f"dagster-webserver exited with {server.process.returncode}\n{server.log_tail()}"
            )
        try:
            if not answered:
                with urllib.request.urlopen(f"{server.url}/server_info", timeout=2) as response:
                    answered = response.status == 200
                    last = "server_info answered"
            if answered:
                entry = server.query(LOCATION_QUERY, {"name": LOCATION})["workspaceLocationEntryOrError"]
                if entry and entry["__typename"] == "WorkspaceLocationEntry":
                    loaded = entry["locationOrLoadError"]
                    if loaded and loaded["__typename"] == "PythonError":
                        raise AssertionError(f"the code location failed to load: {loaded['message']}")
                    if entry["loadStatus"] == "LOADED" and loaded:
                        return
                last = f"location entry: {entry}"
        except (urllib.error.URLError, ConnectionError, OSError) as exc:
            last = f"{type(exc).__name__}: {exc}"
        except DagsterGraphQLClientError as exc:
            last = str(exc).splitlines()[0]
        time.sleep(0.2)
    raise AssertionError(
        f"dagster-webserver not ready after {STARTUP_TIMEOUT:.0f}s ({last})\n{server.log_tail()}"
    )


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM the whole process group (webserver, code server, run workers), then SIGKILL it."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(process.pid, signal.SIGKILL)  # whatever outlived its parent
    except ProcessLookupError:
        pass
    process.wait(timeout=5)


@pytest.fixture
def webserver(legacy_db, tmp_path) -> Iterator[Webserver]:
    """A real dagster-webserver + code server over a fresh legacy database, stopped at teardown."""
    assert WEBSERVER.exists(), f"{WEBSERVER} is missing: install the project with its dependencies"
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(INSTANCE_YAML)
    log = tmp_path / "webserver.log"
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "DATABASE_URL": legacy_db,
        "CONVERSATION_STORE": str(tmp_path / "conversations"),  # generated files stay in the test's folder
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("DAGSTER_PG_URL", None)
    for attempt in range(3):
        server = _start(env, log)
        try:
            _wait_until_ready(server)
            break
        except BaseException:
            _stop(server.process)
            # Another process may have taken the free port between our probe and the server's bind.
            if attempt == 2 or "address already in use" not in server.log_tail().lower():
                raise
    try:
        yield server
    finally:
        _stop(server.process)


def _start(env: dict[str, str], log: Path) -> Webserver:
    port = free_port()
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(WEBSERVER), "-h", "127.0.0.1", "-p", str(port), "-w", "workspace.yaml", "--log-format", "json"],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so teardown reaches its children
        )
    return Webserver(port=port, home=Path(env["DAGSTER_HOME"]), log=log, process=process)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the item, so a fixture can tell that its test failed."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report
