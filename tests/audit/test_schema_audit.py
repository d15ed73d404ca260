"""The audit on the legacy demo schema, as a plain function and as a Dagster asset with its checks."""

import dagster as dg
import psycopg

from assets.audit.asset import COLUMNS_CHECK, schema_audit, value_set_check_name
from assets.audit.contract import load_contract
from assets.audit.findings import FINDING_FIELDS, run_audit
from resources.database import TargetDatabase


def _by_kind(findings, kind):
    return {(f.table, f.column): f for f in findings if f.kind == kind}


def test_legacy_schema_findings(legacy_db):
    with psycopg.connect(legacy_db) as conn:
        findings = run_audit(conn, load_contract())
    rejected = _by_kind(findings, "rejected_values")
    assert set(rejected) == {("batch_jobs", "status"), ("batch_items", "status")}
    assert rejected["batch_jobs", "status"].rejected == ["queued", "processing"]
    assert rejected["batch_jobs", "status"].allowed == ["pending", "running", "paused", "completed", "failed", "cancelled"]
    assert rejected["batch_items", "status"].rejected == ["cancelled"]  # the one the seed audit missed
    assert all(f.severity == "error" for f in rejected.values())
    unused = _by_kind(findings, "unused_table")
    assert list(unused) == [("batch_checkpoints", None)]
    assert unused["batch_checkpoints", None].actual == "columns: id, job_id, created_at, updated_at"
    assert unused["batch_checkpoints", None].severity == "info"
    assert not _by_kind(findings, "missing_column")


def test_drift_in_columns_is_found(legacy_db):
    with psycopg.connect(legacy_db, autocommit=True) as conn:
        conn.execute("ALTER TABLE batch_items DROP COLUMN error_message")
        conn.execute("ALTER TABLE batch_items ADD COLUMN legacy_note text")
        conn.execute("UPDATE batch_jobs SET completed_at = now()")
        conn.execute("ALTER TABLE batch_jobs ALTER COLUMN completed_at TYPE text, ALTER COLUMN completed_at SET NOT NULL")
        conn.execute("ALTER TABLE personas DROP COLUMN language_patterns")
        conn.execute("ALTER TABLE batch_items ALTER COLUMN progress TYPE numeric(5, 2)")
    with psycopg.connect(legacy_db) as conn:
        findings = run_audit(conn, load_contract())
    found = {(f.table, f.column, f.kind): f.severity for f in findings}
    assert found[("batch_items", "error_message", "missing_column")] == "error"
    assert found[("batch_items", "legacy_note", "unused_column")] == "info"
    assert found[("batch_jobs", "completed_at", "type_mismatch")] == "error"
    assert found[("batch_jobs", "completed_at", "not_null")] == "error"
    assert found[("personas", "language_patterns", "missing_column")] == "warning"  # optional for the code
    assert ("batch_items", "progress", "type_mismatch") not in found  # integers fit numeric


def test_missing_table(legacy_db):
    with psycopg.connect(legacy_db, autocommit=True) as conn:
        conn.execute("DROP TABLE batch_checkpoints, batch_items")
    with psycopg.connect(legacy_db) as conn:
        findings = run_audit(conn, load_contract())
    assert [(f.table, f.kind, f.severity) for f in findings if f.table == "batch_items"] == [
        ("batch_items", "missing_table", "error")
    ]
    assert not _by_kind(findings, "unused_table")


def test_asset_materializes_findings_and_checks(legacy_db):
    with dg.DagsterInstance.ephemeral() as instance:
        result = dg.materialize(
            [schema_audit], instance=instance, resources={"database": TargetDatabase(url=legacy_db)}
        )
        assert result.success
        frame = result.output_for_node("schema_audit")
        assert list(frame.columns) == list(FINDING_FIELDS)
        assert len(frame) >= 3
        mat = result.asset_materializations_for_node("schema_audit")[0]
        assert mat.metadata["error_findings"].value == 2
        assert mat.metadata["dagster/row_count"].value == len(frame)
        assert "| error | batch_jobs | status | rejected_values |" in mat.metadata["findings"].value
        checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
        assert not checks[value_set_check_name("batch_jobs", "status")].passed
        assert checks[value_set_check_name("batch_jobs", "status")].metadata["rejected"].value == "processing, queued"
        assert not checks[value_set_check_name("batch_items", "status")].passed
        assert checks[value_set_check_name("batch_jobs", "priority")].passed
        assert checks[COLUMNS_CHECK].passed
        # the event log has what the UI shows
        record = instance.get_latest_materialization_event(dg.AssetKey("schema_audit"))
        assert record is not None and record.run_id == result.run_id


def test_missing_columns_check_blocks(legacy_db):
    with psycopg.connect(legacy_db, autocommit=True) as conn:
        conn.execute("ALTER TABLE batch_items DROP COLUMN conversation_id")
    with dg.DagsterInstance.ephemeral() as instance:
        result = dg.materialize(
            [schema_audit], instance=instance, resources={"database": TargetDatabase(url=legacy_db)},
            raise_on_error=False,
        )
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert not checks[COLUMNS_CHECK].passed
    assert checks[COLUMNS_CHECK].metadata["missing"].value == "batch_items.conversation_id"
    assert not result.success  # blocking: nothing downstream runs on a schema missing columns


def test_password_never_reaches_the_event_log(legacy_db, capfd):
    """Trust auth ignores the password, so the run succeeds while we look for it everywhere."""
    info = psycopg.conninfo.conninfo_to_dict(legacy_db)
    url = psycopg.conninfo.make_conninfo(**info, password="pw-4f9a1c")
    with dg.DagsterInstance.ephemeral() as instance:
        result = dg.materialize([schema_audit], instance=instance, resources={"database": TargetDatabase(url=url)})
        assert result.success
        records = instance.get_records_for_run(result.run_id).records
        stored = "".join(dg.serialize_value(r.event_log_entry) for r in records)
    assert "error_findings" in stored  # the metadata is in there ...
    assert "pw-4f9a1c" not in stored  # ... and the password is not
    out, err = capfd.readouterr()
    assert "pw-4f9a1c" not in out + err


def test_findings_table_metadata_has_a_schema(legacy_db):
    result = dg.materialize([schema_audit], resources={"database": TargetDatabase(url=legacy_db)})
    table = result.asset_materializations_for_node("schema_audit")[0].metadata["findings_table"]
    assert [c.name for c in table.schema.columns] == list(FINDING_FIELDS)
    rows = [r.data for r in table.records]
    assert {"table": "batch_items", "column": "status", "kind": "rejected_values", "severity": "error",
            "rejected": "cancelled"}.items() <= next(r for r in rows if r["table"] == "batch_items").items()
