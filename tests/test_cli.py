"""`bulkgen` as users call it: exit codes, JSON, and one-line errors without secrets or tracebacks."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from assets.audit.contract import load_contract
from assets.migration.plan import make_plan
from pipelines.cli import main
from resources.database import TargetDatabase

FIELDS = {"table", "column", "kind", "severity", "expected", "actual", "allowed", "rejected", "columns", "evidence"}


def bulkgen(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """The installed console script, in a real process."""
    script = Path(sys.executable).with_name("bulkgen")
    return subprocess.run([script, *args], capture_output=True, text=True, timeout=120, env=env)


def test_audit_json_on_the_legacy_schema(legacy_db, capsys, monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    assert main(["audit", "--database-url", legacy_db, "--format", "json"]) == 1
    findings = json.loads(capsys.readouterr().out)["findings"]
    assert findings and all(set(f) == FIELDS for f in findings)
    status = [f for f in findings if (f["table"], f["column"], f["kind"]) == ("batch_jobs", "status", "rejected_values")]
    assert status[0]["rejected"] == ["queued", "processing"]
    assert status[0]["severity"] == "error"


def test_audit_exits_0_once_the_schema_accepts_the_code(legacy_db, capsys, monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    with psycopg.connect(legacy_db, autocommit=True) as conn:
        conn.execute("ALTER TABLE batch_jobs DROP CONSTRAINT batch_jobs_status_check")
        conn.execute("UPDATE batch_jobs SET status = 'queued' WHERE status = 'pending'")
        conn.execute("UPDATE batch_jobs SET status = 'processing' WHERE status = 'running'")
        conn.execute("ALTER TABLE batch_jobs ADD CONSTRAINT batch_jobs_status_check CHECK "
                     "(status IN ('queued', 'processing', 'paused', 'completed', 'failed', 'cancelled'))")
        conn.execute("ALTER TABLE batch_items DROP CONSTRAINT batch_items_status_check")
        conn.execute("ALTER TABLE batch_items ADD CONSTRAINT batch_items_status_check CHECK "
                     "(status IN ('queued', 'processing', 'completed', 'failed', 'cancelled'))")
    assert main(["audit", "--database-url", legacy_db]) == 0
    out = capsys.readouterr().out
    assert "rejected_values" not in out and "'error': 0" in out


def test_malformed_contract_is_exit_2_with_one_line(legacy_db, tmp_path):
    contract = tmp_path / "contract.yaml"
    contract.write_text("tables:\n  batch_jobs:\n    columns:\n      status: {type: text, values: queued}\n")
    result = bulkgen("audit", "--database-url", legacy_db, "--contract", str(contract))
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert result.stderr.startswith(f"bulkgen: error: {contract}: tables.batch_jobs.columns.status.values:")
    assert result.stdout == f"== database: {TargetDatabase(url=legacy_db).display_name()}\n"  # and nothing else


@pytest.mark.parametrize(
    "url, reason",
    [
        ("postgresql://app:s3cr3t-pw@127.0.0.1:1/app", "Connection refused"),
        ("postgresql://app:s3cr3t-pw@/app?host=/nonexistent-socket-dir", "No such file"),
        ("not-a-url s3cr3t-pw", "missing"),
    ],
)
def test_bad_database_url_is_exit_2_without_the_password(url, reason):
    result = bulkgen("audit", "--database-url", url)
    assert result.returncode == 2
    assert result.stderr.startswith("bulkgen: error: cannot connect to")
    assert reason in result.stderr
    assert "s3cr3t-pw" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1


def test_load_demo_refuses_a_database_with_tables(empty_db, capsys, monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    assert main(["load-demo", "--database-url", empty_db]) == 0
    assert "'training_topics': 20" in capsys.readouterr().out
    assert main(["load-demo", "--database-url", empty_db]) == 2
    assert "already has table(s) batch_checkpoints, batch_items, batch_jobs" in capsys.readouterr().err


REDRAWN = """
ALTER TABLE batch_jobs DROP CONSTRAINT batch_jobs_status_check, DROP CONSTRAINT batch_jobs_completed_at_check,
    ALTER COLUMN status DROP DEFAULT;
