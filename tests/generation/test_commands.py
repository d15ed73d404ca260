"""`bulkgen generate` and `bulkgen run` as users call them: refusals write nothing, the chain does it all."""

import json

import boto3
import psycopg
import pytest

from assets.audit.contract import CONTRACT
from assets.verification.checks import verify_topics
from pipelines.cli import main
from pipelines.demo import DEMO_OWNER
from resources.conversation_store import ConversationStore
from tests.conftest import S3_BUCKET
from tests.generation.conftest import assert_job_sound

TOPICS = "ignored_401k,esg_investing,grandparent_529"
UNKNOWN = "0badc0de-0000-4000-8000-000000000000"  # a UUID with no row in user_profiles


def _written(dsn) -> tuple:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT (SELECT json_agg(t ORDER BY t.id) FROM batch_jobs t)::text,"
            " (SELECT count(*) FROM batch_items), (SELECT count(*) FROM conversations)"
        ).fetchone()


@pytest.mark.parametrize("args, error", [
    (["generate", "--topics", TOPICS], "generation refused, nothing written: batch_jobs.status refuses 'queued', "
                                       "'processing' (violates batch_jobs_status_check);"),
    (["generate", "--topics", "ignored_401k,not_a_topic"], "unknown or inactive topic(s): not_a_topic"),
    (["run", "--topics", "not_a_topic"], "unknown or inactive topic(s): not_a_topic"),
    (["run", "--topics", " , "], "no topics selected"),
    (["run", "--topics", TOPICS, "--owner", "nobody"], "owner 'nobody' is not a UUID"),
    (["generate", "--topics", TOPICS, "--owner", UNKNOWN],
     f"owner refused, nothing written: owner {UNKNOWN} has no row in user_profiles "
     "(batch_jobs.created_by references user_profiles(id))"),
])
def test_refusals_exit_2_with_one_line_and_write_nothing(legacy_db, cli_env, capsys, args, error):
    before = _written(legacy_db)
    assert main([*args, "--database-url", legacy_db]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith(f"bulkgen: error: {error}") and captured.err.count("\n") == 1
    assert _written(legacy_db) == before and not cli_env.root_path().exists()


def test_a_topic_selection_is_required(legacy_db, cli_env):
    with pytest.raises(SystemExit) as exit_:
        main(["generate", "--database-url", legacy_db])
    assert exit_.value.code == 2


@pytest.mark.slow
def test_run_audits_fixes_and_generates_three_topics_in_one_run(legacy_db, cli_env, capsys):
    assert main(["run", "--database-url", legacy_db, "--topics", TOPICS]) == 0
    out = capsys.readouterr().out
    assert out.count("== Dagster run") == 1 and "chain_job" in out
    with psycopg.connect(legacy_db) as conn:
        jobs = conn.execute(
            "SELECT id, status, total_items, completed_items, successful_items, failed_items FROM batch_jobs"
            " WHERE shared_parameters ? 'topics'"
        ).fetchall()
        edge = conn.execute("SELECT count(*) FROM batch_items WHERE tier = 'edge_case'").fetchone()[0]
        legacy = dict(conn.execute("SELECT status, count(*) FROM batch_jobs WHERE NOT shared_parameters ? 'topics'"
                                   " GROUP BY status").fetchall())
    assert len(jobs) == 1 and jobs[0][1:] == ("completed", 72, 72, 72, 0) and edge == 27
    assert legacy == {"queued": 2, "processing": 1, "paused": 1, "completed": 1, "failed": 1, "cancelled": 1}
    assert assert_job_sound(legacy_db, jobs[0][0], cli_env) == {"completed": 72}
    files = list(cli_env.root_path().rglob("*.json"))
    assert len(files) == 72 and all(json.loads(f.read_text())["training_pairs"] for f in files)
    assert f"batch job {jobs[0][0]} completed" in out and "items 72 (27 edge_case, 45 template)" in out

    # Now fixed through the fix asset: `generate` alone goes through, as one more job for the same topics.
    assert main(["generate", "--database-url", legacy_db, "--topics", "esg_investing"]) == 0
    assert "generation_job" in capsys.readouterr().out


@pytest.mark.slow
def test_run_with_an_s3_store_puts_every_conversation_in_the_bucket(legacy_db, cli_env, s3_env, monkeypatch, capsys):
    """`CONVERSATION_STORE=s3://conversation-files` against a real S3 server on loopback: every completed item's
    object is in the bucket at its row's file_path, nothing else is, and verification reads them from there."""
    monkeypatch.setenv("CONVERSATION_STORE", f"s3://{S3_BUCKET}")
    assert main(["run", "--database-url", legacy_db, "--topics", TOPICS]) == 0
    with psycopg.connect(legacy_db) as conn:
        (job_id,) = conn.execute("SELECT id FROM batch_jobs WHERE shared_parameters ? 'topics'").fetchone()
        paths = {p for (p,) in conn.execute(
            "SELECT c.file_path FROM batch_items b JOIN conversations c ON c.id = b.conversation_id"
            " WHERE b.batch_job_id = %s AND b.status = 'completed'", [job_id])}
    store = ConversationStore()
    assert store.remote and assert_job_sound(legacy_db, job_id, store) == {"completed": 72}
    bucket = boto3.session.Session().client("s3").get_paginator("list_objects_v2").paginate(Bucket=S3_BUCKET)
    keys = {o["Key"] for page in bucket for o in page.get("Contents", [])}
    assert len(paths) == 72 and keys == paths  # one object per completed item, at its row's file_path

    missing = sorted(paths)[0]  # verification opens the objects through the store
    store.delete([missing])
    with psycopg.connect(legacy_db) as conn:
        verdict = verify_topics(conn, CONTRACT, TOPICS.split(","), store, set()).verdicts[
            "completed_items_have_conversations"]
    assert verdict.numbers == {"completed_items": 72, "sound": 71}
    assert [(o["file_path"], o["problem"]) for o in verdict.offending] == [
        (missing, "its conversation's file is missing")]


def test_a_fix_that_cannot_apply_stops_the_run_before_generation(legacy_db, cli_env, capsys):
    """Inside one run the fix's failure blocks generation: exit 2, one line, no batch job, no conversation."""
    with psycopg.connect(legacy_db, autocommit=True) as conn:
        conn.execute("ALTER TABLE batch_jobs DROP CONSTRAINT batch_jobs_status_check")
        conn.execute("ALTER TABLE batch_jobs ADD CONSTRAINT batch_jobs_status_check CHECK (status IN "
                     "('pending', 'running', 'paused', 'completed', 'failed', 'cancelled', 'exploded'))")
        conn.execute("UPDATE batch_jobs SET status = 'exploded' WHERE status = 'paused'")  # no mapping for it
    before = _written(legacy_db)
    assert main(["run", "--database-url", legacy_db, "--topics", TOPICS]) == 2
    error = capsys.readouterr().err.splitlines()[-1]  # after Dagster's once-per-DAGSTER_HOME telemetry notice
    assert error.startswith("bulkgen: error: value_set_constraints failed:") and "'exploded'" in error
    assert _written(legacy_db) == before and not cli_env.root_path().exists()


@pytest.mark.slow
def test_demo_runs_the_chain_for_every_demo_topic(empty_db, cli_env, capsys):
    assert main(["demo", "--database-url", empty_db]) == 0
    out = capsys.readouterr().out
    assert "PASS  accepts_code_values" in out and "items 480 (180 edge_case, 300 template); 480 completed" in out
    assert f"owner: {DEMO_OWNER}" in out and f"created_by {DEMO_OWNER}, {cli_env.bucket}/{DEMO_OWNER}/" in out
    assert "its first training pair:" in out and '"turn_number": 1' in out and '"target_response": ' in out
    with psycopg.connect(empty_db) as conn:
        (job_id,) = conn.execute("SELECT id FROM batch_jobs WHERE shared_parameters ? 'topics'").fetchone()
    assert assert_job_sound(empty_db, job_id, cli_env) == {"completed": 480}


@pytest.mark.slow
def test_migrate_then_generate_with_a_fresh_instance(legacy_db, cli_env, capsys):
    """The fix applied by `bulkgen migrate` counts: the gate asks the database, not the Dagster instance."""
    assert main(["migrate", "--database-url", legacy_db]) == 0
    assert main(["generate", "--database-url", legacy_db, "--topics", "esg_investing"]) == 0
    out = capsys.readouterr().out
    assert "generation_job" in out and "items 24 (9 edge_case, 15 template); 24 completed" in out
