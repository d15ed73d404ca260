"""demo_wall_s: `bulkgen demo` end to end, from a stopped embedded database, install excluded.

An embedded PostgreSQL data folder is initialized once and stopped (untimed); a fresh copy of it
(`cp -a`, owners kept) in a temp folder is what the timed `bulkgen demo` starts, with a fresh
DAGSTER_HOME and conversation store beside it: the command's own process, server start, schema
load, Dagster run (audit, fix, 480 conversations, verification) and summary, as `make demo` runs it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from bench.common import timed

BULKGEN = Path(sys.executable).with_name("bulkgen")


def measure(workdir: Path) -> dict:
    stopped = workdir / "demo-stopped" / "pgdata"
    stopped.parent.mkdir(parents=True)
    subprocess.run([sys.executable, "-c", "import sys; from resources.embedded import embedded_server_url;"
                    " embedded_server_url(sys.argv[1])", str(stopped)], check=True)  # exits: stops
    run = workdir / "demo-run"
    run.mkdir()
    subprocess.run(["cp", "-a", str(stopped), str(run / "pgdata")], check=True)
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DAGSTER_HOME")}
    env |= {"BULKGEN_EMBEDDED_DIR": str(run / "pgdata"), "DAGSTER_HOME": str(run / "dagster_home"),
            "CONVERSATION_STORE": str(run / "conversations")}
    try:
        seconds, done = timed(lambda: subprocess.run([str(BULKGEN), "demo"], env=env, capture_output=True, text=True))
        if done.returncode != 0:
            raise RuntimeError(f"bulkgen demo exited {done.returncode}: {done.stderr[-2000:]}")
        files = sum(1 for p in (run / "conversations").rglob("*.json"))
    finally:
        shutil.rmtree(run, ignore_errors=True)
        shutil.rmtree(stopped.parent, ignore_errors=True)
    return {"demo_wall_s": seconds,
            "raw": {"conversation_files": files, "summary_lines": len(done.stdout.splitlines())}}
