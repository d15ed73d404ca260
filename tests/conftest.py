"""Fixtures: a real PostgreSQL server ($DATABASE_URL's, else an embedded one) and a fresh database per test.

Fresh databases are cloned from a template loaded once per session, which is fast.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from assets.generation.owner import OWNER_ENV
from pipelines.demo import DEMO_OWNER, load_demo_database
from resources.database import TargetDatabase
from resources.embedded import database_url, embedded_server_url


@pytest.fixture(autouse=True, scope="session")
def _demo_owner() -> Iterator[None]:
    """Runs are made for the demo's own user (a row of the demo schema's user_profiles), as BULKGEN_OWNER says."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(OWNER_ENV, DEMO_OWNER)
        yield


@pytest.fixture(autouse=True)
def _no_leaked_database_url() -> Iterator[None]:
    """`bulkgen` exports --database-url as DATABASE_URL for its Dagster run: no test passes it on to the next."""
    before = os.environ.get("DATABASE_URL")
    yield
    if before is None:
        os.environ.pop("DATABASE_URL", None)
    else:
        os.environ["DATABASE_URL"] = before


@pytest.fixture(scope="session")
def server_url() -> str:
    """DSN of a maintenance database on the server the tests create their databases on.

    The embedded server's folder is its own temp dir (not pytest's basetemp, which another
    pytest process may prune) and is deleted when the session ends.
    """
    return os.environ.get("DATABASE_URL") or embedded_server_url(
        Path(tempfile.mkdtemp(prefix="bulkgen-pg-")) / "pgdata", cleanup="delete"
    )


def _create_database(server_url: str, template: str | None = None) -> str:
    name = f"bulkgen_test_{uuid.uuid4().hex[:12]}"
    statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if template:
        statement += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(statement)
    return name


def _drop_database(server_url: str, name: str) -> None:
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@contextmanager
def fresh_database(server_url: str, template: str | None = None) -> Iterator[str]:
    """The name of a new database (a copy of `template`, if given), dropped afterwards."""
    name = _create_database(server_url, template)
    try:
        yield name
    finally:
        _drop_database(server_url, name)


@pytest.fixture(scope="session")
def legacy_template(server_url) -> Iterator[str]:
    """A database holding the legacy demo schema and rows, used only as a template."""
    with fresh_database(server_url) as name:
        with psycopg.connect(database_url(server_url, name)) as conn:
            load_demo_database(conn)
        yield name


@pytest.fixture
def empty_db(server_url) -> Iterator[str]:
    """DSN of a fresh, empty database."""
    with fresh_database(server_url) as name:
        yield database_url(server_url, name)


@pytest.fixture
def legacy_db(server_url, legacy_template) -> Iterator[str]:
    """DSN of a fresh database with the legacy (broken) demo schema, rows and catalog."""
    with fresh_database(server_url, legacy_template) as name:
        yield database_url(server_url, name)


@pytest.fixture
def legacy_database(legacy_db) -> TargetDatabase:
    return TargetDatabase(url=legacy_db)
