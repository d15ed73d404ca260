"""The code location: `dagster dev` and `dagster asset materialize -m pipelines.definitions` load this."""

import dagster as dg

from assets.audit.asset import schema_audit
from pipelines.jobs import audit_job
from resources.database import target_database

defs = dg.Definitions(
    assets=[schema_audit],
    jobs=[audit_job],
    resources={"database": target_database()},
)
