"""How long ACCESS EXCLUSIVE locks on a table are held, as PostgreSQL's own lock table shows it.

A separate process (so the benchmark's own threads never delay a sample) polls `pg_locks`
about every millisecond, each poll its own statement on an autocommit session, and keeps
every contiguous stretch of samples in which one transaction (its virtual transaction id)
held the lock, granted. A hold is measured from the first sample that saw it to the first
sample that no longer did: exact to within one sampling interval, which is recorded too.

    python -m bench.lockprobe DSN TABLE   (runs until its standard input closes; prints JSON)
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg

_SAMPLE = """
SELECT virtualtransaction, pid FROM pg_locks
 WHERE locktype = 'relation' AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
   AND relation = %s AND mode = 'AccessExclusiveLock' AND granted
"""
INTERVAL_S = 0.001


def probe(dsn: str, table: str, stop: threading.Event, ready=lambda: None) -> dict:
    """Sample until `stop` is set; the holds seen (ms, longest first) and the sampling intervals."""
    with psycopg.connect(dsn, autocommit=True, application_name="bench lock probe") as conn:
        (relation,) = conn.execute("SELECT %s::regclass::oid", [table]).fetchone()
        open_holds: dict[str, float] = {}  # vxid -> first seen
        holders: dict[str, int] = {}
        holds = []
        gaps = []
        previous = None
        ready()
        while not stop.is_set():
            rows = conn.execute(_SAMPLE, [relation], prepare=True).fetchall()
            now = time.perf_counter()
            if previous is not None:
                gaps.append(now - previous)
            previous = now
            seen = {vxid: pid for vxid, pid in rows}
            for vxid in list(open_holds):
                if vxid not in seen:
                    holds.append({"ms": (now - open_holds.pop(vxid)) * 1000, "pid": holders.pop(vxid)})
            for vxid, pid in seen.items():
                if vxid not in open_holds:
                    open_holds[vxid], holders[vxid] = now, pid
            pause = INTERVAL_S - (time.perf_counter() - now)
            if pause > 0:
                time.sleep(pause)
        now = time.perf_counter()
        holds += [{"ms": (now - first) * 1000, "pid": holders[vxid], "open": True}
                  for vxid, first in open_holds.items()]
    gaps.sort()
    return {
        "holds_ms": sorted((round(h["ms"], 3) for h in holds), reverse=True),
        "max_hold_ms": max((h["ms"] for h in holds), default=0.0),
        "samples": len(gaps) + 1,
        "interval_ms_median": gaps[len(gaps) // 2] * 1000 if gaps else None,
        "interval_ms_p99": gaps[int(len(gaps) * 0.99)] * 1000 if gaps else None,
        "interval_ms_max": gaps[-1] * 1000 if gaps else None,
    }


class LockProbe:
    """`with LockProbe(dsn, table) as p: ...`; then `p.result` (see `probe`)."""

    def __init__(self, dsn: str, table: str):
        self.dsn, self.table = dsn, table
        self.result: dict | None = None

    def __enter__(self) -> LockProbe:
        self._process = subprocess.Popen([sys.executable, "-m", "bench.lockprobe", self.dsn, self.table],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                         cwd=Path(__file__).resolve().parents[1])
        if self._process.stdout.readline().strip() != "ready":
            raise RuntimeError("the lock probe did not start")
        return self

    def __exit__(self, *exc) -> None:
        out, _ = self._process.communicate(input="", timeout=60)
        if self._process.returncode != 0:
            raise RuntimeError(f"the lock probe failed ({self._process.returncode})")
        self.result = json.loads(out)


def main() -> None:
    dsn, table = sys.argv[1:3]
    stop = threading.Event()

    def wait_for_eof():
        sys.stdin.read()
        stop.set()

    threading.Thread(target=wait_for_eof, daemon=True).start()
    result = probe(dsn, table, stop, lambda: print("ready", flush=True))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
