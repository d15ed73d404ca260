"""The gate: generation writes nothing unless the database will accept everything it writes.

Blocking asset checks stop downstream steps only inside one run, so before any write the
generation asset also checks, itself:

1. the live database accepts every value generation writes into an enum-like column (the
   audit's own evaluation of the CHECK constraints, enum types and domains, read-only),
   every table and column it writes exists, and the role may read and write them;
2. the database owes no fix: planning the fix against its live schema finds nothing to do, so
   a half-migrated database (a NOT VALID check left behind, legacy rows still allowed) is not
   taken on trust. Its own ledger says who applied the last fix; a fix by `bulkgen migrate`,
   by the asset or by hand counts alike.

Both answers come from the target database itself, never from a Dagster instance, which may
have recorded a fix of another database, or none of this one's.
"""

from __future__ import annotations

import psycopg

from assets.audit.catalog import read_catalog
from assets.audit.contract import Contract
from assets.audit.verdicts import judge_value_set
from assets.migration.ledger import ledger_entries
from assets.migration.plan import PlanError, make_plan
from assets.privileges import lacking_privileges

WRITTEN_TABLES = ("batch_jobs", "batch_items", "conversations")
PRIVILEGES = {  # what generation does to each table it touches
    "personas": "SELECT", "emotional_arcs": "SELECT", "training_topics": "SELECT",
    "batch_jobs": "SELECT, INSERT, UPDATE", "batch_items": "SELECT, INSERT, UPDATE", "conversations": "SELECT, INSERT",
}


class GateClosed(RuntimeError):
    """Generation must not write: the message says which constraint refuses which values, or why else."""


def database_refusals(
    conn: psycopg.Connection, contract: Contract, writes: dict[tuple[str, str], tuple[str, ...]]
) -> list[str]:
    """One line per problem with what generation writes: a value the contract does not list, a missing table
    or column, a lacking privilege, a value the live schema refuses (read-only, rolled back)."""
    problems = unlisted_values(contract, writes)
    with conn.transaction(force_rollback=True):
        conn.execute("SET TRANSACTION READ ONLY")
        live = read_catalog(conn, contract)
        for table in WRITTEN_TABLES:
            if table not in live:
                problems.append(f"table {contract.schema}.{table} is missing")
                continue
            missing = [c.name for c in contract.table(table).columns
                       if not c.optional and c.name not in live[table].columns]
            if missing:
                problems.append(f"{table} lacks column(s) {', '.join(missing)}")
        problems += privilege_refusals(conn, contract.schema, [t for t in PRIVILEGES if t in live])
        problems += _live_refusals(conn, contract, live, writes)
    return problems


def value_refusals(
    conn: psycopg.Connection, contract: Contract, writes: dict[tuple[str, str], tuple[str, ...]]
) -> list[str]:
    """Only the values: those the contract does not list, and those the live schema refuses, judged as
    PostgreSQL judges an INSERT (read-only, rolled back)."""
    problems = unlisted_values(contract, writes)
    with conn.transaction(force_rollback=True):
        conn.execute("SET TRANSACTION READ ONLY")
        problems += _live_refusals(conn, contract, read_catalog(conn, contract), writes)
    return problems


def unlisted_values(contract: Contract, writes: dict[tuple[str, str], tuple[str, ...]]) -> list[str]:
    """One line per column generation would write a value into that the contract does not list."""
    problems = []
    for (table, column), values in writes.items():
        foreign = [v for v in values if v not in (contract.table(table).column(column).values or ())]
        if foreign:
            problems.append(
                f"{table}.{column}: generation would write {_quote(foreign)}, which the contract does not list")
    return problems


def _live_refusals(conn: psycopg.Connection, contract: Contract, live: dict,
                   writes: dict[tuple[str, str], tuple[str, ...]]) -> list[str]:
    """One line per reason a live column refuses values of `writes`; a column the table lacks is not judged."""
    problems = []
    for (table, column), values in writes.items():
        if table not in live or column not in live[table].columns:
            continue
        verdict = judge_value_set(conn, contract.schema, table, live[table].columns[column],
                                  live[table].checks_on(column), values)
        by_reason: dict[str, list[str]] = {}
        for value, reason in verdict.rejected.items():
            by_reason.setdefault(reason, []).append(value)
        problems += [f"{table}.{column} refuses {_quote(vs)} ({reason})" for reason, vs in by_reason.items()]
    return problems


def privilege_refusals(conn: psycopg.Connection, schema: str, tables: list[str]) -> list[str]:
    """One line per table on which the current role lacks a privilege generation uses, naming them."""
    problems = []
    for table in tables:
        lacking = lacking_privileges(conn, schema, table, PRIVILEGES[table].split(", "))
        if lacking:
            (user,) = conn.execute("SELECT current_user").fetchone()
            problems.append(f"role {user} lacks {', '.join(lacking)} on {schema}.{table}")
    return problems


def fix_record(conn: psycopg.Connection, contract: Contract) -> tuple[str | None, str]:
    """(why the database still owes the fix or None, what its ledger says of the last fix applied to it)."""
    entries = ledger_entries(conn, contract.schema)
    last = entries[-1] if entries else None
    record = (f"last fix applied: {last['step']} (plan {last['plan_hash']}) at "
              f"{last['applied_at']:%Y-%m-%d %H:%M:%S%z} by {last['applied_by']}" if last
              else "no fix recorded in the ledger")
    try:
        plan = make_plan(conn, contract)
    except PlanError as exc:
        return f"the fix cannot be planned: {exc}", record
    if plan.errors:
        return f"the fix cannot run: {'; '.join(plan.errors)}", record
    if plan.steps:
        return (f"the database owes the fix (plan {plan.hash}: {plan.describe()}; {record}): apply it with "
                "`bulkgen migrate` or the value_set_constraints asset"), record
    return None, record


def ensure_gate_open(
    conn: psycopg.Connection, contract: Contract, writes: dict[tuple[str, str], tuple[str, ...]]
) -> str:
    """Raise GateClosed naming every problem with the database and its fix; else return its fix record."""
    problems = database_refusals(conn, contract, writes)
    owed, record = fix_record(conn, contract)
    if owed:
        problems.append(owed)
    if problems:
        raise GateClosed("generation refused, nothing written: " + "; ".join(problems))
    return record


def _quote(values: list[str]) -> str:
    return ", ".join(f"'{v}'" for v in values)
