"""What the planner reads and what it produces: plain data, no database, no SQL building."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from assets.audit.catalog import CheckConstraint, LiveColumn
from assets.migration.ledger import LEDGER_TABLE
from assets.migration.settings import MigrationSettings


class PlanError(ValueError):
    """The plan cannot run: a person must decide something first (the message says what)."""


class PlanRefused(PlanError):
    """A column the plan will not change by itself; `sql` is what a person would run instead (may be empty)."""

    def __init__(self, message: str, sql: str):
        super().__init__(message)
        self.sql = sql


class MissingPrivileges(PlanError):
    """The database role lacks privileges the migration uses (the message names each); nothing ran."""


@dataclass(frozen=True)
class Conjunct:
    sql: str
    columns: frozenset[str]  # the columns it reads
    column_only: bool  # depends on the column alone, so one value decides it
    limits: bool  # refuses a code value, or spells a value list: the code's list replaces it


@dataclass(frozen=True)
class JudgedCheck:
    """A live CHECK on the column (of its table, or of its domain), judged on its own against the code's values."""

    check: CheckConstraint
    on_domain: bool  # a constraint of the column's domain, whose expression names VALUE
    single: bool  # constrains only this column
    rejected: tuple[str, ...]  # code values it refuses
    allowed: tuple[str, ...] | None  # the value list it spells, when it spells one
    conjuncts: tuple[Conjunct, ...]

    @property
    def limits(self) -> bool:
        return bool(self.rejected) or any(c.limits for c in self.conjuncts)

    @property
    def limiting_sql(self) -> str:
        """What its value-limiting conjuncts allow, as one expression (the transitional check keeps it)."""
        return " AND ".join(f"({c.sql})" for c in self.conjuncts if c.limits) or "true"

    def survivor_reads(self, column: str) -> bool:
        return any(column in c.columns for c in self.conjuncts if not c.limits)

    @property
    def survivor_sql(self) -> str | None:
        """Its other conjuncts, which keep guarding what they guarded once the check is replaced."""
        return " AND ".join(f"({c.sql})" for c in self.conjuncts if not c.limits) or None


@dataclass(frozen=True)
class EnumType:
    name: str  # quoted, schema-qualified
    labels: tuple[str, ...]
    shared_with: tuple[str, ...]  # columns outside the contract of this type


@dataclass(frozen=True)
class Domain:
    name: str  # quoted, schema-qualified
    base_type: str  # format_type of its base type
    shared_with: tuple[str, ...]  # columns outside the contract (or with other code values) of this domain
    constraint_names: frozenset[str]


@dataclass(frozen=True)
class DependentView:
    """A view over the column, dropped and created again around a change of the column's type."""

    name: str  # quoted, schema-qualified
    unrestorable: bool  # materialized, or with rules or triggers: created again, it would not be what it was
    create: tuple[str, ...]  # CREATE VIEW, then its owner, grants and comment, as they are


@dataclass(frozen=True)
class ColumnState:
    """What the live database holds for one contracted value-set column."""

    table: str
    column: LiveColumn
    code_values: tuple[str, ...]
    checks: tuple[JudgedCheck, ...]  # the table's checks on the column, then its domain's
    type_refuses: tuple[str, ...]  # code values the column's type refuses before any CHECK
    value_counts: dict[str, int]  # every non-NULL value in the rows -> how many rows
    rows: int
    constraint_names: frozenset[str]  # every constraint name on the table
    varchar_length: int | None = None  # n of the column's own character varying(n)
    enum: EnumType | None = None
    domain: Domain | None = None
    views: tuple[DependentView, ...] = ()  # deepest last


@dataclass(frozen=True)
class Retype:
    """The column's new type; `rewrite` when PostgreSQL must rewrite the table to change it."""

    to: str
    rewrite: bool
    why: str
    views: tuple[DependentView, ...]
    revalidated: tuple[CheckConstraint, ...]  # validated checks on the column, re-added NOT VALID (large path)


@dataclass(frozen=True)
class ColumnFix:
    table: str
    column: str
    code_values: tuple[str, ...]
    large: bool  # expand/contract instead of one transaction
    rows: int
    legacy_counts: dict[str, int]  # legacy value -> rows holding it
    remap: dict[str, str]  # legacy value -> code value, for the values rows hold
    replaced: tuple[JudgedCheck, ...]  # dropped first (on the large path: those refusing code values)
    survivors: tuple[tuple[str, str, bool, bool], ...]  # (name, expression, on domain, validated) split off
    survivors_on_column: frozenset[str]  # the survivors that still read the column (the steps' guard sees them)
    retired: tuple[JudgedCheck, ...]  # dropped last: value lists that accept every code value
    kept: tuple[str, ...]  # other checks on the column, never touched
    final: str  # the check that accepts exactly the code values
    final_on_domain: bool
    final_exists: bool
    final_validated: bool
    transitional: dict[bool, str]  # on domain -> the transitional check's name (large path)
    checks_before: frozenset[tuple[str, bool]]  # (name, validated) of the table's checks on the column
    domain: str | None = None
    enum: str | None = None
    enum_additions: tuple[str, ...] = ()  # labels ADD VALUE adds, committed before anything uses them
    retype: Retype | None = None


