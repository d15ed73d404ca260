"""The `value_set_constraints` asset: the live status constraints, fixed to accept what the code writes.

Thin over `plan` and `execute`: materializing applies the plan (or, with `dry_run`, only shows
it); the blocking check `accepts_code_values` judges the live constraints again with the
audit's own evaluation, so generation downstream never runs on a schema that refuses it.
After a fix the audit's own checks are evaluated again, in the same run, so that the audit's
latest check results show the schema as the fix left it, never a fixed schema in red.
"""

from collections.abc import Mapping
from dataclasses import Field as Field_
from dataclasses import fields
from typing import get_type_hints

import dagster as dg
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
)
from pydantic import Field, create_model

from assets.audit.contract import CONTRACT

from assets.audit.asset import check_results, schema_audit
from assets.audit.findings import run_audit
from assets.migration.execute import MigrationFailed, Outcome, migrate, operator
from assets.migration.model import PlanError
from assets.migration.settings import MigrationSettings
from resources.database import TargetDatabase

POOL = "batch_jobs_status_migration"


def _config_field(setting: Field_) -> tuple:
    """A setting as a config field: its type, default and description, read from MigrationSettings."""
    default = getattr(MigrationSettings(), setting.name)
    description = setting.metadata["description"]
    if isinstance(default, Mapping):  # Dagster config takes a plain dict
        return dict[str, str], Field(default_factory=lambda: dict(default), description=description)
    return get_type_hints(MigrationSettings)[setting.name], Field(default=default, description=description)


class ValueSetConstraintsConfig(create_model("_MigrationSettingsConfig", __base__=dg.Config, **{f.name: _config_field(f) for f in fields(MigrationSettings)})):
    dry_run: bool = Field(default=False, description="Only show the plan and its exact SQL; write nothing.")

    def settings(self) -> MigrationSettings:
        return MigrationSettings(**self.model_dump(exclude={"dry_run"}))


@dg.asset(
    group_name="migration",
    deps=[schema_audit],
    kinds={"postgres"},
    pool=POOL,  # give the pool a limit of 1 on the instance: one migration run at a time
    description="What limits each contracted value-set column (CHECKs, enum types, domains, varchar lengths), "
    "changed safely so that it accepts exactly the values the code writes (legacy rows remapped first). "
    "Planned from the audit; a no-op when nothing refuses.",
)
def value_set_constraints(
    context: dg.AssetExecutionContext, config: ValueSetConstraintsConfig, database: TargetDatabase
) -> dg.MaterializeResult:
    with database.connection(autocommit=True) as conn:
        try:
            outcome = migrate(
                conn, CONTRACT, config.settings(), dry_run=config.dry_run,
                applied_by=operator(f"dagster run {context.run.run_id}"), run_id=context.run.run_id,
            )
        except (PlanError, MigrationFailed, ValueError) as exc:
            manual = getattr(exc, "sql", "")  # the SQL a person would run instead, when there is one
            raise dg.Failure(description=f"{database.display_name()}: {exc}", allow_retries=False,
                             metadata={"sql": dg.MetadataValue.md(f"```sql\n{manual}```")} if manual else None,
                             ) from None
        metadata = {"database": database.display_name(), **outcome_metadata(outcome)}
        if outcome.plan.errors:
            raise dg.Failure(description=outcome.message, metadata=metadata, allow_retries=False)
        if not config.dry_run:
            audit_checks_again(context, run_audit(conn, CONTRACT))
    context.log.info(outcome.message)
    return dg.MaterializeResult(metadata=metadata)


def audit_checks_again(context: dg.AssetExecutionContext, findings) -> None:
    """The audit's checks, evaluated on `findings` (the schema as the fix left it), recorded on its latest
    materialization: they replace, as the latest results, the ones the audit recorded before the fix."""
    latest = context.instance.fetch_materializations(schema_audit.key, limit=1).records
    target = AssetCheckEvaluationTargetMaterializationData(
        storage_id=latest[0].storage_id, run_id=latest[0].run_id, timestamp=latest[0].timestamp) if latest else None
    for result in check_results(CONTRACT, findings):
        context.log_event(dg.AssetCheckEvaluation(
            asset_key=schema_audit.key, check_name=result.check_name, passed=result.passed,
            severity=result.severity, target_materialization_data=target,
            metadata={**result.metadata, "evaluated": f"after {value_set_constraints.key.to_user_string()}"},
        ))


@dg.asset_check(
    asset=value_set_constraints,
    blocking=True,
    description="The live CHECK constraints accept every value the code writes to each contracted value-set "
    "column, judged as the audit judges them (each constraint's own expression evaluated on each value).",
)
def accepts_code_values(database: TargetDatabase) -> dg.AssetCheckResult:
    with database.connection() as conn:
        findings = run_audit(conn, CONTRACT)
    columns = {(t.name, c.name) for t, c in CONTRACT.value_set_columns()}
    refused = [f for f in findings if f.kind == "rejected_values" and (f.table, f.column) in columns]
    not_valid = [f for f in findings if f.kind == "not_valid_check" and (f.table, f.column) in columns]
    return dg.AssetCheckResult(
        passed=not refused,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "refused": "; ".join(f"{f.table}.{f.column}: {', '.join(f.rejected)}" for f in refused) or "none",
            "not_valid": "; ".join(f.actual for f in not_valid) or "none",
            "columns_checked": len(columns),
        },
    )


def outcome_metadata(outcome: Outcome) -> dict:
    """What a reviewer needs: the SQL, what changed, and what it cost in locks."""
    fixed = [f"{f.table}.{f.column}" for f in outcome.plan.fixes] or list(outcome.before)
    return {
        "outcome": outcome.message,
        "applied": outcome.applied,
        "plan_hash": outcome.plan.hash,
        "sql": dg.MetadataValue.md(f"```sql\n{outcome.plan.sql()}```"),
        "rows_remapped": dg.MetadataValue.json(outcome.remapped()),
        "lock_wait_ms": round(sum(s.lock_wait_ms for s in outcome.steps), 1),
        "lock_hold_ms": round(max((s.hold_ms for s in outcome.steps), default=0.0), 1),
        "steps": dg.MetadataValue.md(_steps_markdown(outcome)),
        "constraints_before": dg.MetadataValue.md(_definitions_markdown(outcome.before, fixed)),
        "constraints_after": dg.MetadataValue.md(_definitions_markdown(outcome.after, fixed)),
    }


def _steps_markdown(outcome: Outcome) -> str:
    if not outcome.steps:
        return outcome.message
    head = "| step | transactions | attempts | lock wait ms | hold ms | rows remapped |\n|---|---|---|---|---|---|"
    rows = [
        f"| {s.title} | {s.transactions} | {s.attempts} | {s.lock_wait_ms:.1f} | {s.hold_ms:.1f} | "
        f"{'; '.join(f'{c}: {counts}' for c, counts in s.remapped.items()) or '-'} |"
        for s in outcome.steps
    ]
    return "\n".join([head, *rows])


def _definitions_markdown(definitions: dict[str, list[str]], columns: list[str]) -> str:
    lines = ["| column | check |", "|---|---|"]
    for column in columns:
        for check in definitions.get(column) or ["(no CHECK)"]:
            lines.append(f"| {column} | `{check}` |")
    return "\n".join(lines)
