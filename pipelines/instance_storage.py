"""The production instance's PostgreSQL storage, taking DAGSTER_PG_URL as users paste it.

dagster-postgres runs on psycopg2, but SQLAlchemy 2.1 gives a bare `postgresql://` URL the
psycopg 3 driver, whose server-side parameters break dagster-postgres (`NOTIFY run_events, $1`
is a syntax error). This storage names the psycopg2 driver in such a URL, so users need not.
deploy/dagster.yaml selects it; webserver, daemon and run workers load it from this package.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dagster_postgres import DagsterPostgresStorage
from dagster_postgres.utils import get_token_provider_from_config, pg_url_from_config

if TYPE_CHECKING:
    from dagster._serdes import ConfigurableClassData

BARE_SCHEMES = ("postgresql", "postgres")  # `postgres://` is what Heroku-style providers print


def psycopg2_url(url: str) -> str:
    """`url` with the psycopg2 driver when it names none; any other URL is returned as it is."""
    scheme, separator, rest = url.partition("://")
    return f"postgresql+psycopg2://{rest}" if separator and scheme in BARE_SCHEMES else url


class PostgresStorage(DagsterPostgresStorage):
    """dagster-postgres' storage, with `postgres_url` read through `psycopg2_url`."""

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData | None, config_value) -> PostgresStorage:
        return cls(
            inst_data=inst_data,
            postgres_url=psycopg2_url(pg_url_from_config(config_value)),
            should_autocreate_tables=config_value.get("should_autocreate_tables", True),
            token_provider=get_token_provider_from_config(config_value),
        )
