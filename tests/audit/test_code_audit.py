"""The audit against the app's code, on the demo's legacy database: the refusals found from the code alone."""

import json
import shutil
from pathlib import Path

import dagster as dg
import psycopg
import pytest
import yaml

from assets.audit.contract import CONTRACT

from assets.audit.asset import schema_audit
from assets.audit.code_audit import bounded_by_code, run_code_audit
from assets.audit.code_contract import extract_code_contract
from assets.audit.contract import load_contract
from assets.audit.findings import run_audit
from pipelines.cli import main
from resources.database import TargetDatabase
from tests.audit.test_code_contract import APP, PROCESSOR, SERVICE, TYPES, at

ITEMS_CANCELLED = at(SERVICE, "update({ status: 'cancelled' })")


@pytest.fixture(scope="module")
def code():
    return extract_code_contract(str(APP))


@pytest.fixture
def agreeing_contract(tmp_path) -> Path:
    """The hand-kept contract drifted to what the legacy database accepts: alone, it finds no refusal."""
    raw = yaml.safe_load(Path(CONTRACT.path).read_text())
    raw["tables"]["batch_jobs"]["columns"]["status"]["values"] = ["pending", "running", "paused", "completed",
                                                                  "failed", "cancelled"]
    raw["tables"]["batch_items"]["columns"]["status"]["values"] = ["queued", "processing", "completed", "failed"]
    path = tmp_path / "drifted.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def rejected(findings):
    return {(f.table, f.column): set(f.rejected) for f in findings if f.kind == "rejected_values"}


def test_the_code_alone_finds_the_demos_refusals(legacy_db, agreeing_contract, code):
    contract = load_contract(agreeing_contract)
    with psycopg.connect(legacy_db) as conn:
        assert rejected(run_audit(conn, contract)) == {}
        findings = run_code_audit(conn, contract, code)
    assert rejected(findings) == {("batch_jobs", "status"): {"queued", "processing"},
                                  ("batch_items", "status"): {"cancelled"}}
    items = next(f for f in findings if f.kind == "rejected_values" and f.table == "batch_items")
    assert items.evidence == [f"cancelled: {ITEMS_CANCELLED}", f"cancelled: {at(TYPES, 'export const ITEM_STATUSES')}"]
    jobs = next(f for f in findings if f.kind == "rejected_values" and f.table == "batch_jobs")
    job_status = at(TYPES, "export type JobStatus")
    queued = [at(SERVICE, "status: 'queued' as const"), at(PROCESSOR, "const status: 'queued' | 'paused'"), job_status]
    assert jobs.evidence == [f"processing: {job_status}", *(f"queued: {place}" for place in queued)]


def test_types_and_nullability_stay_the_contracts(code):
    bounded = bounded_by_code(CONTRACT, code)
    for table in CONTRACT.tables:
        for column in table.columns:
            after = bounded.table(table.name).column(column.name)
            assert (after.type, after.nullable, after.optional) == (column.type, column.nullable, column.optional)
    assert bounded.table("conversations").column("status").values == ("pending_review",)  # bounded: replaced
    # partly unbounded (an API request's priority): the contract's values and the code's literals together
    assert bounded.table("batch_jobs").column("priority").values == ("low", "normal", "high")
    assert bounded.table("conversations").column("tier").values == ("template", "scenario", "edge_case")  # not written


def test_a_finding_on_a_column_without_a_value_set_carries_the_writes(legacy_db, code):
    with psycopg.connect(legacy_db) as conn:
        conn.execute("ALTER TABLE batch_items DROP COLUMN error_message")
        conn.commit()
        findings = run_code_audit(conn, CONTRACT, code)
    missing = next(f for f in findings if f.kind == "missing_column")
    assert missing.column == "error_message"
    assert missing.evidence == [at("scripts/requeue.js", "error_message: null"),
                                at(SERVICE, "error_message: errorMessage")]


def test_asset_config_audits_against_the_code(legacy_db):
    result = dg.materialize(
        [schema_audit], resources={"database": TargetDatabase(url=legacy_db)},
        run_config={"ops": {"schema_audit": {"config": {"app_source": str(APP)}}}},
    )
    (mat,) = result.asset_materializations_for_node("schema_audit")
    assert mat.metadata["app_source"].value == str(APP)
    assert "src/lib/services/batch-job-service.ts" in mat.metadata["findings"].value
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    conversations = checks["conversations_status_accepts_code_values"]
    assert conversations.metadata["code_values"].value == "pending_review"  # the code's, not the contract's
    assert not checks["batch_items_status_accepts_code_values"].passed


def test_app_source_from_the_environment(legacy_db, monkeypatch):
    monkeypatch.setenv("BULKGEN_APP_SOURCE", str(APP))
    result = dg.materialize([schema_audit], resources={"database": TargetDatabase(url=legacy_db)})
    frame = result.output_for_node("schema_audit")
    evidence = frame.loc[(frame.table == "batch_items") & (frame.kind == "rejected_values"), "evidence"].iloc[0]
    assert evidence[0] == f"cancelled: {ITEMS_CANCELLED}"


def test_cli_audit_with_source(legacy_db, agreeing_contract, capsys, monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    assert main(["audit", "--database-url", legacy_db, "--contract", str(agreeing_contract)]) == 0
    capsys.readouterr()
    assert main(["audit", "--database-url", legacy_db, "--contract", str(agreeing_contract),
                 "--source", str(APP), "--format", "json"]) == 1
    findings = json.loads(capsys.readouterr().out)["findings"]
    refused = {(f["table"], f["column"]): f for f in findings if f["kind"] == "rejected_values"}
    assert set(refused) == {("batch_jobs", "status"), ("batch_items", "status")}
    assert any(e.startswith("processing: ") for e in refused[("batch_jobs", "status")]["evidence"])


def test_cli_audit_with_a_bad_source_fails_before_connecting(capsys, tmp_path):
    assert main(["audit", "--database-url", "postgresql://nobody@127.0.0.1:1/none", "--source",
                 str(tmp_path / "nowhere")]) == 2
    assert capsys.readouterr().err.strip() == f"bulkgen: error: --source {tmp_path / 'nowhere'}: not a directory"


def test_processor_values_reach_the_audit(code):
    # the call-site values of updateItemStatus are among what the audit checks
    bounded = bounded_by_code(CONTRACT, code)
    assert set(bounded.table("batch_items").column("status").values) >= {"processing", "completed", "failed"}
    assert at(PROCESSOR, "updateItemStatus(itemId, 'processing')") in code.column("batch_items", "status").values[
        "processing"]


def test_unchanged_copy_keeps_the_fingerprint(tmp_path, code):
    shutil.copytree(APP, tmp_path / "app")
    assert extract_code_contract(str(tmp_path / "app")).fingerprint() == code.fingerprint()
