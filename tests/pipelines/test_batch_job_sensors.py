"""A run that dies mid-generation leaves its batch job `processing`; the run-failure sensor requeues it from the
run's real failure event, the next run resumes it, and verification finds it sound. A canceled run's job is
cancelled; a job a live session holds is left alone."""

import dagster as dg
import psycopg

from assets.audit.contract import CONTRACT
from assets.generation.asset import run_label
from assets.generation.batch import JobSettings, claim_items, open_job, release_run_jobs, start_job
from assets.generation.scaffolding import load_scaffolding
from assets.verification.checks import verify_topics
from pipelines.definitions import defs
from assets.partitions import add_topic_partitions, selection_range
from pipelines.sensors import batch_job_failure_sensor
from resources.database import TargetDatabase
from resources.generators import ConversationRequest, GeneratedConversation, TemplateGenerator

TOPICS = ["ignored_401k", "esg_investing"]


class SessionKillingGenerator(TemplateGenerator):
    """At one item, terminates generation's database session: the run fails with no chance to put its job back
    (the connection it would do that on is gone), as when its worker is killed."""

    dsn: str
    kill_at: str  # the item's seed

    def generate(self, request: ConversationRequest) -> GeneratedConversation:
        if request.seed == self.kill_at:
            with psycopg.connect(self.dsn, autocommit=True, application_name="test") as conn:
                conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                             " WHERE datname = current_database() AND application_name = 'bulkgen'")
        return super().generate(request)


def _generate(instance, dsn, store, generator):
    with psycopg.connect(dsn) as conn:
        add_topic_partitions(instance, conn)
    key_range = selection_range(instance, TOPICS)
    return defs.resolve_job_def("generation_job").execute_in_process(
        instance=instance, raise_on_error=False,
        resources={"database": TargetDatabase(url=dsn), "conversation_store": store, "generator": generator},
        tags={"dagster/asset_partition_range_start": key_range.start,
              "dagster/asset_partition_range_end": key_range.end},
    )


def _state(dsn):
    with psycopg.connect(dsn) as conn:
        job_id, status, run = conn.execute(
            "SELECT id, status, shared_parameters ->> 'run' FROM batch_jobs WHERE shared_parameters ? 'topics'"
        ).fetchone()
        items = dict(conn.execute(
            "SELECT status, count(*) FROM batch_items WHERE batch_job_id = %s GROUP BY status", [job_id]
        ).fetchall())
    return job_id, status, run, items


def test_a_failed_runs_job_is_requeued_then_resumed(fixed_db, instance, store, monkeypatch):
    monkeypatch.setattr("assets.generation.asset.DB_RETRIES", 0)  # the database stays lost past every retry
    with psycopg.connect(fixed_db) as conn:
        rows = load_scaffolding(conn, TOPICS)
    # An item at position 20 or later (20th or 44th, by topic order): the first claim takes 19 items, and
    # the next only once at most 9 are in flight, so at least 10 are completed when it dies.
    seed = f"{TOPICS[1]}|{rows.personas[2]['persona_key']}|{rows.arcs[3]['arc_key']}"
    failed = _generate(instance, fixed_db, store, SessionKillingGenerator(dsn=fixed_db, kill_at=seed))
    assert not failed.success
    job_id, status, run, items = _state(fixed_db)
    assert (status, run) == ("processing", run_label(failed.run_id))
    assert items["processing"] > 0 and items["completed"] >= 10

    context = dg.build_run_status_sensor_context(
        sensor_name=batch_job_failure_sensor.name, dagster_instance=instance, dagster_run=failed.dagster_run,
        dagster_event=failed.get_run_failure_event(), resources={"database": TargetDatabase(url=fixed_db)},
    ).for_run_failure()
    skip = batch_job_failure_sensor(context)
    assert skip.skip_message == f"batch job(s) {job_id} requeued for the next run to resume"
    _, status, _, items = _state(fixed_db)
    assert status == "queued" and "processing" not in items and items["completed"] >= 10

    assert batch_job_failure_sensor(context).skip_message == "no batch job left processing"  # a second tick
    resumed = _generate(instance, fixed_db, store, TemplateGenerator(delay_ms=0))
    assert resumed.success
    assert _state(fixed_db) == (job_id, "completed", run_label(resumed.run_id), {"completed": 48})
    with psycopg.connect(fixed_db) as conn:
        assert verify_topics(conn, CONTRACT, TOPICS, store, set()).passed


def test_a_canceled_runs_job_is_requeued_unless_a_live_session_holds_it(fixed_db):
    """Terminating a run interrupts it; it does not cancel its batch job, which the next run resumes."""
    label = run_label("r-canceled")
    holder = psycopg.connect(fixed_db, autocommit=True)
    job = open_job(holder, load_scaffolding(holder, TOPICS), JobSettings(), label=label, generator="template")
    start_job(holder, job.id)
    assert len(claim_items(holder, job.id, 5, None)) == 5
    with psycopg.connect(fixed_db, autocommit=True) as conn:
        assert release_run_jobs(conn, label) == []  # the holder's session is alive
        holder.close()  # the run's process dies: PostgreSQL releases its lock
        assert release_run_jobs(conn, label) == [job.id]
        assert release_run_jobs(conn, run_label("another run")) == []
    _, status, _, items = _state(fixed_db)
    assert (status, items) == ("queued", {"queued": 48})
