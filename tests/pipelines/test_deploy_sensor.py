"""The deploy sensor against a real database: quiet without change, fires on each kind of deploy."""

import shutil
from pathlib import Path

import dagster as dg
import psycopg
import pytest

from assets.audit import asset as audit_asset
from assets.audit.contract import load_contract
from pipelines.sensors import deploy_reaudit_sensor
from resources.database import TargetDatabase


@pytest.fixture
def evaluate(legacy_db):
    """Evaluate the sensor as the daemon would, carrying its cursor from tick to tick."""
    cursor = [None]

    def tick():
        with dg.DagsterInstance.ephemeral() as instance:
            context = dg.build_sensor_context(
                instance=instance, cursor=cursor[0], resources={"database": TargetDatabase(url=legacy_db)}
            )
            result = deploy_reaudit_sensor(context)
        if isinstance(result, dg.SkipReason):
            return []
        cursor[0] = result.cursor
        return result.run_requests

    return tick


def test_first_tick_audits_then_quiet(evaluate):
    assert len(evaluate()) == 1
    assert evaluate() == []
    assert evaluate() == []


def test_fires_after_alter_table_on_a_contracted_table(evaluate, legacy_db):
    evaluate()
    with psycopg.connect(legacy_db, autocommit=True) as conn:
        conn.execute("ALTER TABLE batch_jobs DROP CONSTRAINT batch_jobs_priority_check")
    (request,) = evaluate()
    assert "catalog" in request.tags["bulkgen/deploy"]
    assert evaluate() == []


def test_quiet_on_unrelated_tables(evaluate, legacy_db):
    evaluate()
    with psycopg.connect(legacy_db, autocommit=True) as conn:
        conn.execute("CREATE TABLE unrelated (id int)")
        conn.execute("INSERT INTO batch_jobs (name, status) VALUES ('rows are not a deploy', 'pending')")
    assert evaluate() == []


def test_fires_after_a_new_supabase_migration(evaluate, legacy_db):
    with psycopg.connect(legacy_db, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA supabase_migrations")
        conn.execute("CREATE TABLE supabase_migrations.schema_migrations (version text PRIMARY KEY)")
        conn.execute("INSERT INTO supabase_migrations.schema_migrations VALUES ('20251120000000')")
    evaluate()
    assert evaluate() == []
    with psycopg.connect(legacy_db, autocommit=True) as conn:
        conn.execute("INSERT INTO supabase_migrations.schema_migrations VALUES ('20251125120000')")
    (request,) = evaluate()
    assert "new Supabase migration 20251125120000" in request.tags["bulkgen/deploy"]


def test_fires_after_a_contract_change(evaluate, tmp_path, monkeypatch):
    copy = tmp_path / "contract.yaml"
    shutil.copy(audit_asset.CONTRACT.path, copy)
    monkeypatch.setattr("pipelines.sensors.CONTRACT", load_contract(copy))
    evaluate()
    assert evaluate() == []
    copy.write_text(copy.read_text() + "\n# reviewed again\n")
    (request,) = evaluate()
    assert request.tags["bulkgen/deploy"] == "the contract file changed"


def test_fires_when_what_the_apps_code_writes_changes(evaluate, tmp_path, monkeypatch):
    app = tmp_path / "app"
    shutil.copytree(Path(__file__).resolve().parents[1] / "fixtures" / "app", app)
    monkeypatch.setenv("BULKGEN_APP_SOURCE", str(app))
    evaluate()
    (app / "src" / "notes.md").write_text("a deploy that changes no write")
    assert evaluate() == []
    service = app / "src" / "lib" / "services" / "batch-job-service.ts"
    service.write_text(service.read_text().replace("update({ status: 'paused' })", "update({ status: 'on_hold' })"))
    (request,) = evaluate()
    assert request.tags["bulkgen/deploy"] == "what the app's code writes changed"
    assert evaluate() == []
