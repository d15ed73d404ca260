"""Dagster's `dg` CLI finds the code location through pyproject.toml's [tool.dg] section."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.definitions import defs

REPO = Path(__file__).resolve().parents[2]
DG = Path(sys.executable).with_name("dg")


def _dg(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([DG, *args], cwd=REPO, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_dg_check_defs_loads_the_code_location():
    done = _dg("check", "defs")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "All definitions loaded successfully." in done.stdout
    assert "virtual environment" not in done.stdout + done.stderr  # no warning noise in CI's log


@pytest.mark.slow
def test_dg_list_defs_lists_what_the_definitions_hold():
    done = _dg("list", "defs", "--json")
    assert done.returncode == 0, done.stderr
    listed = json.loads(done.stdout)
    assert {a["asset_key"] for a in listed["assets"]} == {
        key.to_user_string() for key in defs.resolve_asset_graph().get_all_asset_keys()
    }
    assert {j["name"] for j in listed["jobs"]} >= {job.name for job in defs.jobs}
    assert {s["name"] for s in listed["schedules"]} == {s.name for s in defs.schedules}
