"""The schema audit: the contract against the live catalog, one finding per problem."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import pandas as pd
import psycopg

from assets.audit.catalog import LiveTable, read_catalog, read_unused_tables
from assets.audit.contract import ColumnContract, Contract, TableContract
from assets.audit.verdicts import judge_value_set

SEVERITIES = ("error", "warning", "info")  # error: a write the code makes would fail
FINDING_FIELDS = ("table", "column", "kind", "severity", "expected", "actual", "allowed", "rejected", "evidence")

# code family -> live families that accept it as the code writes it
_ACCEPTS = {"text": {"text", "enum"}, "integer": {"integer", "numeric"}}


@dataclass(frozen=True)
class Finding:
    table: str
    column: str | None
    kind: str
    severity: str
    expected: str
    actual: str
    allowed: list[str] | None = None
    rejected: list[str] | None = None
    evidence: list[str] | None = None  # where the app's code writes it (`value: path:line`), audited against the code


def run_audit(conn: psycopg.Connection, contract: Contract) -> list[Finding]:
    """Audit inside one read-only transaction that is rolled back; nothing is ever written."""
    with conn.transaction(force_rollback=True):
        conn.execute("SET TRANSACTION READ ONLY")
        conn.execute("SET LOCAL statement_timeout = '30s'")
        live = read_catalog(conn, contract)
        findings = []
        for table in contract.tables:
            if table.name not in live:
                findings.append(
                    Finding(table.name, None, "missing_table", "error", f"table {contract.schema}.{table.name}", "absent")
                )
                continue
            findings += _table_findings(conn, contract.schema, table, live[table.name])
        for name, columns in read_unused_tables(conn, contract).items():
            findings.append(
                Finding(name, None, "unused_table", "info", "not named by the code", f"columns: {', '.join(columns)}")
            )
    return findings


def _table_findings(conn, schema: str, table: TableContract, live: LiveTable) -> list[Finding]:
    findings = []
    for col in table.columns:
        found = live.columns.get(col.name)
        if found is None:
            severity = "warning" if col.optional else "error"
            findings.append(Finding(table.name, col.name, "missing_column", severity, col.type, "absent"))
            continue
        if found.family != col.type and found.family not in _ACCEPTS.get(col.type, ()):
            findings.append(Finding(table.name, col.name, "type_mismatch", "error", col.type, found.type))
        if col.nullable and found.not_null:
            findings.append(
                Finding(table.name, col.name, "not_null", "error", "accepts NULL (code writes NULL)", "NOT NULL")
            )
        if col.values is not None:
            findings += _value_set_findings(conn, schema, table.name, col, live)
    named = {c.name for c in table.columns}
    for name, found in live.columns.items():
        if name not in named:
            findings.append(Finding(table.name, name, "unused_column", "info", "not named by the code", found.type))
    return findings


def _value_set_findings(conn, schema: str, table: str, col: ColumnContract, live: LiveTable) -> list[Finding]:
    column = live.columns[col.name]
    checks = live.checks_on(col.name)
    verdict = judge_value_set(conn, schema, table, column, checks, col.values)
    expected = ", ".join(col.values)
    actual = "; ".join(
        f"{c.name}: {c.definition}" for c in checks
    ) or (f"enum {column.type} ({', '.join(column.enum_labels)})" if column.enum_labels else f"{column.type}, no CHECK")
    allowed = list(verdict.allowed) if verdict.allowed is not None else None
    findings = []
    if verdict.rejected:
        reasons = "; ".join(f"{v!r}: {why}" for v, why in verdict.rejected.items())
        findings.append(
            Finding(table, col.name, "rejected_values", "error", expected, f"{actual} [{reasons}]",
                    allowed, list(verdict.rejected))
        )
    elif not checks and not column.enum_labels:
        findings.append(Finding(table, col.name, "unconstrained_values", "warning", expected, actual, None, []))
    elif allowed is not None and set(allowed) - set(col.values):
        extra = [v for v in allowed if v not in col.values]
        findings.append(
            Finding(table, col.name, "legacy_values_allowed", "info", expected,
                    f"also allows {', '.join(extra)}: {actual}", allowed, [])
        )
    for name in verdict.undecidable:
        findings.append(
            Finding(table, col.name, "undecidable_check", "info", expected,
                    f"{name} depends on other columns or writes when evaluated; only what one value "
                    "decides is judged", allowed, [])
        )
    for c in checks:
        if not c.validated:
            findings.append(
                Finding(table, col.name, "not_valid_check", "warning", "a validated CHECK",
                        f"{c.name} is NOT VALID: enforced on new rows, existing rows unchecked", allowed, [])
            )
    return findings


def findings_frame(findings: list[Finding]) -> pd.DataFrame:
    """One row per finding, with the audit's fixed columns even when there are none."""
    return pd.DataFrame([asdict(f) for f in findings], columns=list(FINDING_FIELDS))


def severity_counts(findings: list[Finding]) -> dict[str, int]:
    return {s: sum(f.severity == s for f in findings) for s in SEVERITIES}


def findings_markdown(findings: list[Finding]) -> str:
    """A Markdown table of the findings, errors first, for the materialization metadata and the CLI."""
    if not findings:
        return "No findings: the live schema matches the contract."
    rows = sorted(findings, key=lambda f: SEVERITIES.index(f.severity))
    evidenced = any(f.evidence for f in findings)
    head = "| severity | table | column | kind | expected | actual | rejected |" + (" evidence |" if evidenced else "")
    head += "\n" + "|---" * (8 if evidenced else 7) + "|"
    body = [
        "| " + " | ".join(
            _cell(x) for x in (f.severity, f.table, f.column or "", f.kind, f.expected, f.actual,
                               ", ".join(f.rejected or []), *([", ".join(f.evidence or [])] if evidenced else []))
        ) + " |"
        for f in rows
    ]
    return "\n".join([head, *body])


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
