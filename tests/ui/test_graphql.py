"""The operator's API: launch through the `dagster-graphql` client against a real webserver, read back.

Everything here goes over HTTP to a `dagster-webserver` (and the code server it started) on
loopback, with each run executed by a real run worker against a fresh copy of the legacy
database. Nothing is read from the Dagster instance directly; the application database is read
only to derive expectations (topics, persona × arc counts) and to confirm that what the API
reports is what was written.
"""

from __future__ import annotations

import json

import psycopg
import pytest

from assets.audit.contract import CONTRACT

from assets.audit.asset import COLUMNS_CHECK, value_set_check_name
from assets.audit.findings import FINDING_FIELDS
from assets.partitions import topic_partition_key
from tests.ui.conftest import LEGACY_FAILED_CHECKS, active_topics

pytestmark = pytest.mark.filterwarnings("ignore:Using variable_values:DeprecationWarning")

AUDIT = {"path": ["schema_audit"]}
FIX = {"path": ["value_set_constraints"]}
GENERATION = {"path": ["topic_conversations"]}
FIX_CHECK = "accepts_code_values"

ASSET_QUERY = """
query AssetView($key: AssetKeyInput!) {
  assetOrError(assetKey: $key) {
    __typename
    ... on Asset {
      assetMaterializations(limit: 10) {
        runId
        partition
        metadataEntries {
          __typename
          label
          ... on TableMetadataEntry { table { records schema { columns { name type } } } }
          ... on MarkdownMetadataEntry { mdStr }
          ... on IntMetadataEntry { intValue }
        }
      }
      definition {
        groupName
        description
        kinds
        jobNames
        owners { __typename ... on TeamAssetOwner { team } ... on UserAssetOwner { email } }
        assetChecksOrError {
          __typename
          ... on AssetChecks {
            checks {
              name
              blocking
              description
              executionForLatestMaterialization {
                runId
                status
                evaluation {
                  success
                  severity
                  metadataEntries { label ... on TextMetadataEntry { text } }
                }
              }
            }
          }
        }
      }
    }
  }
}
"""

CHECK_HISTORY_QUERY = """
query CheckHistory($key: AssetKeyInput!, $check: String!) {
  assetCheckExecutions(assetKey: $key, checkName: $check, limit: 10) {
    runId
    status
    evaluation { success }
  }
}
"""

GENERATION_QUERY = """
query Generation($key: AssetKeyInput!, $check: String!, $fix: AssetKeyInput!) {
  generation: assetNodeOrError(assetKey: $key) {
    __typename
    ... on AssetNode {
      groupName
      partitionKeys
      dependencyKeys { path }
      assetPartitionStatuses {
        __typename
        ... on DefaultPartitionStatuses { materializedPartitions failedPartitions }
      }
    }
  }
  fix: assetNodeOrError(assetKey: $fix) {
    __typename
    ... on AssetNode {
      groupName
      assetCheckOrError(checkName: $check) {
        __typename
        ... on AssetCheck { blocking executionForLatestMaterialization { runId status } }
      }
    }
  }
}
"""

RUN_ASSETS_QUERY = """
query RunAssets($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run {
      jobName
      status
      assetMaterializations {
        assetKey { path }
        partition
        metadataEntries {
          __typename
          label
          ... on TextMetadataEntry { text }
          ... on IntMetadataEntry { intValue }
          ... on MarkdownMetadataEntry { mdStr }
        }
      }
    }
  }
}
"""


def _entries(materialization: dict) -> dict[str, dict]:
    return {entry["label"]: entry for entry in materialization["metadataEntries"]}


def _text_metadata(evaluation: dict) -> dict[str, str]:
    return {e["label"]: e.get("text") for e in evaluation["metadataEntries"]}


