"""Safe execution of a plan: short transactions that never make readers queue for more than a lock timeout.

Every transaction sets `lock_timeout` and `statement_timeout`, takes the advisory lock all
bulkgen migrations share, checks that the live state is still the one its step was planned
from, takes its table lock explicitly, runs the step and records it in the ledger. A lock
timeout (or a deadlock) rolls it back and it is retried with backoff for the retry window;
any other failure rolls it back and stops the migration. So the one-transaction path applies
completely or leaves the database exactly as it was, and the expand/contract path stops at a
step boundary where every old and new value is accepted; running again resumes from there.
"""

from __future__ import annotations

import getpass
import random
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace

import psycopg

from assets.audit.catalog import read_catalog
from assets.audit.contract import Contract
from assets.migration.ledger import ledger_entries, record_step
from assets.migration.live import require_privileges
from assets.migration.model import Plan, Step
from assets.migration.plan import make_plan
from assets.migration.settings import MigrationSettings

_RETRYABLE = (psycopg.errors.LockNotAvailable, psycopg.errors.DeadlockDetected)
_FIRST_BACKOFF_S, _MAX_BACKOFF_S = 0.05, 2.0


class MigrationFailed(RuntimeError):
    """A step could not complete; the message says why and what state the database is in."""


@dataclass
class StepRecord:
    """What one step did and cost, as recorded in the ledger."""

    title: str
    kind: str
    transactions: int = 0
    attempts: int = 0
    lock_wait_ms: float = 0.0  # waiting for the advisory and table locks, over every attempt
    hold_ms: float = 0.0  # the longest a transaction of the step held its locks, up to its last statement
    duration_ms: float = 0.0
    remapped: dict[str, dict[str, int]] = field(default_factory=dict)  # "table.column" -> value -> rows


@dataclass
class Outcome:
    plan: Plan
    applied: bool
    message: str
    steps: list[StepRecord] = field(default_factory=list)
    before: dict[str, list[str]] = field(default_factory=dict)  # "table.column" -> ["name: definition"]
    after: dict[str, list[str]] = field(default_factory=dict)

    def remapped(self) -> dict[str, dict[str, int]]:
        """Rows remapped per legacy value, per column, over every step."""
        total: dict[str, dict[str, int]] = {}
        for step in self.steps:
            total = _add_counts(total, step.remapped)
        return total

    def as_dict(self) -> dict:
        return {
            "plan_hash": self.plan.hash,
            "applied": self.applied,
            "message": self.message,
            "errors": list(self.plan.errors),
            "sql": self.plan.sql(),
            "rows_remapped": self.remapped(),
            "steps": [asdict(s) for s in self.steps],
            "constraints_before": self.before,
            "constraints_after": self.after,
        }


def migrate(
    conn: psycopg.Connection,
    contract: Contract,
    settings: MigrationSettings | None = None,
    *,
    dry_run: bool = False,
    applied_by: str,
    run_id: str | None = None,
) -> Outcome:
    """Plan from the live database, then apply unless `dry_run` (which writes nothing)."""
    before = constraint_definitions(conn, contract)
    plan = make_plan(conn, contract, settings)
    if dry_run:
        return Outcome(plan, False, f"dry run, nothing written: {plan.describe()}", before=before, after=before)
    outcome = apply_plan(conn, contract, plan, applied_by=applied_by, run_id=run_id)
    outcome.before, outcome.after = before, constraint_definitions(conn, contract)
    return outcome


def apply_plan(
    conn: psycopg.Connection, contract: Contract, plan: Plan, *, applied_by: str, run_id: str | None = None
) -> Outcome:
    """Run a plan on an autocommit connection; raises PlanError before anything runs if it has errors, or
    MissingPrivileges if the role lacks a privilege the plan uses."""
    if not conn.autocommit:
        raise ValueError("apply_plan needs an autocommit connection: each step is its own transaction")
    plan.require_runnable()
    if not plan.steps:
        return Outcome(plan, False, _nothing_to_do(conn, plan.schema, plan.describe()))
    require_privileges(conn, plan.schema, alter=[f.table for f in plan.fixes],
                       update=[f.table for f in plan.fixes if f.remap], ledger=True)
    runner = _Runner(conn, contract, plan, applied_by, run_id)
    records = []
    for index, step in enumerate(plan.steps):
        record = runner.run(index, step)
        if record is None:
            return Outcome(plan, False, _nothing_to_do(conn, plan.schema, "another run applied this plan first"))
        records.append(record)
    return Outcome(plan, True, f"applied {len(records)} step(s): {plan.describe()}", records)


