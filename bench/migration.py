"""migration_max_exclusive_lock_ms, migration_writer_errors, seed_sql_max_exclusive_lock_ms,
migration_enum_max_exclusive_lock_ms, migration_varchar_max_exclusive_lock_ms, migration_wall_vs_seed_sql.

A legacy `batch_jobs` of `rows` rows (a third of them holding the legacy 'pending' or
'running') is fixed twice, on two clones of the same database: by the migration
(`assets.migration.execute.migrate`, default settings, so the expand/contract path) and by the
seed audit's own SQL (`seed_fix.sql`: section 5, its remap moved before its constraint so it can
complete), pasted whole as into an SQL editor. Each time a writer updates random rows all along,
counting the errors it sees and its longest wait, and `bench.lockprobe` records from `pg_locks`
how long each ACCESS EXCLUSIVE lock on `batch_jobs` was held. `migration_wall_vs_seed_sql` is the
migration's wall time divided by the seed SQL's on those same rows.

The same rows are then fixed by the migration on two other shapes of the column, with the writer
running: an enum type (labels added, then the column's check) and a `varchar(9)` read by a view
(widened, the view created again).
"""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import psycopg

from assets.audit.contract import CONTRACT
from assets.migration.execute import migrate
from bench.common import Server, timed
from bench.lockprobe import LockProbe

LEGACY_STATUSES = ("pending", "running", "paused", "completed", "failed", "cancelled")
SEED_SQL = Path(__file__).with_name("seed_fix.sql").read_text()
WRITER_SAMPLE = 20_000  # rows the writer picks from
# The column's other shapes, made before the rows are added (no rewrite of the large table).
SHAPES = {
    "enum": """
        CREATE TYPE batch_job_status AS ENUM ('pending', 'running', 'paused', 'completed', 'failed', 'cancelled');
        ALTER TABLE batch_jobs DROP CONSTRAINT batch_jobs_status_check, DROP CONSTRAINT batch_jobs_completed_at_check,
            ALTER COLUMN status DROP DEFAULT;
        ALTER TABLE batch_jobs ALTER COLUMN status TYPE batch_job_status USING status::batch_job_status,
            ADD CONSTRAINT batch_jobs_completed_at_check CHECK (status <> 'completed' OR completed_at IS NOT NULL);
    """,
    "varchar": """
        ALTER TABLE batch_jobs ALTER COLUMN status TYPE varchar(9);
        CREATE VIEW batch_job_statuses AS SELECT id, status FROM batch_jobs;
    """,
}


def measure(server: Server, legacy: str, *, rows: int, writer_interval_ms: float) -> dict:
    build_s, large = timed(lambda: _large_table(server, legacy, rows))
    try:
        migration = _fix(server, large, "migration", writer_interval_ms)
        seed = _fix(server, large, "seed_sql", writer_interval_ms)
    finally:
        server.drop(large)
    shapes = {}
    for shape, ddl in SHAPES.items():
        shaped = _large_table(server, legacy, rows, ddl)
        try:
            shapes[shape] = _fix(server, shaped, "migration", writer_interval_ms)
        finally:
            server.drop(shaped)
    return {
        "migration_max_exclusive_lock_ms": migration["lock"]["max_hold_ms"],
        "migration_writer_errors": migration["writer"]["errors"]
                                   + sum(s["writer"]["errors"] for s in shapes.values()),
        "seed_sql_max_exclusive_lock_ms": seed["lock"]["max_hold_ms"],
        "migration_enum_max_exclusive_lock_ms": shapes["enum"]["lock"]["max_hold_ms"],
        "migration_varchar_max_exclusive_lock_ms": shapes["varchar"]["lock"]["max_hold_ms"],
        "migration_wall_vs_seed_sql": migration["seconds"] / seed["seconds"],
        "raw": {"rows": rows, "build_s": build_s, "migration": migration, "seed_sql": seed, **shapes},
    }


