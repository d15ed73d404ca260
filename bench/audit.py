"""audit_scale_ratio: the audit's time with `tables` unrelated tables in the database ÷ without.

Two clones of the legacy database, one given `tables` tables the contract never names (outside
its scope, each with a primary key, a CHECK and a few columns, so the catalog grows in every
table the audit reads: pg_class, pg_attribute, pg_constraint, pg_type). `run_audit` runs on
each alternately, many times, each time on a new warm session; the medians are compared.
"""

from __future__ import annotations

import psycopg

from assets.audit.contract import CONTRACT
from assets.audit.findings import run_audit
from bench.common import Server, median, timed

PER_TRANSACTION = 250


def measure(server: Server, legacy: str, *, tables: int, repeats: int) -> dict:
    plain = server.create(legacy, prefix="bench_audit")
    crowded = server.create(legacy, prefix="bench_audit_crowded")
    try:
        create_s, _ = timed(lambda: _add_tables(server.dsn(crowded), tables))
        findings = {len(_audit(server.dsn(plain))[1]), len(_audit(server.dsn(crowded))[1])}
        if len(findings) != 1:
            raise RuntimeError(f"the unrelated tables changed the audit's findings ({findings})")
        without, with_tables = [], []
        for rep in range(repeats):  # alternately A B and B A, so that neither always runs first
            order = [(plain, without), (crowded, with_tables)]
            for name, times in order if rep % 2 == 0 else reversed(order):
                times.append(_audit(server.dsn(name))[0])
        with psycopg.connect(server.dsn(crowded)) as conn:
            (relations,) = conn.execute("SELECT count(*) FROM pg_class").fetchone()
    finally:
        server.drop(plain)
        server.drop(crowded)
    return {
        "audit_scale_ratio": median(with_tables) / median(without),
        "raw": {"tables": tables, "repeats": repeats, "pg_class_rows": relations, "create_s": create_s,
                "without_ms_median": median(without) * 1000, "with_ms_median": median(with_tables) * 1000,
                "without_ms": [round(s * 1000, 2) for s in without],
                "with_ms": [round(s * 1000, 2) for s in with_tables]},
    }


def _audit(dsn: str) -> tuple[float, list]:
    """Seconds for one audit on a new session, after one untimed audit on it (its caches warm).

    A new session each time: how fast a session's round trips are depends on where the scheduler puts
    it and its server process (on this 2-CPU machine, one session can be twice as fast as the next).
    """
    with psycopg.connect(dsn) as conn:
        run_audit(conn, CONTRACT)
        return timed(lambda: run_audit(conn, CONTRACT))


def _add_tables(dsn: str, count: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for start in range(0, count, PER_TRANSACTION):
            body = "".join(
                f"CREATE TABLE unrelated_{i:05d} (id bigint PRIMARY KEY, status text NOT NULL"
                f" CHECK (status IN ('pending', 'running', 'done')), payload jsonb, created_at timestamptz);"
                for i in range(start, min(start + PER_TRANSACTION, count))
            )
            conn.execute(f"BEGIN; {body} COMMIT;")
        conn.execute("ANALYZE")
