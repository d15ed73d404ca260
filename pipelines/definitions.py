"""The code location: `dagster dev` and `dagster asset materialize -m pipelines.definitions` load this."""

import dagster as dg

from assets.audit.asset import schema_audit
from pipelines.jobs import audit_job
from pipelines.schedules import nightly_audit_schedule
from pipelines.sensors import deploy_reaudit_sensor
from resources.database import target_database

defs = dg.Definitions(
    assets=[schema_audit],
    jobs=[audit_job],
    schedules=[nightly_audit_schedule],
    sensors=[deploy_reaudit_sensor],
    resources={"database": target_database()},
)
