"""Schedules, stopped by default; cron and timezone come from the environment."""

import os

import dagster as dg

from pipelines.jobs import audit_job

nightly_audit_schedule = dg.ScheduleDefinition(
    name="nightly_audit_schedule",
    job=audit_job,
    cron_schedule=os.environ.get("BULKGEN_AUDIT_CRON", "0 2 * * *"),
    execution_timezone=os.environ.get("BULKGEN_TIMEZONE", "UTC"),
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Audit the live schema every night, read-only.",
)