def outcome_text(outcome: Outcome, *, with_sql: bool = False) -> str:
    """The outcome for a terminal: the plan and what came of it (once), what ran and cost, the constraints it
    left, and with `with_sql` (a dry run) the SQL the plan would run."""
    lines = [f"plan {outcome.plan.hash}: {outcome.message}"]
    if outcome.plan.refusals:
        lines.append(outcome.plan.sql().rstrip("\n"))
    for step in outcome.steps:
        lines.append(f"  {step.title}: {step.transactions} transaction(s), {step.attempts} attempt(s), "
                     f"lock wait {step.lock_wait_ms:.1f} ms, longest hold {step.hold_ms:.1f} ms")
    for column, counts in outcome.remapped().items():
        lines.append(f"  remapped in {column}: " + ", ".join(f"{v}: {n}" for v, n in counts.items()))
    changed = [c for c in outcome.after if outcome.after[c] != outcome.before.get(c)]
    for column in changed:
        lines += [f"  {column} before: {d}" for d in outcome.before.get(column) or ["(no CHECK)"]]
        lines += [f"  {column} after:  {d}" for d in outcome.after[column] or ["(no CHECK)"]]
    if with_sql and outcome.plan.steps and not outcome.plan.refusals:
        lines += ["", outcome.plan.sql().rstrip("\n")]
    return "\n".join(lines)


def operator(via: str) -> str:
    """Who applies a migration, for the ledger: the OS user and host, and through what."""
    try:
        user = getpass.getuser()
    except OSError:  # no login name in this container
        user = "unknown"
    return f"{user}@{socket.gethostname()} via {via}"


def constraint_definitions(conn: psycopg.Connection, contract: Contract) -> dict[str, list[str]]:
    """Every CHECK on each contracted value-set column, as "name: definition"."""
    with conn.transaction(force_rollback=True):
        live = read_catalog(conn, contract)
    return {
        f"{table.name}.{col.name}": [f"{c.name}: {c.definition}" for c in live[table.name].checks_on(col.name)]
        for table, col in contract.value_set_columns()
        if table.name in live
    }


