"""The `schema_audit` asset: findings as a DataFrame, a Markdown table, and blocking checks."""


import os
from collections.abc import Iterator

import dagster as dg
from pydantic import Field

from assets.audit.code_audit import bounded_by_code, with_code_evidence
from assets.audit.code_contract import extract_code_contract
from assets.audit.contract import CONTRACT, Contract
from assets.audit.findings import (
    FINDING_FIELDS,
    Finding,
    findings_frame,
    findings_markdown,
    run_audit,
    severity_counts,
)
from resources.database import TargetDatabase

COLUMNS_CHECK = "contracted_columns_present"
APP_SOURCE_ENV = "BULKGEN_APP_SOURCE"


class SchemaAuditConfig(dg.Config):
    app_source: str | None = Field(
        default=None, description=f"The app's source folder (default ${APP_SOURCE_ENV}): the value sets its code "
        "writes replace the contract's; types and nullability stay the contract's.")


def app_source(configured: str | None = None) -> str | None:
    """The app's source folder to audit against: the run's config, else $BULKGEN_APP_SOURCE, else none."""
    return configured or os.environ.get(APP_SOURCE_ENV) or None


def value_set_check_name(table: str, column: str) -> str:
    return f"{table}_{column}_accepts_code_values"


def _check_specs(contract: Contract) -> list[dg.AssetCheckSpec]:
    specs = [
        dg.AssetCheckSpec(
            value_set_check_name(table.name, column.name),
            asset="schema_audit",
            # Not blocking: the fix downstream must still run on a failure, and its own
            # blocking check is what gates generation.
            blocking=False,
            description=f"The live {table.name}.{column.name} accepts every value the code writes: "
            f"{', '.join(column.values)}.",
        )
        for table, column in contract.value_set_columns()
    ]
    specs.append(
        dg.AssetCheckSpec(
            COLUMNS_CHECK,
            asset="schema_audit",
            blocking=True,
            description="Every table and required column the code uses exists (no migration here adds one).",
        )
    )
    return specs


@dg.asset(
    group_name="audit",
    kinds={"postgres", "pandas"},
    owners=["team:data-platform"],
    check_specs=_check_specs(CONTRACT),
    description="The contract (what the application writes) against the live catalog: one row per finding. "
    "CHECK constraints are judged by evaluating their own expressions, read-only.",
)
def schema_audit(context: dg.AssetExecutionContext, config: SchemaAuditConfig, database: TargetDatabase) -> Iterator:
    source = app_source(config.app_source)
    code = extract_code_contract(source) if source else None
    contract = bounded_by_code(CONTRACT, code) if code else CONTRACT
    with database.connection() as conn:
        findings = run_audit(conn, contract)
    if code:
        findings = with_code_evidence(findings, code)
    counts = severity_counts(findings)
    context.log.info(f"audited {database.display_name()}{f' against the code in {source}' if code else ''}: {counts}")
    yield dg.Output(
        findings_frame(findings),
        metadata={
            "database": database.display_name(),
            "findings": dg.MetadataValue.md(findings_markdown(findings)),
            "findings_table": findings_table(findings),
            **{f"{severity}_findings": n for severity, n in counts.items()},
            "dagster/row_count": len(findings),
            "contract": CONTRACT.path,
            **({"app_source": source, "app_source_fingerprint": code.fingerprint()} if code else {}),
        },
    )
    yield from check_results(contract, findings)


def findings_table(findings: list[Finding]) -> dg.TableMetadataValue:
    """The findings as a typed table, which the UI renders with its schema."""
    return dg.MetadataValue.table(
        records=[
            dg.TableRecord({k: ", ".join(v) if isinstance(v, list) else v for k, v in vars(f).items()})
            for f in findings
        ],
        schema=dg.TableSchema(columns=[dg.TableColumn(name, "string") for name in FINDING_FIELDS]),
    )


def check_results(contract: Contract, findings: list[Finding]) -> Iterator[dg.AssetCheckResult]:
    """One result per value-set column (rejected values fail it) and one for missing columns."""
    for table, column in contract.value_set_columns():
        bad = [
            f for f in findings
            if f.table == table.name and f.severity == "error" and f.column in (column.name, None)
        ]
        rejected = sorted({v for f in bad for v in (f.rejected or [])})
        yield dg.AssetCheckResult(
            check_name=value_set_check_name(table.name, column.name),
            passed=not bad,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={
                "code_values": ", ".join(column.values),
                "rejected": ", ".join(rejected) or "none",
                "problems": "; ".join(f"{f.kind}: {f.actual}" for f in bad) or "none",
            },
        )
    missing = [f for f in findings if f.kind in ("missing_table", "missing_column") and f.severity == "error"]
    yield dg.AssetCheckResult(
        check_name=COLUMNS_CHECK,
        passed=not missing,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={"missing": ", ".join(f"{f.table}.{f.column or '*'}" for f in missing) or "none"},
    )
