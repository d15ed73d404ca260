"""Jobs an operator launches from the UI or the CLI."""

import dagster as dg

audit_job = dg.define_asset_job(
    "audit_job",
    selection=dg.AssetSelection.assets("schema_audit"),
    description="Audit the live schema against the contract (read-only).",
)

fix_job = dg.define_asset_job(
    "fix_job",
    selection=dg.AssetSelection.assets("schema_audit", "value_set_constraints"),
    executor_def=dg.in_process_executor,  # two short steps: a subprocess each would only add seconds
    description="Audit, then fix the status constraints the audit finds refusing code values (safe, idempotent).",
)

generation_job = dg.define_asset_job(
    "generation_job",
    selection=dg.AssetSelection.assets("topic_conversations"),
    executor_def=dg.in_process_executor,  # one step: a subprocess per step would only add seconds
    description="Generate conversations for the selected topics: one batch job per run (gated on the fix).",
)

verified_generation_job = dg.define_asset_job(
    "verified_generation_job",
    selection=dg.AssetSelection.assets("topic_conversations", "generation_verification"),
    executor_def=dg.in_process_executor,
    description="Generate conversations for the selected topics, then verify the batch job: the daily schedule's "
    "run (no migration runs unattended; the gate refuses an unfixed database).",
)

chain_job = dg.define_asset_job(
    "chain_job",
    selection=dg.AssetSelection.assets(
        "schema_audit", "value_set_constraints", "topic_conversations", "generation_verification"
    ),
    executor_def=dg.in_process_executor,
    description="Audit, fix, generate and verify for the selected topics in one run: generation only after the "
    "fix's blocking check passed.",
)
