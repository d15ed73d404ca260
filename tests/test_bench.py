"""The benchmark runner at tiny sizes: it runs end to end and writes exactly the figures, as numbers.

No timing is asserted here: `make bench` measures, at the issue's sizes.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.__main__ import FIGURES

PROJECT = Path(__file__).resolve().parents[1]
TINY = ["--generation-items", "48", "--generation-repeats", "1", "--migration-rows", "2000",
        "--audit-tables", "10", "--audit-repeats", "1", "--llm-items", "24", "--llm-concurrency", "4",
        "--llm-latency-s", "0.02", "--llm-batch-items", "24", "--llm-utilization-s", "3", "--dagster-topics", "1",
        "--dagster-topics-200", "2", "--dagster-repeats", "1", "--contract-files", "24"]


@pytest.mark.slow
def test_the_runner_writes_every_figure_and_nothing_else(tmp_path):
    out = tmp_path / "results.json"
    done = subprocess.run([sys.executable, "-m", "bench", *TINY, "--out", str(out)], cwd=PROJECT,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(out.read_text())
    assert set(results) == set(FIGURES) | {"raw"}
    figures = {k: v for k, v in results.items() if k != "raw"}
    assert all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in figures.values()), figures
    assert isinstance(results["migration_writer_errors"], int)
    assert results["raw"]["machine"]["postgresql"] and results["raw"]["sizes"]["migration_rows"] == 2000
    for key in FIGURES:
        assert f"`{key}`" in done.stdout  # the table names every figure


@pytest.mark.slow
def test_only_llm_measures_just_the_llm_figures(tmp_path):
    out = tmp_path / "llm.json"
    done = subprocess.run([sys.executable, "-m", "bench", "--only", "llm", *TINY, "--output", str(out)], cwd=PROJECT,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(out.read_text())
    assert set(results) == {"llm_concurrency_efficiency", "llm_batch_cost_ratio", "llm_rate_limit_utilization",
                            "llm_failed_items", "raw"}
    assert results["llm_failed_items"] == 0 and 0 < results["llm_batch_cost_ratio"] < 1
    assert set(results["raw"]) >= {"llm", "machine"} and "generation" not in results["raw"]


@pytest.mark.slow
def test_only_one_part_keeps_the_other_figures(tmp_path):
    out = tmp_path / "results.json"
    out.write_text(json.dumps({"demo_wall_s": 3.9, "raw": {"demo": {"benchmark_s": 4.0}}}))
    done = subprocess.run([sys.executable, "-m", "bench", "--only", "contract", "--contract-files", "24",
                           "--out", str(out)], cwd=PROJECT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(out.read_text())
    assert set(results) == {"demo_wall_s", "contract_extract_s_per_1000_files", "raw"}
    assert results["demo_wall_s"] == 3.9 and results["raw"]["demo"] == {"benchmark_s": 4.0}
    assert results["raw"]["contract"]["files"] >= 24 and results["raw"]["machine"]["postgresql"] is None
    assert "`contract_extract_s_per_1000_files`" in done.stdout and "`demo_wall_s`" in done.stdout
