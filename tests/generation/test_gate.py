"""The gate: nothing is written unless the live schema accepts every value and the database owes no fix."""

import psycopg
import pytest

from assets.audit.contract import CONTRACT
from assets.generation.batch import JobSettings, written_values
from assets.generation.gate import GateClosed, database_refusals, ensure_gate_open, fix_record
from assets.generation.owner import OWNER_ENV
from assets.migration.execute import migrate
from pipelines.definitions import defs
from assets.partitions import add_topic_partitions, selection_range
from resources.database import TargetDatabase
from resources.embedded import database_url
from tests.conftest import fresh_database

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


HAND_FIX = [  # what a person might run instead of the migration: both checks replaced, legacy rows remapped
    "ALTER TABLE batch_jobs DROP CONSTRAINT batch_jobs_status_check",
    "UPDATE batch_jobs SET status = 'queued' WHERE status = 'pending'",
    "UPDATE batch_jobs SET status = 'processing' WHERE status = 'running'",
    "ALTER TABLE batch_jobs ADD CONSTRAINT batch_jobs_status_check CHECK "
    "(status IN ('queued', 'processing', 'paused', 'completed', 'failed', 'cancelled'))",
    "ALTER TABLE batch_items DROP CONSTRAINT batch_items_status_check",
    "ALTER TABLE batch_items ADD CONSTRAINT batch_items_status_check CHECK "
    "(status IN ('queued', 'processing', 'completed', 'failed', 'cancelled'))",
]


def test_the_fix_is_owed_until_planning_against_the_database_finds_nothing_to_do(legacy_db):
    with psycopg.connect(legacy_db, autocommit=True) as conn:
        owed, record = fix_record(conn, CONTRACT)
        assert owed.startswith("the database owes the fix (plan ") and "batch_jobs.status" in owed
        assert record == "no fix recorded in the ledger"
        assert migrate(conn, CONTRACT, applied_by="a test").applied
        owed, record = fix_record(conn, CONTRACT)
        assert owed is None and record.startswith("last fix applied: ") and record.endswith("by a test")


def test_a_fix_by_hand_counts_and_a_half_done_one_does_not(legacy_db):
    """Nothing in the ledger, but nothing owed either: the gate opens. A NOT VALID check left behind (an
    interrupted expand/contract) is still owed, even though every code value is accepted."""
    with psycopg.connect(legacy_db, autocommit=True) as conn:
        for statement in HAND_FIX:
            conn.execute(statement)
        assert fix_record(conn, CONTRACT) == (None, "no fix recorded in the ledger")
        assert ensure_gate_open(conn, CONTRACT, WRITES) == "no fix recorded in the ledger"
        conn.execute("ALTER TABLE batch_items DROP CONSTRAINT batch_items_status_check")
        conn.execute("ALTER TABLE batch_items ADD CONSTRAINT batch_items_status_check CHECK "
                     "(status IN ('queued', 'processing', 'completed', 'failed', 'cancelled')) NOT VALID")
        assert database_refusals(conn, CONTRACT, WRITES) == []
        with pytest.raises(GateClosed, match="the database owes the fix .*batch_items.status"):
            ensure_gate_open(conn, CONTRACT, WRITES)


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


def test_the_asset_refuses_an_unfixed_database_before_any_write(legacy_db, instance, store):
    before = _written(legacy_db)
    result = _generation_run(instance, legacy_db, store, ["ignored_401k", "esg_investing"])
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure).step_failure_data.error
    message = (failure.cause or failure).message
    assert "generation refused, nothing written" in message and "batch_jobs_status_check" in message
    assert "the database owes the fix" in message
    assert _written(legacy_db) == before and not store.root_path().exists()


@pytest.mark.slow
def test_two_databases_one_instance_a_fix_of_one_never_opens_the_gate_of_the_other(
        legacy_db, server_url, legacy_template, instance, store):
    """The fix materialized (its check passed) on one database leaves the other refused; the other, fixed by
    the plain migration outside any Dagster run, then generates with that same instance."""
    with fresh_database(server_url, legacy_template) as name:
        other = database_url(server_url, name)
        with psycopg.connect(legacy_db) as conn:
            add_topic_partitions(instance, conn)
        fixed = defs.resolve_job_def("fix_job").execute_in_process(
            instance=instance, resources={"database": TargetDatabase(url=legacy_db)})
        assert fixed.success and all(e.passed for e in fixed.get_asset_check_evaluations()
                                     if e.check_name == "accepts_code_values")
        before = _written(other)
        refused = _generation_run(instance, other, store, ["ignored_401k"])
        assert not refused.success and _written(other) == before
        assert _generation_run(instance, legacy_db, store, ["ignored_401k"]).success
        with psycopg.connect(other, autocommit=True) as conn:
            assert migrate(conn, CONTRACT, applied_by="bulkgen migrate").applied
        result = _generation_run(instance, other, store, ["ignored_401k"])
        assert result.success
        (mat,) = result.asset_materializations_for_node("topic_conversations")
        assert mat.metadata["fix"].value.endswith("by bulkgen migrate")
        assert mat.metadata["database"].value == TargetDatabase(url=other).display_name()


@pytest.mark.parametrize("configured", [False, True])
def test_the_asset_refuses_an_owner_the_users_table_does_not_know(fixed_db, instance, store, monkeypatch,
                                                                   configured):
    """From the asset's config, or from $BULKGEN_OWNER as schedules and sensors run it: nothing is written."""
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
