"""Fixtures: a real PostgreSQL server ($DATABASE_URL's, else an embedded one) and a fresh database per test;
a real S3 server on loopback (moto's server mode) and an empty bucket per test.

Fresh databases are cloned from a template loaded once per session, which is fast.
"""

from __future__ import annotations

import logging
import os
import tempfile
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import boto3
import psycopg
import pytest
from psycopg import sql
from moto.server import ThreadedMotoServer

from assets.generation.owner import OWNER_ENV
from pipelines.demo import DEMO_OWNER, load_demo_database
from resources.conversation_store import ConversationStore
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


S3_BUCKET = "conversation-files"
# Credentials of the loopback S3 server; the secrets tests search everything written for them.
AWS_ACCESS_KEY_ID = "AKIAH14BLOOPBACK0001"
AWS_SECRET_ACCESS_KEY = "s3-S3cr3t/h14b+loopback-9f2e71"


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """The endpoint URL of a real S3 server on loopback (moto's server mode), for the whole session."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # not a line per request in a failed test's log
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_env(s3_server, monkeypatch) -> dict[str, str]:
    """The AWS variables that point boto3 at the loopback server, set in this process (and returned for
    subprocesses), with an empty `conversation-files` bucket: the server is reset first."""
    urllib.request.urlopen(urllib.request.Request(f"{s3_server}/moto-api/reset", method="POST"), timeout=10).close()
    env = {"AWS_ENDPOINT_URL": s3_server, "AWS_ACCESS_KEY_ID": AWS_ACCESS_KEY_ID,
           "AWS_SECRET_ACCESS_KEY": AWS_SECRET_ACCESS_KEY, "AWS_DEFAULT_REGION": "us-east-1"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    boto3.session.Session().client("s3").create_bucket(Bucket=S3_BUCKET)
    return env


@pytest.fixture(params=["local", "s3"])
def conversation_store(request, tmp_path) -> ConversationStore:
    """The same tests over both stores: a local folder, and the `conversation-files` bucket on loopback S3."""
    if request.param == "s3":
        request.getfixturevalue("s3_env")
        return ConversationStore(root=f"s3://{S3_BUCKET}")
    return ConversationStore(root=str(tmp_path / "conversations"))
