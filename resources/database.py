"""The target database: the application's PostgreSQL, reached by DSN or embedded.

Everything that talks to the application's database goes through `TargetDatabase`, so the
DSN (which may hold a password) is resolved in one place and never leaves it unredacted.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import unquote

import dagster as dg
import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from pydantic import Field

from resources.embedded import DEFAULT_DATA_DIR, embedded_app_url


class DatabaseUnavailable(RuntimeError):
    """The target database cannot be reached or the DSN is not usable (message has no secrets)."""


def redact(dsn: str) -> str:
    """The DSN as libpq key=value pairs with any password replaced by ***."""
    try:
        info = conninfo_to_dict(libpq_dsn(dsn))
    except psycopg.ProgrammingError:
        return "<unparseable DSN>"
    if info.get("password"):
        info["password"] = "***"
    return make_conninfo(**info)


def scrub(message: str, dsn: str) -> str:
    """Remove the DSN and its password from a driver message, wherever they appear (even when unparseable)."""
    for form in {dsn, libpq_dsn(dsn)}:
        message = message.replace(form, redact(dsn))
    for password in sorted(_passwords(dsn), key=len, reverse=True):
        message = message.replace(password, "***")
    return message


def _passwords(dsn: str) -> set[str]:
    """The DSN's password as libpq reads it, and as written (URI userinfo or key=value), percent-encoded or not."""
    found = set()
    try:
        found.add(conninfo_to_dict(libpq_dsn(dsn)).get("password") or "")
    except psycopg.ProgrammingError:
        pass
    for match in re.finditer(r"://[^/@?#:]*:([^@/?#]*)@|password\s*=\s*('(?:[^'\\]|\\.)*'?|[^\s&]+)", dsn):
        raw = match.group(1) or match.group(2) or ""
        found |= {raw, unquote(raw), raw.strip("'")}
    return {p for p in found if p}


def connection_lost(exc: BaseException) -> bool:
    """The error is the database going away (restart, failover, a terminated session), not a statement failing."""
    if isinstance(exc, DatabaseUnavailable):
        return True
    state = getattr(exc, "sqlstate", None)
    return isinstance(exc, psycopg.OperationalError) and (
        state is None or state.startswith("08") or state in ("57P01", "57P02", "57P03"))


def libpq_dsn(dsn: str) -> str:
    """Accept SQLAlchemy-style schemes (postgresql+psycopg://) as well as libpq URIs."""
    return re.sub(r"^postgres(ql)?\+\w+://", "postgresql://", dsn)


def connect(dsn: str, *, autocommit: bool = False, connect_timeout: int = 10) -> psycopg.Connection:
    """A psycopg connection, or DatabaseUnavailable with a one-line, password-free reason."""
    try:
        conn = psycopg.connect(
            libpq_dsn(dsn),
            autocommit=autocommit,
            connect_timeout=connect_timeout,
            application_name="bulkgen",
        )
    except (psycopg.Error, ValueError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise DatabaseUnavailable(
            f"cannot connect to {redact(dsn)}: {scrub(reason, dsn)}"
        ) from None
    return conn


class TargetDatabase(dg.ConfigurableResource):
    """The application's PostgreSQL: `url` (from the DATABASE_URL env var) or the embedded server."""

    url: str | None = Field(
        default=None,
        description="DSN of the target database; unset means the embedded PostgreSQL.",
    )
    embedded_data_dir: str = Field(
        default=str(DEFAULT_DATA_DIR),
        description="Data folder of the embedded PostgreSQL (used only when `url` is unset).",
    )

    def dsn(self) -> str:
        return self.url or embedded_app_url(self.embedded_data_dir)

    def display_name(self) -> str:
        """Which database this is, for every output that names it: host and database, password redacted."""
        return redact(self.url) if self.url else f"embedded demo database at {self.embedded_data_dir}"

    @contextmanager
    def connection(self, *, autocommit: bool = False) -> Iterator[psycopg.Connection]:
        with connect(self.dsn(), autocommit=autocommit) as conn:
            yield conn


def target_database() -> TargetDatabase:
    """The resource as deployed: DATABASE_URL (read by Dagster at run time) when set, else embedded."""
    return TargetDatabase(url=dg.EnvVar("DATABASE_URL")) if os.environ.get("DATABASE_URL") else TargetDatabase()
