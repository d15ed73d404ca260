"""deploy/dagster.yaml for real: a PostgreSQL-backed instance records the runs in PostgreSQL."""

import shutil
from pathlib import Path

import dagster as dg
import psycopg
from psycopg.conninfo import conninfo_to_dict
from sqlalchemy.engine import URL

from pipelines.definitions import defs
from resources.database import TargetDatabase

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def psycopg2_url(dsn: str) -> str:
    """The SQLAlchemy URL dagster-postgres takes for a libpq DSN (TCP or a socket folder)."""
    info = conninfo_to_dict(dsn)
    host = info.get("host", "")
    socket = host.startswith("/")
    return URL.create(
        "postgresql+psycopg2", username=info.get("user"), password=info.get("password"),
        host=None if socket else host, port=int(info["port"]) if info.get("port") else None,
        database=info["dbname"], query={"host": host} if socket else {},
    ).render_as_string(hide_password=False)


def test_chain_runs_on_a_postgres_backed_instance(legacy_db, empty_db, tmp_path, monkeypatch):
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(DEPLOY / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("DAGSTER_PG_URL", psycopg2_url(empty_db))
    with dg.DagsterInstance.get() as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        result = defs.resolve_job_def("audit_job").execute_in_process(
            instance=instance, resources={"database": TargetDatabase(url=legacy_db)}
        )
        assert result.success
    with psycopg.connect(empty_db) as conn:
        runs = conn.execute("SELECT run_id, status FROM runs").fetchall()
        materialized = conn.execute(
            "SELECT count(*) FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION' AND run_id = %s",
            [result.run_id],
        ).fetchone()[0]
    assert runs == [(result.run_id, "SUCCESS")]
    assert materialized == 1
