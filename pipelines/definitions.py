"""The code location: `dagster dev` and `dagster asset materialize -m pipelines.definitions` load this."""

import dagster as dg

from assets.audit.asset import schema_audit
from assets.generation.asset import topic_conversations
from assets.migration.asset import accepts_code_values, value_set_constraints
from assets.verification.asset import generation_verification
from pipelines.jobs import audit_job, chain_job, fix_job, generation_job, verified_generation_job
from pipelines.schedules import daily_generation_schedule, nightly_audit_schedule
from pipelines.sensors import (
    batch_job_cancel_sensor,
    batch_job_failure_sensor,
    deploy_reaudit_sensor,
    topic_partitions_sensor,
)
from resources.conversation_store import ConversationStore
from resources.database import target_database
from resources.generator_choice import chosen_generator

defs = dg.Definitions(
    assets=[schema_audit, value_set_constraints, topic_conversations, generation_verification],
    asset_checks=[accepts_code_values],
    jobs=[audit_job, fix_job, generation_job, verified_generation_job, chain_job],
    schedules=[nightly_audit_schedule, daily_generation_schedule],
    sensors=[deploy_reaudit_sensor, topic_partitions_sensor, batch_job_failure_sensor, batch_job_cancel_sensor],
    resources={
        "database": target_database(),
        "generator": chosen_generator,  # the template generator unless the run's config names another
        "conversation_store": ConversationStore(),
    },
)
