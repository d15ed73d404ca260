"""The asset through Dagster itself: a real (ephemeral) instance, its metadata, and its blocking check."""

from __future__ import annotations

import threading
import time

import dagster as dg
import pytest

from assets.audit.asset import schema_audit
from assets.migration.asset import POOL, accepts_code_values, value_set_constraints
from tests.migration.support import snapshot

ASSETS = [schema_audit, value_set_constraints, accepts_code_values]


def materialize(database, **config):
    with dg.DagsterInstance.ephemeral() as instance:
        return dg.materialize(
            ASSETS,
            instance=instance,
            resources={"database": database},
            run_config={"ops": {"value_set_constraints": {"config": config}}} if config else None,
            raise_on_error=False,
        )


def check_result(result) -> dg.AssetCheckEvaluation:
    (evaluation,) = [e for e in result.get_asset_check_evaluations() if e.check_name == "accepts_code_values"]
    return evaluation


def test_materializing_applies_the_fix_and_the_check_passes(legacy_database):
    result = materialize(legacy_database)
    assert result.success
    (mat,) = result.asset_materializations_for_node("value_set_constraints")
    metadata = {k: v.value for k, v in mat.metadata.items()}
    assert metadata["applied"] is True
    assert metadata["sql"].startswith("```sql\n") and "ALTER TABLE" in metadata["sql"]
    assert metadata["rows_remapped"] == {"batch_jobs.status": {"pending": 2, "running": 1}}
    assert metadata["lock_wait_ms"] >= 0 and metadata["lock_hold_ms"] > 0  # measured; speed is the bench's
    assert "'pending'::text" in metadata["constraints_before"] and "'queued'::text" in metadata["constraints_after"]
    assert "password" not in str(metadata)
    evaluation = check_result(result)
    assert evaluation.passed and evaluation.blocking
    assert evaluation.metadata["refused"].value == "none"


def test_dry_run_shows_the_plan_writes_nothing_and_the_check_blocks(legacy_database, legacy_db):
    before = snapshot(legacy_db)
    result = materialize(legacy_database, dry_run=True)
    (mat,) = result.asset_materializations_for_node("value_set_constraints")
    assert mat.metadata["applied"].value is False
    assert mat.metadata["outcome"].value.startswith("dry run, nothing written")
    assert "DROP CONSTRAINT \"batch_jobs_status_check\"" in mat.metadata["sql"].value
    assert snapshot(legacy_db) == before
    evaluation = check_result(result)
    assert not evaluation.passed and evaluation.blocking
    assert evaluation.metadata["refused"].value == "batch_jobs.status: queued, processing; batch_items.status: cancelled"
    assert not result.success  # a failed blocking check fails the run: nothing downstream runs on it


def test_a_plan_that_cannot_run_fails_the_materialization_with_its_reason(legacy_database, legacy_db):
    result = materialize(legacy_database, remap={"pending": "queued"})
    assert not result.success and not result.asset_materializations_for_node("value_set_constraints")
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "1 row(s) hold 'running' with no mapping" in str(failure.step_failure_data.error)


def test_second_materialization_is_a_noop(legacy_database):
    assert materialize(legacy_database).success
    result = materialize(legacy_database)
    (mat,) = result.asset_materializations_for_node("value_set_constraints")
    assert mat.metadata["applied"].value is False and mat.metadata["outcome"].value.startswith("nothing to do")
    assert check_result(result).passed


@pytest.mark.slow
def test_the_pool_keeps_a_second_migration_waiting_while_one_runs(legacy_database, legacy_db, tmp_path):
    """With the pool's limit at 1 on a persisted instance, the step waits for the slot another run holds."""
    assert value_set_constraints.node_def.pools == {POOL}
    before = snapshot(legacy_db)
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        instance.event_log_storage.set_concurrency_slots(POOL, 1)
        assert instance.event_log_storage.claim_concurrency_slot(POOL, "another-run", "migration").is_claimed
        results = []
        run = threading.Thread(target=lambda: results.append(dg.materialize(
            [value_set_constraints], instance=instance, resources={"database": legacy_database},
            selection=[value_set_constraints])))
        run.start()
        time.sleep(2)
        assert run.is_alive() and snapshot(legacy_db) == before  # queued for the slot, nothing applied
        instance.event_log_storage.free_concurrency_slots_for_run("another-run")
        run.join(30)
    assert results and results[0].success and snapshot(legacy_db) != before


def test_no_password_reaches_metadata_logs_or_failures(legacy_db):
    """The DSN's password (ignored by this server's trust auth) appears in no event of a run, failed or not."""
    from resources.database import TargetDatabase

    database = TargetDatabase(url=f"{legacy_db} password=hunter2-secret")
    for config in ({"remap": {"pending": "queued"}}, {}):
        with dg.DagsterInstance.ephemeral() as instance:
            result = dg.materialize(
                ASSETS, instance=instance, resources={"database": database}, raise_on_error=False,
                run_config={"ops": {"value_set_constraints": {"config": config}}},
            )
            events = instance.all_logs(result.run_id)
        assert events and "hunter2-secret" not in repr(events)
    assert result.success


def test_after_a_fix_the_audits_latest_check_results_show_the_fixed_schema(legacy_database):
    """Before the fix the audit's value-set checks fail; the same run evaluates them again once the fix applied,
    and those are the latest results the instance (so the UI) shows for the audit."""
    with dg.DagsterInstance.ephemeral() as instance:
        result = dg.materialize(ASSETS, instance=instance, resources={"database": legacy_database})
        assert result.success
        audit_checks = [e for e in result.get_asset_check_evaluations() if e.asset_key == schema_audit.key]
        by_name: dict[str, list[bool]] = {}
        for evaluation in audit_checks:
            by_name.setdefault(evaluation.check_name, []).append(evaluation.passed)
        assert by_name["batch_jobs_status_accepts_code_values"] == [False, True]
        assert by_name["batch_items_status_accepts_code_values"] == [False, True]
        (audited,) = instance.fetch_materializations(schema_audit.key, limit=1).records
        for check_key in schema_audit.check_keys:
            latest = instance.event_log_storage.get_asset_check_execution_history(check_key, limit=1)[0]
            assert latest.status.value == "SUCCEEDED", check_key
            evaluation = latest.event.dagster_event.event_specific_data
            assert evaluation.target_materialization_data.storage_id == audited.storage_id


def test_a_dry_run_leaves_the_audits_checks_as_the_audit_found_them(legacy_database):
    result = materialize(legacy_database, dry_run=True)
    audit_checks = [e for e in result.get_asset_check_evaluations() if e.asset_key == schema_audit.key]
    assert len(audit_checks) == len(schema_audit.check_keys)
    assert not next(e for e in audit_checks if e.check_name == "batch_jobs_status_accepts_code_values").passed
