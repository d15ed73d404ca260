"""Schedules, stopped by default; cron and timezone come from the environment."""

import os

import dagster as dg

from pipelines.jobs import audit_job, verified_generation_job
from assets.partitions import active_topics, add_topic_partitions, selection_range
from resources.database import TargetDatabase

TIMEZONE = os.environ.get("BULKGEN_TIMEZONE", "UTC")

nightly_audit_schedule = dg.ScheduleDefinition(
    name="nightly_audit_schedule",
    job=audit_job,
    cron_schedule=os.environ.get("BULKGEN_AUDIT_CRON", "0 2 * * *"),
    execution_timezone=TIMEZONE,
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Audit the live schema every night, read-only.",
)


@dg.schedule(
    job=verified_generation_job,
    cron_schedule=os.environ.get("BULKGEN_GENERATION_CRON", "0 3 * * *"),
    execution_timezone=TIMEZONE,
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Generate and verify conversations for every active training topic, as one run (one batch job).",
)
def daily_generation_schedule(context: dg.ScheduleEvaluationContext, database: TargetDatabase):
    """One run over the active topics' partitions as a single range.

    `build_schedule_from_partitioned_job` refuses dynamic partitions, and a run covers one
    contiguous range of them: `selection_range` re-appends the active keys when an inactive
    topic sits between them, so the range holds exactly the active topics.
    """
    with database.connection() as conn:
        keys = list(active_topics(conn))
        if not keys:
            return dg.SkipReason("no active training topics")
        add_topic_partitions(context.instance, conn)  # a topic the topic sensor has not seen yet
    key_range = selection_range(context.instance, keys)
    return dg.RunRequest(
        tags={"dagster/asset_partition_range_start": key_range.start,
              "dagster/asset_partition_range_end": key_range.end},
    )