def _large_table(server: Server, legacy: str, rows: int, shape_ddl: str = "") -> str:
    """A clone of the legacy database whose batch_jobs (of the given shape) has `rows` rows, every legacy status
    alike."""
    name = server.create(legacy, prefix="bench_large")
    with psycopg.connect(server.dsn(name), autocommit=True) as conn:
        if shape_ddl:
            conn.execute(shape_ddl)
        (existing,) = conn.execute("SELECT count(*) FROM batch_jobs").fetchone()
        (status_type,) = conn.execute("SELECT format_type(atttypid, atttypmod) FROM pg_attribute"
                                      " WHERE attrelid = 'batch_jobs'::regclass AND attname = 'status'").fetchone()
        conn.execute(
            "INSERT INTO batch_jobs (name, status, completed_at)"
            f" SELECT 'job ' || i, (%s::text[])[1 + i %% 6]::{status_type}, now() FROM generate_series(1, %s) i",
            [list(LEGACY_STATUSES), rows - existing],
        )
        conn.execute("VACUUM (FREEZE, ANALYZE) batch_jobs")
    return name


def _fix(server: Server, large: str, how: str, writer_interval_ms: float) -> dict:
    name = server.create(large, prefix=f"bench_{how}")
    dsn = server.dsn(name)
    try:
        with psycopg.connect(dsn) as conn:
            ids = [r[0] for r in conn.execute(
                "SELECT id FROM batch_jobs ORDER BY random() LIMIT %s", [WRITER_SAMPLE])]
            before = dict(conn.execute("SELECT status::text, count(*) FROM batch_jobs GROUP BY 1").fetchall())
        server.settle()
        writer = Writer(dsn, ids, writer_interval_ms / 1000)
        with LockProbe(dsn, "batch_jobs") as probe:
            writer.start()
            time.sleep(0.3)  # the writer is running before the fix starts
            seconds, detail = timed(lambda: _run(dsn, how))
            time.sleep(0.3)
            writer.stop()
        with psycopg.connect(dsn) as conn:
            after = dict(conn.execute("SELECT status::text, count(*) FROM batch_jobs GROUP BY 1").fetchall())
        legacy_left = sum(after.get(s, 0) for s in ("pending", "running"))
        if legacy_left or sum(after.values()) != sum(before.values()):
            raise RuntimeError(f"{how} left {legacy_left} legacy rows ({after})")
        return {"seconds": seconds, "lock": probe.result, "writer": writer.summary(), **detail}
    finally:
        server.drop(name)


def _run(dsn: str, how: str) -> dict:
    if how == "seed_sql":
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(SEED_SQL)  # one simple query: one implicit transaction, as an SQL editor sends it
        return {}
    with psycopg.connect(dsn, autocommit=True) as conn:
        outcome = migrate(conn, CONTRACT, applied_by="bench")
    if not outcome.applied:
        raise RuntimeError(f"the migration did not apply: {outcome.message}")
    return {"steps": [{"kind": s.kind, "transactions": s.transactions, "client_hold_ms": round(s.hold_ms, 3),
                       "lock_wait_ms": round(s.lock_wait_ms, 3), "duration_ms": round(s.duration_ms, 1)}
                      for s in outcome.steps]}


class Writer:
    """The application: an UPDATE of a random row every `interval_s`, in autocommit, counting errors."""

    def __init__(self, dsn: str, ids: list, interval_s: float):
        self.dsn, self.ids, self.interval_s = dsn, ids, interval_s
        self.writes, self.errors, self.longest_s = 0, [], 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench writer")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60)

    def summary(self) -> dict:
        return {"writes": self.writes, "errors": len(self.errors), "first_errors": self.errors[:3],
                "longest_wait_ms": round(self.longest_s * 1000, 3)}

    def _run(self) -> None:
        rng = random.Random(7)
        with psycopg.connect(self.dsn, autocommit=True, application_name="bench writer") as conn:
            while not self._stop.is_set():
                started = time.perf_counter()
                try:
                    conn.execute("UPDATE batch_jobs SET updated_at = now(), completed_items = completed_items + 1"
                                 " WHERE id = %s", [rng.choice(self.ids)], prepare=True)
                    self.writes += 1
                except psycopg.Error as exc:
                    self.errors.append(" ".join(str(exc).split()))
                self.longest_s = max(self.longest_s, time.perf_counter() - started)
                if self.interval_s:
                    time.sleep(self.interval_s)
