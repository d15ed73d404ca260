"""`bulkgen migrate`: exact SQL out, exit codes as for `audit`, one-line errors without secrets."""

from __future__ import annotations

import psycopg
import pytest

from assets.migration.plan import make_plan
from pipelines.cli import main
from resources.database import TargetDatabase
from tests.migration.support import CONTRACT, snapshot


@pytest.fixture(autouse=True)
def restore_environment(monkeypatch):
    """`main` exports --database-url as DATABASE_URL; put it back afterwards."""
    monkeypatch.delenv("DATABASE_URL", raising=False)


def test_dry_run_prints_exactly_the_sql_and_writes_nothing(legacy_db, capsys):
    before = snapshot(legacy_db)
    with psycopg.connect(legacy_db, autocommit=True) as conn:
        expected = make_plan(conn, CONTRACT).sql()
    assert main(["migrate", "--database-url", legacy_db, "--dry-run", "--format", "sql"]) == 1  # errors remain
    database = TargetDatabase(url=legacy_db).display_name()
    assert capsys.readouterr().out == f"-- database: {database}\n{expected}"
    assert snapshot(legacy_db) == before


def test_migrate_then_audit_reports_no_error(legacy_db, capsys):
    assert main(["migrate", "--database-url", legacy_db]) == 0
    out = capsys.readouterr().out
    assert "applied 1 step(s)" in out and "remapped in batch_jobs.status: pending: 2, running: 1" in out
    assert main(["audit", "--database-url", legacy_db]) == 0
    assert "| error |" not in capsys.readouterr().out
    assert main(["migrate", "--database-url", legacy_db, "--format", "sql"]) == 0
    assert capsys.readouterr().out.splitlines()[1].startswith("-- nothing to run:")


def test_unmappable_values_exit_1_with_one_line(legacy_db, capsys):
    with psycopg.connect(legacy_db) as conn:
        conn.execute("ALTER TABLE batch_jobs DROP CONSTRAINT batch_jobs_status_check;"
                     "INSERT INTO batch_jobs (name, status) VALUES ('odd', 'archived');"
                     "ALTER TABLE batch_jobs ADD CONSTRAINT batch_jobs_status_check CHECK (status <> 'queued')")
    before = snapshot(legacy_db)
    assert main(["migrate", "--database-url", legacy_db]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "1 row(s) hold 'archived' with no mapping" in err
    assert snapshot(legacy_db) == before


def test_unreachable_database_exits_2_without_the_password(capsys):
    url = "postgresql://app:s3cret-pw@127.0.0.1:1/app"
    assert main(["migrate", "--database-url", url, "--dry-run"]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("bulkgen: error: cannot connect") and captured.err.count("\n") == 1
    assert "s3cret-pw" not in captured.err + captured.out and "Traceback" not in captured.err