@dataclass(frozen=True)
class Statement:
    sql: str
    why: str = ""  # comment shown above it: a squawk-ignore and its reason
    remaps: str | None = None  # "table.column" when it remaps legacy values (rows: value, count)


# A step's guard: per (table, column), the table's checks on the column as {(name, validated)} it starts from.
Expectation = tuple[str, str, frozenset[tuple[str, bool]]]


@dataclass(frozen=True)
class Step:
    """One transaction (or, when `batched`, one transaction per batch) of the migration."""

    kind: str  # enum | replace | expand | widen | remap | contract | validate | retire
    title: str
    prelude: tuple[str, ...]  # timeouts and the advisory lock
    lock: str | None  # the table lock, taken explicitly so its wait is bounded and measured
    body: tuple[Statement, ...]
    expects: tuple[Expectation, ...]
    batched: bool = False
    remaining_sql: str | None = None  # batches repeat until this says no legacy row is left

    def sql(self, number: int) -> str:
        lines = [f"-- {number}. {self.title}"]
        if self.batched:
            lines.append(f"-- One transaction per batch, repeated until this is false: {self.remaining_sql}")
        lines += ["BEGIN;", *(f"{s};" for s in self.prelude)]
        if self.lock:
            lines.append(f"{self.lock};")
        for statement in self.body:
            lines += [f"-- {line}" for line in statement.why.splitlines()]
            lines.append(f"{statement.sql};")
        lines.append("COMMIT;")
        return "\n".join(lines)


@dataclass(frozen=True)
class Refusal:
    """A column the plan will not change by itself: why, and the SQL a person would run instead."""

    reason: str
    manual_sql: str = ""


@dataclass(frozen=True)
class Plan:
    schema: str
    fixes: tuple[ColumnFix, ...]
    steps: tuple[Step, ...]
    refusals: tuple[Refusal, ...]
    settings: MigrationSettings

    @property
    def errors(self) -> tuple[str, ...]:
        return tuple(r.reason for r in self.refusals)

    @property
    def empty(self) -> bool:
        return not self.steps and not self.refusals

    @property
    def hash(self) -> str:
        """Identifies the SQL the plan runs (the ledger records it with every step)."""
        body = "\n".join(step.sql(i) for i, step in enumerate(self.steps, 1))
        return hashlib.sha256(body.encode()).hexdigest()[:16]

    def sql(self) -> str:
        """Exactly the SQL that runs, transaction by transaction; for a refused plan, the SQL a person would run."""
        if self.refusals or not self.steps:
            manual = [f"-- {r.reason}\n-- The SQL a person would run instead, reviewed first:\n{r.manual_sql}"
                      for r in self.refusals if r.manual_sql]
            return f"-- nothing to run: {self.describe()}\n" + "".join(f"\n{m}\n" for m in manual)
        columns = ", ".join(f"{self.schema}.{f.table}.{f.column}" for f in self.fixes)
        header = [
            f"-- bulkgen constraint migration {self.hash}: {columns}",
            f"-- A lock timeout rolls a transaction back; it is retried with backoff for "
            f"{self.settings.retry_window_s:g} s.",
            f"-- Each transaction also records its step in {self.schema}.{LEDGER_TABLE} (created if missing).",
        ]
        return "\n".join(header) + "\n\n" + "\n\n".join(s.sql(i) for i, s in enumerate(self.steps, 1)) + "\n"

    def describe(self) -> str:
        if self.refusals:
            return "cannot run: " + "; ".join(self.errors)
        if not self.steps:
            return "every contracted value-set column accepts every code value and holds no legacy value"
        return "; ".join(_describe_fix(self.schema, f) for f in self.fixes)

    def require_runnable(self) -> None:
        if self.refusals:
            raise PlanRefused("; ".join(self.errors), self.sql() if any(r.manual_sql for r in self.refusals) else "")


def _rows(n: int) -> str:
    return f"{n} row" if n == 1 else f"{n} rows"


def _describe_fix(schema: str, fix: ColumnFix) -> str:
    remap = ", ".join(f"{old}→{new} ({_rows(fix.legacy_counts[old])})" for old, new in fix.remap.items()) or "none"
    path = "expand/contract" + (f" via {', '.join(fix.transitional.values())}" if fix.transitional else "") \
        if fix.large else "one transaction"
    dropped = [j.check.name for j in fix.replaced + fix.retired]
    extra = ([f"add {', '.join(fix.enum_additions)} to {fix.enum}"] if fix.enum_additions else []) + (
        [f"retype to {fix.retype.to}"] if fix.retype else []) + (
        [f"split off {', '.join(s[0] for s in fix.survivors)}"] if fix.survivors else [])
    holder = f"domain {fix.domain} " if fix.final_on_domain else ""
    return (f"{schema}.{fix.table}.{fix.column}: {', '.join(dropped) or 'nothing'} → {holder}{fix.final}; "
            + "".join(f"{e}; " for e in extra)
            + f"remap {remap}; {path} ({_rows(fix.rows)}); kept {', '.join(fix.kept) or 'nothing'}")
