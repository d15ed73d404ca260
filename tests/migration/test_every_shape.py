"""One `bulkgen migrate` on a schema holding every shape at once, the app's own objects around it."""

from __future__ import annotations

import subprocess

import psycopg
import pytest

from assets.audit.findings import run_audit
from assets.migration.plan import MigrationSettings, make_plan
from pipelines.cli import main
from tests.migration.support import CONTRACT
from tests.migration.test_plan import SQUAWK

EVERY_SHAPE = """
-- batch_jobs.status: an enum type, as in the app's production schema
CREATE TYPE batch_job_status AS ENUM ('pending', 'running', 'paused', 'completed', 'failed', 'cancelled');
ALTER TABLE batch_jobs DROP CONSTRAINT batch_jobs_status_check, DROP CONSTRAINT batch_jobs_completed_at_check,
    ALTER COLUMN status DROP DEFAULT;
ALTER TABLE batch_jobs ALTER COLUMN status TYPE batch_job_status USING status::batch_job_status,
    ALTER COLUMN status SET DEFAULT 'pending',
    ADD CONSTRAINT batch_jobs_completed_at_check CHECK (status <> 'completed' OR completed_at IS NOT NULL),
    ADD CONSTRAINT batch_jobs_priority_shape CHECK (priority ~ '^[a-z]+$');
-- batch_items.status: exactly as long as its longest legacy value, plus a NOT IN
ALTER TABLE batch_items ALTER COLUMN status TYPE varchar(9),
    ADD CONSTRAINT batch_items_status_not_cancelled CHECK (lower(status) NOT IN ('cancelled'));
-- batch_items.tier: a value list inside a check that also guards another column
ALTER TABLE batch_items DROP CONSTRAINT batch_items_tier_check,
    ADD CONSTRAINT batch_items_tier_position_check CHECK (tier IN ('template', 'edge_case') AND position >= 0);
-- conversations.tier: a domain whose check refuses a code value
CREATE DOMAIN conversation_tier AS text CONSTRAINT conversation_tier_check CHECK (VALUE IN ('template', 'edge_case'));
ALTER TABLE conversations DROP CONSTRAINT conversations_tier_check, ALTER COLUMN tier TYPE conversation_tier;
-- the app's own objects around them
CREATE VIEW batch_job_progress AS
    SELECT j.id, j.name, j.status, i.status AS item_status FROM batch_jobs j LEFT JOIN batch_items i ON i.batch_job_id = j.id;
ALTER TABLE batch_jobs ENABLE ROW LEVEL SECURITY;
CREATE POLICY batch_jobs_owner ON batch_jobs USING (created_by IS NULL OR created_by::text = current_user);
CREATE FUNCTION touch_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.updated_at = now(); RETURN NEW; END $$;
CREATE TRIGGER batch_jobs_updated_at BEFORE UPDATE ON batch_jobs FOR EACH ROW EXECUTE FUNCTION touch_updated_at();
CREATE SCHEMA archive;
CREATE TABLE archive.batch_jobs (id serial PRIMARY KEY, status text CHECK (status IN ('pending', 'running')));
INSERT INTO archive.batch_jobs (status) VALUES ('pending'), ('running');
INSERT INTO batch_items (batch_job_id, position, topic, tier, status)
    SELECT id, n, 'legacy', 'template', (ARRAY['queued', 'completed', 'failed'])[n] FROM batch_jobs, generate_series(1, 3) n
     WHERE status = 'running';
"""

GUARDS_SQL = """
SELECT conrelid::regclass::text, contypid::regtype::text, conname, pg_get_constraintdef(oid), convalidated
  FROM pg_constraint WHERE connamespace IN ('public'::regnamespace, 'archive'::regnamespace)
"""
ROWS_SQL = """
SELECT (SELECT count(*) FROM batch_jobs), (SELECT count(*) FROM batch_items), (SELECT count(*) FROM conversations),
       (SELECT json_agg(a ORDER BY id)::text FROM archive.batch_jobs a)
"""


