"""The gate: generation writes nothing unless the database will accept everything it writes.

Blocking asset checks stop downstream steps only inside one run, so before any write the
generation asset also checks, itself:

1. the live database accepts every value generation writes into an enum-like column (the
   audit's own evaluation of the CHECK constraints, enum types and domains, read-only),
   every table and column it writes exists, and the role may read and write them;
2. the fix asset's latest materialization passed its blocking check (read from the Dagster
   instance), so a database fixed by hand or half-migrated is not taken on trust.
"""

from __future__ import annotations

import time

import dagster as dg
import psycopg
from psycopg import sql

from assets.audit.catalog import read_catalog
from assets.audit.contract import Contract
from assets.audit.verdicts import judge_value_set
from assets.migration.asset import accepts_code_statuses, batch_jobs_status_constraint

FIX_ASSET = batch_jobs_status_constraint.key
(FIX_CHECK,) = accepts_code_statuses.check_keys
CHECK_WAIT_S = 120.0  # how long a concurrent run's fix may take to have its check evaluated
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
    """One line per problem with the live schema, in a read-only transaction that is rolled back."""
    problems = []
    for (table, column), values in writes.items():
        foreign = [v for v in values if v not in (contract.table(table).column(column).values or ())]
        if foreign:
            problems.append(
                f"{table}.{column}: generation would write {_quote(foreign)}, which the contract does not list")
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
        name = sql.Identifier(schema, table).as_string(conn)
        lacking = [p for p in PRIVILEGES[table].split(", ")
                   if not conn.execute("SELECT has_table_privilege(%s::regclass, %s)", [name, p]).fetchone()[0]]
        if lacking:
            (user,) = conn.execute("SELECT current_user").fetchone()
            problems.append(f"role {user} lacks {', '.join(lacking)} on {schema}.{table}")
    return problems


def fix_refusal(instance: dg.DagsterInstance, *, wait_s: float = CHECK_WAIT_S) -> str | None:
    """Why the fix asset's latest materialization cannot be trusted, or None when its check passed on it.

    A materialization whose run is still going (a concurrent run of the chain) is waited for, up to
    `wait_s`, until its check has evaluated it.
    """
    deadline = time.monotonic() + wait_s
    while True:
        reason, pending = _fix_verdict(instance)
        if not pending or time.monotonic() > deadline:
            return reason
        time.sleep(0.5)


def _fix_verdict(instance: dg.DagsterInstance) -> tuple[str | None, bool]:
    """(why the fix cannot be trusted or None, whether the check may still evaluate its latest materialization)."""
    latest = instance.fetch_materializations(FIX_ASSET, limit=1).records
    if not latest:
        return f"{FIX_ASSET.to_user_string()} has never been materialized (run the fix first: bulkgen run)", False
    record = instance.get_latest_asset_check_evaluation_record(FIX_CHECK)
    evaluation = record.event.asset_check_evaluation if record and record.event else None
    target = evaluation.target_materialization_data if evaluation else None
    if evaluation is None or target is None or target.storage_id != latest[0].storage_id:
        run = instance.get_run_by_id(latest[0].run_id) if latest[0].run_id else None
        return (f"the check {FIX_CHECK.name} has not evaluated the latest materialization of "
                f"{FIX_ASSET.to_user_string()}"), run is not None and not run.is_finished
    if not evaluation.passed:
        return f"the check {FIX_CHECK.name} failed on the latest materialization of {FIX_ASSET.to_user_string()}", False
    return None, False


def ensure_gate_open(
    conn: psycopg.Connection,
    contract: Contract,
    writes: dict[tuple[str, str], tuple[str, ...]],
    instance: dg.DagsterInstance,
) -> None:
    """Raise GateClosed naming every problem with the database and with the fix."""
    problems = database_refusals(conn, contract, writes)
    if fix := fix_refusal(instance):
        problems.append(fix)
    if problems:
        raise GateClosed("generation refused, nothing written: " + "; ".join(problems))


def _quote(values: list[str]) -> str:
    return ", ".join(f"'{v}'" for v in values)