class _Runner:
    def __init__(self, conn, contract: Contract, plan: Plan, applied_by: str, run_id: str | None):
        self.conn, self.contract, self.plan = conn, contract, plan
        self.applied_by, self.run_id = applied_by, run_id
        self.settings = plan.settings

    def run(self, index: int, step: Step) -> StepRecord | None:
        """One step to completion: one transaction, or batches until no legacy row is left."""
        record = StepRecord(step.title, step.kind)
        started = time.monotonic()
        stalled_since, delay = None, _FIRST_BACKOFF_S
        while True:
            result = self._with_retries(index, step, record, started)
            if result is None:
                return None
            moved, done = result
            if done:
                return record
            if moved:
                stalled_since, delay = None, _FIRST_BACKOFF_S
                continue
            # What is left is locked by other transactions: let them finish, for up to the retry window.
            stalled_since = stalled_since or time.monotonic()
            if time.monotonic() - stalled_since + delay > self.settings.retry_window_s:
                raise MigrationFailed(f"{step.title}: legacy rows stayed locked by other transactions for "
                                      f"{self.settings.retry_window_s:g} s; {self._state(index, step)}")
            time.sleep(delay)
            delay = min(delay * 2, _MAX_BACKOFF_S)

    def _with_retries(self, index: int, step: Step, record: StepRecord, started: float):
        deadline = time.monotonic() + self.settings.retry_window_s
        delay = _FIRST_BACKOFF_S
        while True:
            record.attempts += 1
            try:
                return self._transaction(index, step, record, started)
            except _RETRYABLE as exc:
                if time.monotonic() + delay > deadline:
                    raise MigrationFailed(
                        f"{step.title}: {_reason(exc)}, still after {record.attempts} attempts in "
                        f"{self.settings.retry_window_s:g} s; {self._state(index, step)}"
                    ) from None
                time.sleep(delay * random.uniform(0.5, 1.0))
                delay = min(delay * 2, _MAX_BACKOFF_S)
            except psycopg.Error as exc:
                raise MigrationFailed(f"{step.title}: {_reason(exc)}; {self._state(index, step)}") from None

    def _transaction(self, index: int, step: Step, record: StepRecord, started: float):
        """One attempt at one transaction of the step: (rows moved, step done), or None if nothing to do."""
        conn = self.conn
        with conn.transaction():
            with _waiting(record):
                for statement in step.prelude:
                    conn.execute(statement)
            if index == 0 and record.transactions == 0:  # the migration's first transaction
                fresh = make_plan(conn, self.contract, self.settings)
                fresh.require_runnable()
                if fresh.empty:
                    return None
                if fresh.hash != self.plan.hash:
                    raise MigrationFailed(f"the database changed since plan {self.plan.hash} was made "
                                          f"(it now plans {fresh.hash}); nothing was changed: plan again")
            else:
                self._check_expected(step)
            if step.lock:
                with _waiting(record):
                    conn.execute(step.lock)
            locked = time.monotonic()
            moved = {}
            for statement in step.body:
                cursor = conn.execute(statement.sql)
                if statement.remaps:
                    moved[statement.remaps] = dict(sorted(cursor.fetchall()))
            done = not step.batched or (not any(moved.values()) and not conn.execute(step.remaining_sql).fetchone()[0])
            # The record as it stands once this transaction commits; the ledger row is written in it.
            updated = replace(
                record,
                transactions=record.transactions + 1,
                hold_ms=max(record.hold_ms, (time.monotonic() - locked) * 1000),
                remapped=_add_counts(record.remapped, moved),
                duration_ms=(time.monotonic() - started) * 1000,
            )
            if done:
                entry = asdict(updated)
                record_step(conn, self.plan.schema, step=entry.pop("title"), rows_remapped=entry.pop("remapped"),
                            plan_hash=self.plan.hash, sql=step.sql(index + 1), applied_by=self.applied_by,
                            dagster_run_id=self.run_id, **entry)
        record.transactions, record.hold_ms = updated.transactions, updated.hold_ms
        record.remapped, record.duration_ms = updated.remapped, updated.duration_ms
        return any(moved.values()), done

    def _check_expected(self, step: Step) -> None:
        """Refuse to run a step on checks other than the ones it was planned from."""
        live = read_catalog(self.conn, self.contract)
        for table, column, expected in step.expects:
            found = frozenset((c.name, c.validated) for c in live[table].checks_on(column))
            if found != expected:
                raise MigrationFailed(
                    f"{step.title}: the checks on {table}.{column} changed under this migration "
                    f"(expected {sorted(expected)}, found {sorted(found)}): another run is applying it; "
                    "nothing in this step ran"
                )

    def _state(self, index: int, step: Step) -> str:
        """Where a failure in this step leaves the database."""
        if index == 0 and not step.batched:
            return "rolled back: the database is exactly as it was"
        done = "the batches committed so far stay" if step.batched else "this step was rolled back"
        return f"{done}; {_RESUMABLE[step.kind]}: run the migration again to continue from there"


# What the database accepts when a step of the expand/contract path stops before completing.
_RESUMABLE = {
    "replace": "the steps before it (new enum labels, which nothing uses yet) stay and this transaction is undone",
    "widen": "the column keeps its type and the transitional check accepts every old and new value",
    "enum": "the labels added so far stay in the type, unused",
    "expand": "the steps before it (other columns) stay applied and this column is untouched",
    "remap": "the transitional check accepts every old and new value",
    "contract": "the transitional check accepts every old and new value, and every row holds a code value",
    "validate": "the final check is in place for new writes (NOT VALID) and every row holds a code value",
    "retire": "the final check is validated; only the redundant transitional check is left to drop",
}


@contextmanager
def _waiting(record: StepRecord) -> Iterator[None]:
    """Adds the time spent in the block (lock waits, failed or not) to the record's lock wait."""
    started = time.monotonic()
    try:
        yield
    finally:
        record.lock_wait_ms += (time.monotonic() - started) * 1000


def _add_counts(total: dict[str, dict[str, int]], more: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    merged = {column: dict(counts) for column, counts in total.items()}
    for column, counts in more.items():
        for value, n in counts.items():
            merged.setdefault(column, {})[value] = merged.get(column, {}).get(value, 0) + n
    return merged


def _reason(exc: psycopg.Error) -> str:
    return " ".join((exc.diag.message_primary or str(exc) or type(exc).__name__).split())


def _nothing_to_do(conn: psycopg.Connection, schema: str, why: str) -> str:
    entries = ledger_entries(conn, schema)
    if not entries:
        return f"nothing to do: {why}"
    last = entries[-1]
    return (f"nothing to do: {why}; last applied step: {last['step']} (plan {last['plan_hash']}) "
            f"at {last['applied_at']:%Y-%m-%d %H:%M:%S%z} by {last['applied_by']}")
