"""Sensors: re-audit after a deploy."""

import dagster as dg

from assets.audit.asset import CONTRACT
from assets.audit.deploys import DeployState, read_deploy_state
from pipelines.jobs import audit_job
from resources.database import TargetDatabase


@dg.sensor(
    job=audit_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Re-audits when the contracted tables' catalog, the Supabase migrations or the contract change.",
)
def deploy_reaudit_sensor(context: dg.SensorEvaluationContext, database: TargetDatabase):
    with database.connection() as conn:
        state = read_deploy_state(conn, CONTRACT)
    changes = state.changes_since(DeployState.from_cursor(context.cursor))
    if not changes:
        return dg.SkipReason("no deploy since the last audit")
    context.log.info("; ".join(changes))
    return dg.SensorResult(
        run_requests=[dg.RunRequest(run_key=state.to_cursor(), tags={"bulkgen/deploy": "; ".join(changes)[:200]})],
        cursor=state.to_cursor(),
    )
