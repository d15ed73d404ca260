"""`make dev`'s `dg dev`: the webserver loads the code location [tool.dg] names, and its daemon
takes a queued run to success, on the instance config `make dev` copies into DAGSTER_HOME."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.local_instance import LOCAL_INSTANCE_CONFIG
from tests.ui.conftest import REPO_ROOT, Webserver, _stop, _wait_until_ready, free_port

DG = Path(sys.executable).with_name("dg")
pytestmark = pytest.mark.filterwarnings("ignore:Using variable_values:DeprecationWarning")


def test_dg_dev_serves_the_code_location_and_its_daemon_runs_a_queued_job(legacy_db, tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(LOCAL_INSTANCE_CONFIG, home / "dagster.yaml")
    env = {**os.environ, "DAGSTER_HOME": str(home), "DATABASE_URL": legacy_db, "PYTHONUNBUFFERED": "1",
           "CONVERSATION_STORE": str(tmp_path / "conversations")}
    port, log = free_port(), tmp_path / "dg-dev.log"
    with log.open("wb") as out:
        process = subprocess.Popen([DG, "dev", "-p", str(port), "-h", "127.0.0.1"], cwd=REPO_ROOT, env=env,
                                   stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)  # its own process group, which _stop ends
    server = Webserver(port=port, home=home, log=log, process=process)
    try:
        _wait_until_ready(server)
        server.run_to_success("audit_job")  # queued, then dequeued by the daemon dg dev started
    finally:
        _stop(process)