@pytest.fixture
def every_shape_db(legacy_db) -> str:
    with psycopg.connect(legacy_db, autocommit=True) as conn:
        conn.execute(EVERY_SHAPE)
    return legacy_db


@pytest.mark.slow
def test_one_migrate_fixes_every_shape_and_generation_runs_on_the_result(every_shape_db, tmp_path, monkeypatch,
                                                                         capsys):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    monkeypatch.setenv("CONVERSATION_STORE", str(tmp_path / "conversations"))
    monkeypatch.setenv("GENERATOR_DELAY_MS", "0")
    with psycopg.connect(every_shape_db) as conn:
        guards, rows = set(conn.execute(GUARDS_SQL).fetchall()), conn.execute(ROWS_SQL).fetchone()
        refused = {(f.table, f.column) for f in run_audit(conn, CONTRACT) if f.kind == "rejected_values"}
    assert {("batch_jobs", "status"), ("batch_items", "status"), ("batch_items", "tier"),
            ("conversations", "tier")} <= refused

    assert main(["migrate", "--database-url", every_shape_db]) == 0
    out = capsys.readouterr().out
    assert "add queued to public.batch_job_status" in out and "retype to character varying(10)" in out
    assert "split off batch_items_position_check" in out and "domain public.conversation_tier" in out

    with psycopg.connect(every_shape_db) as conn:
        assert conn.execute(ROWS_SQL).fetchone() == rows  # no row lost, the other schema's table untouched
        after = set(conn.execute(GUARDS_SQL).fetchall())
        replaced = {"batch_items_status_check", "batch_items_status_not_cancelled",
                    "batch_items_tier_position_check", "conversation_tier_check"}
        assert {g for g in guards if g[2] not in replaced} <= after  # every other guard kept as it was
        assert ("batch_items", "-", "batch_items_position_check", "CHECK ((\"position\" >= 0))", True) in after
        assert not [f for f in run_audit(conn, CONTRACT) if f.kind == "rejected_values"]
        legacy = dict(conn.execute("SELECT status::text, count(*) FROM batch_jobs GROUP BY 1").fetchall())
        assert legacy == {"queued": 2, "processing": 1, "paused": 1, "completed": 1, "failed": 1, "cancelled": 1}
        assert conn.execute("SELECT count(*) FROM batch_job_progress WHERE item_status IS NOT NULL").fetchone() == (3,)
        assert conn.execute("SELECT relrowsecurity FROM pg_class WHERE oid = 'batch_jobs'::regclass").fetchone() == (
            True,)
        assert conn.execute("SELECT count(*) FROM pg_policy WHERE polname = 'batch_jobs_owner'").fetchone() == (1,)
        assert conn.execute("SELECT count(*) FROM pg_trigger WHERE tgname = 'batch_jobs_updated_at'").fetchone() == (1,)

    assert main(["migrate", "--database-url", every_shape_db]) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert main(["run", "--database-url", every_shape_db, "--topics", "esg_investing"]) == 0
    with psycopg.connect(every_shape_db) as conn:
        assert conn.execute("SELECT status::text, completed_items FROM batch_jobs WHERE shared_parameters ? 'topics'"
                            ).fetchall() == [("completed", 24)]


@pytest.mark.parametrize("large", [False, True], ids=["one transaction", "expand/contract"])
def test_the_plan_for_every_shape_passes_squawk(every_shape_db, tmp_path, large):
    with psycopg.connect(every_shape_db, autocommit=True) as conn:
        plan = make_plan(conn, CONTRACT, MigrationSettings(large_table_rows=2 if large else 50_000))
    assert len(plan.fixes) == 4 and not plan.errors
    file = tmp_path / "migration.sql"
    file.write_text(plan.sql())
    lint = subprocess.run([str(SQUAWK), "--reporter", "gcc", str(file)], capture_output=True, text=True)
    assert lint.returncode == 0 and "warning" not in lint.stdout + lint.stderr, lint.stdout + lint.stderr
