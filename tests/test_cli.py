"""`bulkgen` as users call it: exit codes, JSON, and one-line errors without secrets or tracebacks."""

import json
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from pipelines.cli import main

FIELDS = {"table", "column", "kind", "severity", "expected", "actual", "allowed", "rejected", "columns"}


def bulkgen(*args: str) -> subprocess.CompletedProcess:
    """The installed console script, in a real process."""
    script = Path(sys.executable).with_name("bulkgen")
    return subprocess.run([script, *args], capture_output=True, text=True, timeout=120)


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
    assert result.stdout == ""


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
