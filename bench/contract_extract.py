"""Contract extraction over a tree of 500 source files: copies of the tests' fixture app, side by side.

Each copy keeps the fixture's every pattern (call sites found by name across the whole tree, imports,
types), so the name lookups grow with the tree as they would in a larger app.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

from assets.audit.code_contract import extract_code_contract

FIXTURE_APP = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "app"


def app_tree(root: Path, files: int) -> int:
    """Copies of the fixture app under `root` until it holds at least `files` source files; returns how many."""
    per_copy = sum(1 for p in FIXTURE_APP.rglob("*") if p.suffix in (".ts", ".tsx", ".js")
                   and "node_modules" not in p.parts)
    copies = -(-files // per_copy)
    for n in range(copies):
        shutil.copytree(FIXTURE_APP, root / f"app{n:03d}", ignore=shutil.ignore_patterns("node_modules"))
    return copies * per_copy


def measure(work: Path, *, files: int = 500, repeats: int = 3) -> dict:
    root = Path(tempfile.mkdtemp(prefix="contract-tree-", dir=work))
    count = app_tree(root, files)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        code = extract_code_contract(str(root))
        times.append(time.perf_counter() - started)
    if code.files != count:
        raise RuntimeError(f"extracted {code.files} files, the tree holds {count}")
    best = min(times)
    return {"contract_extract_s_per_1000_files": round(best / count * 1000, 3),
            "raw": {"files": count, "seconds": [round(t, 3) for t in times],
                    "tables": sorted(code.tables), "dynamic_tables": len(code.dynamic_tables)}}