def assert_legacy_audit(webserver, run_ids: list[str], *, fixed_in_run: bool = False) -> None:
    """The audits the runs `run_ids` (newest first) made of the legacy schema, as the API reports them.

    `fixed_in_run`: the newest run also fixed the schema, so its audit checks were evaluated again after the fix
    and pass: the audit's findings stay the legacy ones, its latest check results are the fixed schema's."""
    run_id = run_ids[0]
    asset = webserver.query(ASSET_QUERY, {"key": AUDIT})["assetOrError"]
    assert asset["__typename"] == "Asset", asset

    # The definition as the asset graph shows it.
    definition = asset["definition"]
    assert definition["groupName"] == "audit"
    assert {"postgres", "pandas"} <= set(definition["kinds"])
    assert {"team": "data-platform", "__typename": "TeamAssetOwner"} in definition["owners"]
    assert definition["description"]

    # One materialization per run, the latest with the findings as a typed table.
    assert [m["runId"] for m in asset["assetMaterializations"]] == run_ids
    materialization = asset["assetMaterializations"][0]
    assert materialization["partition"] is None
    entries = _entries(materialization)
    table = entries["findings_table"]
    assert table["__typename"] == "TableMetadataEntry"
    assert [c["name"] for c in table["table"]["schema"]["columns"]] == list(FINDING_FIELDS)
    rows = [json.loads(record) for record in table["table"]["records"]]
    errors = {
        (r["table"], r["column"], r["kind"], frozenset(r["rejected"].split(", ")))
        for r in rows
        if r["severity"] == "error"
    }
    assert errors == {
        (table, "status", "rejected_values", frozenset(LEGACY_FAILED_CHECKS[f"{table}_status_accepts_code_values"]))
        for table in ("batch_jobs", "batch_items")
    }
    assert ("batch_checkpoints", None, "uncontracted_table") in {(r["table"], r["column"], r["kind"]) for r in rows}
    assert entries["error_findings"]["intValue"] == len(errors)
    assert entries["dagster/row_count"]["intValue"] == len(rows)
    assert entries["findings"]["__typename"] == "MarkdownMetadataEntry"
    assert "| batch_jobs | status | rejected_values |" in entries["findings"]["mdStr"]

    # Every contracted check ran in the latest run; exactly the two legacy status constraints failed.
    checks_or_error = definition["assetChecksOrError"]
    assert checks_or_error["__typename"] == "AssetChecks", checks_or_error
    checks = {c["name"]: c for c in checks_or_error["checks"]}
    expected_names = {value_set_check_name(t.name, c.name) for t, c in CONTRACT.value_set_columns()}
    assert set(checks) == expected_names | {COLUMNS_CHECK}
    assert checks[COLUMNS_CHECK]["blocking"] is True
    for name, check in checks.items():
        execution = check["executionForLatestMaterialization"]
        assert execution is not None and execution["runId"] == run_id, f"{name}: {execution}"
        evaluation = execution["evaluation"]
        if fixed_in_run:
            assert execution["status"] == "SUCCEEDED" and evaluation["success"] is True, f"{name}: {execution}"
            assert _text_metadata(evaluation)["evaluated"] == "after value_set_constraints"
        elif name in LEGACY_FAILED_CHECKS:
            assert execution["status"] == "FAILED" and evaluation["success"] is False, f"{name}: {execution}"
            assert evaluation["severity"] == "ERROR"
            rejected = _text_metadata(evaluation)["rejected"]
            assert set(rejected.split(", ")) == LEGACY_FAILED_CHECKS[name], f"{name}: {rejected}"
        else:
            assert execution["status"] == "SUCCEEDED" and evaluation["success"] is True, f"{name}: {execution}"

    # The check's history, as the Checks tab lists it: one failed execution per run.
    history = webserver.query(
        CHECK_HISTORY_QUERY, {"key": AUDIT, "check": "batch_jobs_status_accepts_code_values"}
    )["assetCheckExecutions"]
    assert history == [{"runId": r, "status": "SUCCEEDED" if fixed_in_run and r == run_id else "FAILED",
                        "evaluation": {"success": fixed_in_run and r == run_id}} for r in run_ids]


def _run(webserver, run_id: str) -> dict:
    run = webserver.query(RUN_ASSETS_QUERY, {"runId": run_id})["runOrError"]
    assert run["__typename"] == "Run", run
    return run


