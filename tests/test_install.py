"""A plain `pip install .` into a fresh virtual environment runs `bulkgen demo` from any folder:
the contract, the demo data and the instance config are package data, not files of the source tree.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOT_SHIPPED = shutil.ignore_patterns(".git", ".venv", "tests", "bench", "build", "*.egg-info", "__pycache__",
                                     ".cache", ".dagster_home", ".conversations", "test-output")
LOCAL_SETTINGS = ("DATABASE_URL", "DAGSTER_HOME", "CONVERSATION_STORE", "BULKGEN_EMBEDDED_DIR", "PYTHONPATH")


@pytest.fixture
def own_tmp() -> Iterator[Path]:
    """A temp folder of its own: pytest's basetemp can be pruned by another pytest process during this long test."""
    folder = Path(tempfile.mkdtemp(prefix="bulkgen-install-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.slow
def test_a_plain_install_runs_the_demo_from_another_folder(own_tmp):
    source, venv, elsewhere = own_tmp / "source", own_tmp / "venv", own_tmp / "elsewhere"
    shutil.copytree(REPO, source, ignore=NOT_SHIPPED)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([python, "-m", "pip", "install", "--quiet", str(source)], check=True, capture_output=True)
    shutil.rmtree(source)  # the installed copy has nothing to fall back on
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in LOCAL_SETTINGS and not k.startswith("VIRTUAL_ENV")}

    located = subprocess.run([python, "-c", "import contracts, demo, deploy, pipelines; print(pipelines.__file__)"],
                             cwd=elsewhere, env=env, capture_output=True, text=True, check=True)
    site_packages = Path(located.stdout.strip()).parents[1]
    assert site_packages.is_relative_to(venv)

    done = subprocess.run([venv / "bin" / "bulkgen", "demo"], cwd=elsewhere, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]  # 0: every verification check passed
    assert "rows remapped: {'batch_jobs.status': {'pending': 2, 'running': 1}}" in done.stdout
    assert "items 480 (180 edge_case, 300 template); 480 completed" in done.stdout
    # Local state lands in the folder the command ran in, never in the installed package.
    assert (elsewhere / ".dagster_home" / "dagster.yaml").is_file()
    assert (elsewhere / ".cache" / "postgres").is_dir()
    assert sum(1 for _ in (elsewhere / ".conversations").rglob("*.json")) == 480
    assert not any((site_packages / name).exists() for name in (".cache", ".dagster_home", ".conversations"))
