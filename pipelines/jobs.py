"""Jobs an operator launches from the UI or the CLI."""

import dagster as dg

audit_job = dg.define_asset_job(
    "audit_job",
    selection=dg.AssetSelection.assets("schema_audit"),
    description="Audit the live schema against the contract (read-only).",
)