def test_audit_then_chain_for_two_topics_launched_over_graphql(webserver, legacy_db):
    # Audit only: one run, one materialization, the legacy findings and failed checks.
    audit_run = webserver.run_to_success("audit_job")
    run = _run(webserver, audit_run)
    assert run["jobName"] == "audit_job"
    assert [("/".join(m["assetKey"]["path"]), m["partition"]) for m in run["assetMaterializations"]] == [
        ("schema_audit", None)
    ]
    assert_legacy_audit(webserver, [audit_run])

    # The whole chain for two topics.
    topic_keys = active_topics(legacy_db, 2)
    with psycopg.connect(legacy_db) as conn:
        (per_topic,) = conn.execute(
            "SELECT (SELECT count(*) FROM personas WHERE is_active)"
            "     * (SELECT count(*) FROM emotional_arcs WHERE is_active)"
        ).fetchone()
    assert len(topic_keys) == 2 and per_topic > 0
    partitions = [topic_partition_key(k) for k in topic_keys]

    # The two topics become partitions through the API, then one run of the chain covers both.
    run_id = webserver.run_chain(partitions)
    run = _run(webserver, run_id)
    assert run["jobName"] == "chain_job"
    made = {("/".join(m["assetKey"]["path"]), m["partition"]): _entries(m) for m in run["assetMaterializations"]}
    assert set(made) == {
        ("schema_audit", None), ("value_set_constraints", None),
        *(("topic_conversations", key) for key in partitions),
        *(("generation_verification", key) for key in partitions),
    }

    # The chain's audit ran before its fix, on the legacy schema: the same findings, now twice; its checks were
    # evaluated again once the fix applied, so the latest results show the schema as it now is.
    assert_legacy_audit(webserver, [run_id, audit_run], fixed_in_run=True)

    # The fix applied the migration, showed its SQL as a code block, and its blocking check passed.
    fix = made[("value_set_constraints", None)]
    assert fix["sql"]["__typename"] == "MarkdownMetadataEntry" and fix["sql"]["mdStr"].startswith("```sql")
    assert "batch_jobs_status_check" in fix["sql"]["mdStr"]

    state = webserver.query(GENERATION_QUERY, {"key": GENERATION, "check": FIX_CHECK, "fix": FIX})
    fix_check = state["fix"]["assetCheckOrError"]
    assert state["fix"]["groupName"] == "migration"
    assert fix_check["__typename"] == "AssetCheck" and fix_check["blocking"] is True
    assert fix_check["executionForLatestMaterialization"] == {"runId": run_id, "status": "SUCCEEDED"}

    # Generation: both topics materialized by one completed batch job of persona × arc items per topic.
    generation = state["generation"]
    assert generation["groupName"] == "generation"
    assert generation["dependencyKeys"] == [FIX]
    assert sorted(generation["partitionKeys"]) == sorted(partitions)
    statuses = generation["assetPartitionStatuses"]
    assert sorted(statuses["materializedPartitions"]) == sorted(partitions) and statuses["failedPartitions"] == []
    per_partition = [made[("topic_conversations", key)] for key in partitions]
    [batch_job_id] = {entries["batch_job_id"]["text"] for entries in per_partition}
    for entries in per_partition:
        assert entries["batch_job_status"]["text"] == "completed"
        assert entries["items"]["intValue"] == entries["successes"]["intValue"] == 2 * per_topic
        assert entries["failures"]["intValue"] == 0

    # What the API reported is what the database holds.
    with psycopg.connect(legacy_db) as conn:
        job = conn.execute("SELECT status, total_items FROM batch_jobs WHERE id = %s", [batch_job_id]).fetchone()
        items = dict(conn.execute(
            "SELECT topic, count(*) FROM batch_items WHERE batch_job_id = %s AND status = 'completed'"
            " AND conversation_id IS NOT NULL GROUP BY topic",
            [batch_job_id],
        ).fetchall())
    assert job == ("completed", 2 * per_topic)
    assert items == {key: per_topic for key in topic_keys}

    # Audit only, again: the fixed schema now accepts every code value; every check passes.
    reaudit_run = webserver.run_to_success("audit_job")
    asset = webserver.query(ASSET_QUERY, {"key": AUDIT})["assetOrError"]
    latest = asset["assetMaterializations"][0]
    assert latest["runId"] == reaudit_run
    assert _entries(latest)["error_findings"]["intValue"] == 0
    outcomes = {
        c["name"]: c["executionForLatestMaterialization"]
        for c in asset["definition"]["assetChecksOrError"]["checks"]
    }
    assert all(e["runId"] == reaudit_run and e["status"] == "SUCCEEDED" for e in outcomes.values()), outcomes
