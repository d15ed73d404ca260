"""The audit against the app's code: the value sets the code bounds replace the contract's.

Types and nullability stay the contract's (the code's literals say nothing of them); each finding
on a column the code writes carries where the code writes it.
"""

from __future__ import annotations

from dataclasses import replace

import psycopg

from assets.audit.code_contract import CodeContract, ordered
from assets.audit.contract import Contract
from assets.audit.findings import Finding, run_audit


def bounded_by_code(contract: Contract, code: CodeContract) -> Contract:
    """The contract with each value set the code writes replaced by the code's: exactly its values where
    the code bounds the column, the contract's and the code's together where some of it is unbounded."""
    tables = []
    for table in contract.tables:
        columns = []
        for column in table.columns:
            written = code.column(table.name, column.name)
            if column.values is not None and written is not None and written.values:
                values = tuple(sorted(written.values)) if written.bounded else \
                    column.values + tuple(sorted(set(written.values) - set(column.values)))
                column = replace(column, values=values)
            columns.append(column)
        tables.append(replace(table, columns=tuple(columns)))
    return replace(contract, tables=tuple(tables))


def with_code_evidence(findings: list[Finding], code: CodeContract) -> list[Finding]:
    """Each finding with where the code writes what it is about: the rejected values, else the column."""
    evidenced = []
    for finding in findings:
        written = code.column(finding.table, finding.column) if finding.column else None
        table = code.tables.get(finding.table)
        if written is not None:
            values = finding.rejected or sorted(written.values)
            evidence = [f"{v}: {at}" for v in values if v in written.values for at in ordered(written.values[v])]
            evidence = evidence or ordered(written.writes)
        elif finding.column is None and table is not None:
            evidence = ordered(table.writes)
        else:
            evidence = None
        evidenced.append(replace(finding, evidence=evidence) if evidence else finding)
    return evidenced


def run_code_audit(conn: psycopg.Connection, contract: Contract, code: CodeContract) -> list[Finding]:
    return with_code_evidence(run_audit(conn, bounded_by_code(contract, code)), code)
