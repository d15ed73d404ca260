"""Sensors: re-audit after a deploy, add a partition per new topic, release the batch job of a failed run."""

import json

import dagster as dg

from assets.audit.contract import CONTRACT

from assets.audit.asset import app_source
from assets.audit.code_contract import extract_code_contract
from assets.audit.deploys import DeployState, read_deploy_state
from assets.generation.asset import run_label
from assets.generation.batch import release_run_jobs
from pipelines.jobs import audit_job
from assets.partitions import active_topics, topics
from resources.database import TargetDatabase


@dg.sensor(
    job=audit_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Re-audits when the contracted tables' catalog, the Supabase migrations, the contract or what the "
    "app's code writes ($BULKGEN_APP_SOURCE) change.",
)
def deploy_reaudit_sensor(context: dg.SensorEvaluationContext, database: TargetDatabase):
    source = app_source()
    code = extract_code_contract(source) if source else None
    with database.connection() as conn:
        state = read_deploy_state(conn, CONTRACT, code)
    changes = state.changes_since(DeployState.from_cursor(context.cursor))
    if not changes:
        return dg.SkipReason("no deploy since the last audit")
    context.log.info("; ".join(changes))
    return dg.SensorResult(
        run_requests=[dg.RunRequest(run_key=state.to_cursor(), tags={"bulkgen/deploy": "; ".join(changes)[:200]})],
        cursor=state.to_cursor(),
    )


@dg.sensor(
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Adds a `topics` partition for each newly active training topic.",
)
def topic_partitions_sensor(context: dg.SensorEvaluationContext, database: TargetDatabase):
    """The cursor is the active topics' partition keys seen last tick: only a key new since then, and
    without a partition yet, is added (never one a run re-appends at that moment, see `selection_range`)."""
    with database.connection() as conn:
        active = list(active_topics(conn))
    seen = set(json.loads(context.cursor)) if context.cursor else set()
    existing = set(context.instance.get_dynamic_partitions(topics.name))
    new = [key for key in active if key not in seen and key not in existing]
    cursor = json.dumps(sorted(active))
    if not new:
        return dg.SensorResult(skip_reason="no newly active training topic", cursor=cursor)
    context.log.info(f"adding topic partition(s): {', '.join(new)}")
    return dg.SensorResult(dynamic_partitions_requests=[topics.build_add_request(new)], cursor=cursor)


def _release(context: dg.RunStatusSensorContext, database: TargetDatabase) -> dg.SkipReason:
    with database.connection(autocommit=True) as conn:
        released = release_run_jobs(conn, run_label(context.dagster_run.run_id))
    message = (f"batch job(s) {', '.join(map(str, released))} requeued for the next run to resume" if released
               else "no batch job left processing")
    context.log.info(f"run {context.dagster_run.run_id}: {message}")
    return dg.SkipReason(message)


@dg.run_failure_sensor(
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="A failed run whose process died leaves its batch job processing: requeue it (the next run for "
    "the same topics resumes it).",
)
def batch_job_failure_sensor(context: dg.RunFailureSensorContext, database: TargetDatabase):
    return _release(context, database)


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.CANCELED,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="A canceled (terminated) run whose process died leaves its batch job processing: requeue it, "
    "as an interrupted run does itself (terminating a run is not cancelling its batch job).",
)
def batch_job_cancel_sensor(context: dg.RunStatusSensorContext, database: TargetDatabase):
    return _release(context, database)
