"""deploy/dagster.yaml for real: a PostgreSQL-backed instance, from DAGSTER_PG_URL as users paste
it, records the runs in PostgreSQL."""

import shutil
from importlib.resources import files

import dagster as dg
import psycopg
import pytest
from dagster._serdes import serialize_value
from psycopg.conninfo import conninfo_to_dict
from sqlalchemy.engine import URL, make_url

from pipelines.definitions import defs
from pipelines.instance_storage import psycopg2_url
from resources.database import TargetDatabase


def pasted_url(dsn: str) -> str:
    """The `postgresql://user:password@host:port/db` URL a user writes for a libpq DSN (TCP or a socket folder)."""
    info = conninfo_to_dict(dsn)
    host = info.get("host", "")
    socket = host.startswith("/")
    return URL.create(
        "postgresql", username=info.get("user"), password=info.get("password") or "pass@word",  # trust auth ignores it
        host=None if socket else host, port=int(info["port"]) if info.get("port") else None,
        database=info["dbname"], query={"host": host} if socket else {},
    ).render_as_string(hide_password=False)


@pytest.mark.parametrize(("url", "expected"), [
    ("postgresql://u:p@db:5432/dagster", "postgresql+psycopg2://u:p@db:5432/dagster"),
    ("postgres://u:p@db/dagster?sslmode=require", "postgresql+psycopg2://u:p@db/dagster?sslmode=require"),
    ("postgresql+psycopg2://u@db/dagster", "postgresql+psycopg2://u@db/dagster"),
    ("postgresql+pg8000://u@db/dagster", "postgresql+pg8000://u@db/dagster"),
    ("mysql://u@db/dagster", "mysql://u@db/dagster"),
])
def test_a_bare_postgresql_url_gets_the_psycopg2_driver(url, expected):
    assert psycopg2_url(url) == expected


def test_chain_runs_on_a_postgres_backed_instance(legacy_db, empty_db, tmp_path, monkeypatch):
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(files("deploy") / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    url = pasted_url(empty_db)
    monkeypatch.setenv("DAGSTER_PG_URL", url)
    with dg.DagsterInstance.get() as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        result = defs.resolve_job_def("audit_job").execute_in_process(
            instance=instance, resources={"database": TargetDatabase(url=legacy_db)}
        )
        assert result.success
        ref = instance.get_ref()  # what a run worker or the daemon rebuilds the instance from
    assert make_url(url).password not in serialize_value(ref)  # it travels on command lines: the variable's name only
    with dg.DagsterInstance.from_ref(ref) as rebuilt:
        assert [r.run_id for r in rebuilt.get_runs()] == [result.run_id]
    with psycopg.connect(empty_db) as conn:
        runs = conn.execute("SELECT run_id, status FROM runs").fetchall()
        materialized = conn.execute(
            "SELECT count(*) FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION' AND run_id = %s",
            [result.run_id],
        ).fetchone()[0]
    assert runs == [(result.run_id, "SUCCESS")]
    assert materialized == 1