DELETE FROM batch_jobs WHERE status = 'paused';
CREATE TYPE batch_job_status AS ENUM ('pending', 'running', 'queued', 'completed', 'failed', 'cancelled');
ALTER TABLE batch_jobs ALTER COLUMN status TYPE batch_job_status USING status::batch_job_status,
    ADD CONSTRAINT batch_jobs_completed_at_check CHECK (status <> 'completed' OR completed_at IS NOT NULL);
ALTER TABLE batch_items DROP CONSTRAINT batch_items_status_check, ALTER COLUMN status TYPE varchar(9);
ALTER TABLE batch_items ADD CONSTRAINT batch_items_status_check CHECK (status NOT IN ('cancelled', 'x')) NOT VALID;
ALTER TABLE conversations DROP CONSTRAINT conversations_status_check;
ALTER TABLE conversations ADD CONSTRAINT conversations_status_check CHECK (status ~ '^[a-f]+$');
ALTER TABLE conversations ADD CONSTRAINT conversations_tier_lower CHECK (lower(tier) IN ('template', 'edge_case'));
ALTER TABLE batch_items DROP COLUMN error_message;
"""

# how to INSERT one row with a given value into each table (other columns as needed)
INSERTS = {
    ("batch_jobs", "status"): "INSERT INTO batch_jobs (name, status, completed_at) VALUES ('t', %s, now())",
    ("batch_items", "status"): "INSERT INTO batch_items (batch_job_id, position, topic, status) "
                               "SELECT id, 99, 't', %s FROM batch_jobs LIMIT 1",
    ("conversations", "status"): "INSERT INTO conversations (conversation_id, status) VALUES ('c', %s)",
    ("conversations", "tier"): "INSERT INTO conversations (conversation_id, tier, status) VALUES ('c', %s, 'face')",
}


def test_audit_json_is_exact_on_a_redrawn_schema(legacy_db, capsys, monkeypatch):
    """Enum status, varchar NOT IN NOT VALID, regex and function checks, a missing column."""
    monkeypatch.delenv("DATABASE_URL", raising=False)
    with psycopg.connect(legacy_db, autocommit=True) as conn:
        conn.execute(REDRAWN)
    assert main(["audit", "--database-url", legacy_db, "--format", "json"]) == 1
    findings = json.loads(capsys.readouterr().out)["findings"]
    reported = {(f["table"], f["column"]): set(f["rejected"]) for f in findings if f["kind"] == "rejected_values"}
    from assets.audit.contract import load_contract

    contract = load_contract()
    with psycopg.connect(legacy_db) as conn:
        for (table, column), insert in INSERTS.items():
            refused = set()
            for value in contract.table(table).column(column).values:
                try:
                    with conn.transaction(force_rollback=True):
                        conn.execute(insert, [value])
                except (psycopg.errors.IntegrityError, psycopg.errors.DataError):
                    refused.add(value)
            assert reported.get((table, column), set()) == refused, (table, column)
    assert reported[("batch_jobs", "status")] == {"processing", "paused"}
    assert reported[("batch_items", "status")] == {"processing", "cancelled"}  # varchar(9), NOT IN
    assert reported[("conversations", "status")] == {"pending_review"}
    assert reported[("conversations", "tier")] == {"scenario"}
    missing = [(f["table"], f["column"], f["severity"]) for f in findings if f["kind"] == "missing_column"]
    assert missing == [("batch_items", "error_message", "error")]


def test_every_command_names_its_database_first_with_the_password_redacted(legacy_db, capsys, monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    url = f"{legacy_db} password=s3cr3t-pw"  # the test server trusts the connection; the password is only shown
    name = TargetDatabase(url=url).display_name()
    assert "password=***" in name and "dbname=" in name and "host=" in name and "s3cr3t" not in name
    main(["audit", "--database-url", url])
    assert capsys.readouterr().out.splitlines()[0] == f"== database: {name}"
    main(["audit", "--database-url", url, "--format", "json"])
    assert json.loads(capsys.readouterr().out)["database"] == name
    main(["migrate", "--database-url", url, "--dry-run", "--format", "json"])
    assert json.loads(capsys.readouterr().out)["database"] == name
    main(["migrate", "--database-url", url, "--dry-run", "--format", "sql"])
    assert capsys.readouterr().out.splitlines()[0] == f"-- database: {name}"
    monkeypatch.setenv("DATABASE_URL", url)  # the environment's URL is named the same way
    main(["migrate"])
    out = capsys.readouterr().out
    assert out.splitlines()[0] == f"== database: {name}" and "s3cr3t" not in out


@pytest.mark.parametrize("args", [["audit"], ["migrate", "--dry-run"], ["generate", "--topics", "esg_investing"],
                                  ["run", "--all"]])
def test_without_a_database_url_a_command_exits_2_saying_how_to_choose(args, capsys, monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    assert main(args) == 2
    captured = capsys.readouterr()
    assert captured.err == ("bulkgen: error: no database chosen: pass --database-url URL or set DATABASE_URL (the "
                            "application's database), or pass --embedded for the embedded demo database\n")
    assert captured.out == ""


def test_a_url_and_embedded_exclude_each_other(legacy_db):
    result = bulkgen("audit", "--database-url", legacy_db, "--embedded")
    assert result.returncode == 2 and "not allowed with argument" in result.stderr


@pytest.fixture
def embedded_dir() -> Iterator[Path]:
    """A data folder for an embedded server of the test's own, outside pytest's folders (which the server's system
    user may not enter when the tests run as root); each `bulkgen` process stops the server as it exits."""
    folder = Path(tempfile.mkdtemp(prefix="bulkgen-embedded-"))
    yield folder / "pg"
    shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.slow
def test_the_embedded_database_is_the_default_only_for_load_demo_and_named(embedded_dir):
    """`load-demo` without a URL loads the embedded demo database; `audit` then needs --embedded to read it."""
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"} | {"BULKGEN_EMBEDDED_DIR": str(embedded_dir)}
    loaded = bulkgen("load-demo", env=env)
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.splitlines()[0] == f"== database: embedded demo database at {embedded_dir}"
    refused = bulkgen("audit", env=env)
    assert refused.returncode == 2 and "no database chosen" in refused.stderr
    audited = bulkgen("audit", "--embedded", env=env)
    assert audited.returncode == 1  # the legacy schema's error findings
    assert audited.stdout.splitlines()[0] == f"== database: embedded demo database at {embedded_dir}"
    assert "| error | batch_jobs | status | rejected_values |" in audited.stdout


@pytest.mark.parametrize("command", [[], ["audit"], ["load-demo"], ["migrate"], ["demo"], ["generate"], ["run"]])
def test_help_lists_exit_codes_without_importing_dagster_or_the_driver(command):
    """--help must answer at once: Dagster (about a second to import) and psycopg load only for a command."""
    probe = ("import sys\nfrom pipelines.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n"
             "    pass\nprint(sorted(m for m in ('dagster', 'psycopg', 'pandas') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", probe, *command, "--help"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.rstrip().endswith("[]")
    assert "exit codes" in result.stdout and "2: it cannot run" in result.stdout
    if command:
        assert "  0: " in result.stdout


def test_a_dry_run_prints_the_plan_once_then_its_sql(legacy_db, capsys, monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    with psycopg.connect(legacy_db, autocommit=True) as conn:
        plan = make_plan(conn, load_contract())
    assert main(["migrate", "--database-url", legacy_db, "--dry-run"]) == 1  # the schema still refuses
    out = capsys.readouterr().out
    assert out.count(plan.describe()) == 1
    assert out.splitlines()[1] == f"plan {plan.hash}: dry run, nothing written: {plan.describe()}"
    assert out.endswith(plan.sql())
