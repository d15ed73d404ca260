"""What every benchmark shares: its own embedded PostgreSQL, databases cloned from templates, topics."""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import psycopg
from psycopg import sql

from assets.audit.contract import CONTRACT
from assets.migration.execute import migrate
from assets.generation.owner import OWNER_ENV
from pipelines.demo import DEMO_DIR, DEMO_OWNER, insert_catalog_rows, load_demo_database
from resources.embedded import database_url, embedded_server_url

os.environ.setdefault(OWNER_ENV, DEMO_OWNER)  # every benchmark generates on the demo database, for its user

ITEMS_PER_TOPIC = 24  # 3 personas x 8 emotional arcs in the demo catalog
ALL_TOPICS_FILE = "training_topics_all.json"  # 65 real topics; synthetic variants of them beyond that


class Server:
    """An embedded PostgreSQL of the benchmark's own, its folder deleted when the process exits."""

    def __init__(self, data_dir: Path | None = None):
        self.data_dir = data_dir = data_dir or Path(tempfile.mkdtemp(prefix="bulkgen-bench-")) / "pgdata"
        self.url = embedded_server_url(data_dir, cleanup="delete")
        with psycopg.connect(self.url) as conn:
            self.version = conn.execute("SHOW server_version").fetchone()[0]

    def dsn(self, name: str) -> str:
        return database_url(self.url, name)

    def create(self, template: str | None = None, prefix: str = "bench") -> str:
        """A new database (a clone of `template` when given); returns its name."""
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template:
            statement += sql.SQL(" TEMPLATE {} STRATEGY FILE_COPY").format(sql.Identifier(template))
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(statement)
        return name

    def settle(self) -> None:
        """Start a measurement from quiet disks: the server's dirty pages and the OS's written, not pending."""
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute("CHECKPOINT")
        os.sync()

    def cpu_seconds(self) -> float:
        """CPU time (user and system) the server's processes have used so far: the postmaster and its children."""
        postmaster = int((self.data_dir / "postmaster.pid").read_text().split()[0])
        ticks = 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:  # the process ended meanwhile
                continue
            if int(stat.parent.name) == postmaster or int(fields[1]) == postmaster:  # its pid, or its parent's
                ticks += int(fields[11]) + int(fields[12])
        return ticks / os.sysconf("SC_CLK_TCK")

    def drop(self, name: str) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def synthetic_topics(count: int) -> list[dict]:
    """`count` topics: the 65 real ones, then numbered variants of them (same shape, new keys and names)."""
    real = json.loads((DEMO_DIR / "catalog" / ALL_TOPICS_FILE).read_text())
    topics = []
    for i in range(count):
        base = real[i % len(real)]
        n = i // len(real)
        topics.append(base if n == 0 else {**base, "topic_key": f"{base['topic_key']}_v{n}",
                                           "name": f"{base['name']} ({n + 1})"})
    return topics


def legacy_template(server: Server, topics: int) -> str:
    """The demo's legacy database with `topics` training topics (at least the 65 real ones)."""
    name = server.create(prefix="bench_legacy")
    with psycopg.connect(server.dsn(name)) as conn:
        load_demo_database(conn, topics_file=ALL_TOPICS_FILE)
        extra = synthetic_topics(max(topics, 65))[65:]
        if extra:
            insert_catalog_rows(conn, "training_topics", extra)
        conn.commit()
    _vacuum(server.dsn(name))
    return name


def fixed_template(server: Server, legacy: str) -> str:
    """A clone of the legacy template that the fix (the plain migration function) has been applied to."""
    name = server.create(legacy, prefix="bench_fixed")
    with psycopg.connect(server.dsn(name), autocommit=True) as conn:
        if not migrate(conn, CONTRACT, applied_by="bench").applied:
            raise RuntimeError("the fix did not apply on the legacy template")
    _vacuum(server.dsn(name))
    return name


def topic_keys(count: int) -> list[str]:
    """The keys of the first `count` topics of the templates (real ones first)."""
    return [t["topic_key"] for t in synthetic_topics(count)]


def _vacuum(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("VACUUM (FREEZE, ANALYZE)")


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def median(values: list[float]) -> float:
    return statistics.median(values)
