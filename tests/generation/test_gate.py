"""The gate: nothing is written unless the live schema accepts every value and the fix passed its check."""

import dagster as dg
import psycopg
import pytest

from assets.audit.asset import CONTRACT
from assets.generation.batch import JobSettings, written_values
from assets.generation.gate import FIX_ASSET, GateClosed, database_refusals, ensure_gate_open, fix_refusal
from assets.generation.owner import OWNER_ENV
from pipelines.definitions import defs
from pipelines.partitions import add_topic_partitions, selection_range
from resources.database import TargetDatabase
from tests.generation.conftest import record_fix

WRITES = written_values(JobSettings())


def test_the_legacy_schema_is_refused_naming_constraints_and_values(legacy_db):
    with psycopg.connect(legacy_db) as conn:
        problems = database_refusals(conn, CONTRACT, WRITES)
    assert problems == [
        "batch_jobs.status refuses 'queued', 'processing' (violates batch_jobs_status_check)",
        "batch_items.status refuses 'cancelled' (violates batch_items_status_check)",
    ]


def test_a_fixed_schema_passes_and_any_other_refusal_is_named(fixed_db):
    with psycopg.connect(fixed_db, autocommit=True) as conn:
        assert database_refusals(conn, CONTRACT, WRITES) == []
        conn.execute("ALTER TABLE conversations ADD CONSTRAINT not_for_review CHECK (status <> 'pending_review')")
        conn.execute("ALTER TABLE batch_items DROP COLUMN estimated_time")
        assert database_refusals(conn, CONTRACT, WRITES) == [
            "batch_items lacks column(s) estimated_time",
            "conversations.status refuses 'pending_review' (violates not_for_review)",
        ]
        # The conversation status is a setting; a status the contract does not list is refused before any write.
        assert database_refusals(conn, CONTRACT, written_values(JobSettings(conversation_status="generated")))[0] == (
            "conversations.status: generation would write 'generated', which the contract does not list")
        stop_high = written_values(JobSettings(error_handling="stop", priority="urgent"))
        assert database_refusals(conn, CONTRACT, stop_high)[0].startswith(
            "batch_jobs.priority: generation would write 'urgent', which the contract does not list")


def test_the_fix_must_have_passed_its_check_on_its_latest_materialization(instance):
    assert "never been materialized" in fix_refusal(instance)
    record_fix(instance, passed=False)
    assert "failed on the latest materialization" in fix_refusal(instance)
    record_fix(instance, passed=True)
    assert fix_refusal(instance) is None
    instance.report_runless_asset_event(dg.AssetMaterialization(FIX_ASSET))  # re-materialized, not re-checked
    assert "has not evaluated the latest materialization" in fix_refusal(instance)


def _generation_run(instance, dsn, store, topic_keys, run_config=None):
    with psycopg.connect(dsn) as conn:
        add_topic_partitions(instance, conn)
    key_range = selection_range(instance, topic_keys)
    return defs.resolve_job_def("generation_job").execute_in_process(
        instance=instance,
        tags={"dagster/asset_partition_range_start": key_range.start,
              "dagster/asset_partition_range_end": key_range.end},
        resources={"database": TargetDatabase(url=dsn), "conversation_store": store},
        run_config=run_config,
        raise_on_error=False,
    )


def _written(dsn) -> tuple[int, int, int]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT (SELECT count(*) FROM batch_jobs), (SELECT count(*) FROM batch_items),"
            " (SELECT count(*) FROM conversations)"
        ).fetchone()


@pytest.mark.parametrize("fixed", [False, True])
def test_the_asset_refuses_before_any_write(legacy_db, fixed_db, instance, store, fixed):
    """Unfixed: the schema refuses. Fixed by hand but never through the fix asset: not trusted either."""
    dsn = fixed_db if fixed else legacy_db
    before = _written(dsn)
    result = _generation_run(instance, dsn, store, ["ignored_401k", "esg_investing"])
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure).step_failure_data.error
    message = (failure.cause or failure).message
    assert "generation refused, nothing written" in message
    assert ("batch_jobs_status_check" in message) is not fixed
    assert "batch_jobs_status_constraint has never been materialized" in message
    assert _written(dsn) == before and not store.root_path().exists()
    with pytest.raises(GateClosed):
        with psycopg.connect(dsn) as conn:
            ensure_gate_open(conn, CONTRACT, WRITES, instance)


@pytest.mark.parametrize("configured", [False, True])
def test_the_asset_refuses_an_owner_the_users_table_does_not_know(fixed_db, instance, store, monkeypatch,
                                                                   configured):
    """From the asset's config, or from $BULKGEN_OWNER as schedules and sensors run it: nothing is written."""
    record_fix(instance)
    unknown = "0badc0de-0000-4000-8000-000000000000"
    if configured:
        run_config = {"ops": {"topic_conversations": {"config": {"owner": unknown}}}}
    else:
        run_config = None
        monkeypatch.setenv(OWNER_ENV, unknown)
    before = _written(fixed_db)
    result = _generation_run(instance, fixed_db, store, ["ignored_401k"], run_config)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure).step_failure_data.error
    assert (failure.cause or failure).message.startswith(
        f"assets.generation.owner.OwnerRefused: owner refused, nothing written: owner {unknown} has no row in "
        "user_profiles (batch_jobs.created_by references user_profiles(id))")
    assert _written(fixed_db) == before and not store.root_path().exists()
