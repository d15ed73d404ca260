"""The plan: which CHECK constraints to replace, which legacy values to remap, and the exact SQL.

Columns to fix come from the audit's own verdict: a CHECK refuses a value the code writes, or
accepts them all but still allows a legacy value that rows hold (remapped, then disallowed).
Constraints are chosen by the column they constrain (`conkey` is exactly that column), never
by their text: a check over several columns is kept, and so is a single-column check that is
no value list and accepts every code value (e.g. `length(status) <= 20`).

The plan is a function of the live state, so an interrupted expand/contract migration is
resumed by planning again: its intermediate states are ordinary inputs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from itertools import count

import psycopg
from psycopg import sql

from assets.audit.catalog import CheckConstraint, LiveColumn, LiveTable, read_catalog
from assets.audit.contract import ColumnContract, Contract
from assets.audit.findings import run_audit
from assets.audit.verdicts import judge_value_set, parse_check
from assets.migration.ledger import LEDGER_TABLE, ledger_exists

DEFAULT_REMAP = {"pending": "queued", "running": "processing"}
# One key for every bulkgen migration in a database, so two runs never interleave.
ADVISORY_LOCK_KEY = int.from_bytes(hashlib.sha256(b"bulkgen.migration").digest()[:8], "big", signed=True)
_MAX_IDENTIFIER = 63


class PlanError(ValueError):
    """The plan cannot run: a person must decide something first (the message says what)."""


class MissingPrivileges(PlanError):
    """The database role lacks privileges the migration uses (the message names each); nothing ran."""


@dataclass(frozen=True)
class MigrationSettings:
    remap: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_REMAP))
    large_table_rows: int = 50_000  # tables this large take the expand/contract path
    batch_size: int = 5_000  # rows remapped per committed transaction on that path
    lock_timeout_ms: int = 1_000  # the longest a reader queues behind a waiting migration
    statement_timeout_ms: int = 10_000  # bounds how long any lock is held
    validate_timeout_ms: int = 600_000  # VALIDATE scans the table without blocking reads or writes
    retry_window_s: float = 60.0  # how long lock timeouts are retried with backoff

    def __post_init__(self):
        for name in ("large_table_rows", "batch_size", "lock_timeout_ms", "statement_timeout_ms",
                     "validate_timeout_ms", "retry_window_s"):
            if getattr(self, name) <= 0:
                raise PlanError(f"migration setting {name} must be positive, got {getattr(self, name)}")


@dataclass(frozen=True)
class JudgedCheck:
    """A live CHECK on the column, judged on its own against the code's values."""

    check: CheckConstraint
    single: bool  # constrains only this column
    rejected: tuple[str, ...]  # code values it refuses
    allowed: tuple[str, ...] | None  # the value list it spells, when it spells one


@dataclass(frozen=True)
class ColumnState:
    """What the live database holds for one contracted value-set column."""

    table: str
    column: LiveColumn
    code_values: tuple[str, ...]
    checks: tuple[JudgedCheck, ...]
    type_refuses: tuple[str, ...]  # code values the column's type refuses before any CHECK
    value_counts: dict[str, int]  # every non-NULL value in the rows -> how many rows
    rows: int
    constraint_names: frozenset[str]  # every constraint name on the table


@dataclass(frozen=True)
class ColumnFix:
    table: str
    column: str
    code_values: tuple[str, ...]
    large: bool  # expand/contract instead of one transaction
    rows: int
    legacy_counts: dict[str, int]  # legacy value -> rows holding it
    remap: dict[str, str]  # legacy value -> code value, for the values rows hold
    replaced: tuple[CheckConstraint, ...]  # dropped first (on the large path: those refusing code values)
    retired: tuple[str, ...]  # dropped last: other value lists, and the transitional check
    kept: tuple[str, ...]  # other checks on the column, never touched
    final: str  # the check that accepts exactly the code values
    final_exists: bool
    final_validated: bool
    transitional: str | None
    singles_before: frozenset[tuple[str, bool]]  # (name, validated) of the column's own checks


@dataclass(frozen=True)
class Statement:
    sql: str
    why: str = ""  # comment shown above it: a squawk-ignore and its reason
    remaps: str | None = None  # "table.column" when it remaps legacy values (rows: value, count)


# A step's guard: per (table, column), the single-column checks as {(name, validated)} it starts from.
Expectation = tuple[str, str, frozenset[tuple[str, bool]]]


@dataclass(frozen=True)
class Step:
    """One transaction (or, when `batched`, one transaction per batch) of the migration."""

    kind: str  # replace | expand | remap | contract | validate | retire
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
class Plan:
    schema: str
    fixes: tuple[ColumnFix, ...]
    steps: tuple[Step, ...]
    errors: tuple[str, ...]
    settings: MigrationSettings

    @property
    def empty(self) -> bool:
        return not self.steps and not self.errors

    @property
    def hash(self) -> str:
        """Identifies the SQL the plan runs (the ledger records it with every step)."""
        body = "\n".join(step.sql(i) for i, step in enumerate(self.steps, 1))
        return hashlib.sha256(body.encode()).hexdigest()[:16]

    def sql(self) -> str:
        """Exactly the SQL that runs, transaction by transaction."""
        if self.errors or not self.steps:
            return f"-- nothing to run: {self.describe()}\n"
        columns = ", ".join(f"{self.schema}.{f.table}.{f.column}" for f in self.fixes)
        header = [
            f"-- bulkgen constraint migration {self.hash}: {columns}",
            f"-- A lock timeout rolls a transaction back; it is retried with backoff for "
            f"{self.settings.retry_window_s:g} s.",
            f"-- Each transaction also records its step in {self.schema}.{LEDGER_TABLE} (created if missing).",
        ]
        return "\n".join(header) + "\n\n" + "\n\n".join(s.sql(i) for i, s in enumerate(self.steps, 1)) + "\n"

    def describe(self) -> str:
        if self.errors:
            return "cannot run: " + "; ".join(self.errors)
        if not self.steps:
            return "every contracted value-set column accepts every code value and holds no legacy value"
        return "; ".join(_describe_fix(self.schema, f) for f in self.fixes)

    def require_runnable(self) -> None:
        if self.errors:
            raise PlanError("; ".join(self.errors))


def make_plan(conn: psycopg.Connection, contract: Contract, settings: MigrationSettings | None = None) -> Plan:
    """Plan from the audit and the live catalog, inside a read-only transaction that is rolled back."""
    settings = settings or MigrationSettings()
    with conn.transaction(force_rollback=True):
        conn.execute("SET TRANSACTION READ ONLY")
        conn.execute(sql.SQL("SET LOCAL statement_timeout = {}").format(f"{settings.validate_timeout_ms}ms"))
        findings = run_audit(conn, contract)
        refused = {(f.table, f.column) for f in findings if f.kind == "rejected_values"}
        # Columns whose checks accept every code value but still allow a legacy value the remap maps.
        codes = {(t.name, c.name): c.values for t, c in contract.value_set_columns()}
        legacy_allowed = {
            (f.table, f.column): [v for v in settings.remap if v in f.allowed and v not in codes[f.table, f.column]]
            for f in findings if f.kind == "legacy_values_allowed"
        }
        live = read_catalog(conn, contract)
        absent, wanted = {}, []  # absent: the missing tables and columns, in the contract's order
        for table, col in contract.value_set_columns():
            if table.name in live and col.name not in live[table.name].columns and col.optional:
                continue  # the code writes an optional column only where it exists: nothing to fix
            if table.name not in live or col.name not in live[table.name].columns:
                absent[f"{contract.schema}.{table.name}" + (f".{col.name}" if table.name in live else "")] = None
            elif ((table.name, col.name) in refused or _unfinished(live[table.name], col.name)
                  or legacy_allowed.get((table.name, col.name))):
                wanted.append((table, col))
        require_privileges(conn, contract.schema, read=[table.name for table, _ in wanted])
        states = [
            read_column_state(conn, contract.schema, live[table.name], col)
            for table, col in wanted
            if (table.name, col.name) in refused
            or _unfinished(live[table.name], col.name)
            or _holds_any(conn, contract.schema, table.name, col.name, legacy_allowed.get((table.name, col.name)))
        ]
    plan = plan_from(contract.schema, states, settings)
    missing = tuple(f"{name} is missing (the contract names it): create it first, this migration only replaces "
                    "CHECK constraints" for name in absent)
    return replace(plan, errors=missing + plan.errors) if missing else plan


def require_privileges(conn: psycopg.Connection, schema: str, *, read: Iterable[str] = (),
                       alter: Iterable[str] = (), update: Iterable[str] = (), ledger: bool = False) -> None:
    """Raise MissingPrivileges naming each privilege the current role lacks: SELECT on the tables it reads,
    ownership of those whose constraints it alters, UPDATE where it remaps rows, and what the ledger needs."""
    lacks = []
    checks = [(read, "has_table_privilege(%s::regclass, 'SELECT')", "needs SELECT on {} to read its rows"),
              (alter, "pg_has_role((SELECT relowner FROM pg_class WHERE oid = %s::regclass), 'USAGE')",
               "must own {} to alter its constraints"),
              (update, "has_table_privilege(%s::regclass, 'UPDATE')", "needs UPDATE on {} to remap its legacy rows")]
    for tables, query, problem in checks:
        for table in dict.fromkeys(tables):
            name = sql.Identifier(schema, table).as_string(conn)
            if not conn.execute(f"SELECT {query}", [name]).fetchone()[0]:
                lacks.append(problem.format(f"{schema}.{table}"))
    if ledger:
        name = sql.Identifier(schema, LEDGER_TABLE).as_string(conn)
        if not ledger_exists(conn, schema):
            if not conn.execute("SELECT has_schema_privilege(%s, 'CREATE')", [schema]).fetchone()[0]:
                lacks.append(f"needs CREATE on schema {schema} to create the ledger {LEDGER_TABLE}")
        elif not conn.execute("SELECT has_table_privilege(%s::regclass, 'INSERT')", [name]).fetchone()[0]:
            lacks.append(f"needs INSERT on {schema}.{LEDGER_TABLE} to record each step")
    if lacks:
        (user,) = conn.execute("SELECT current_user").fetchone()
        raise MissingPrivileges(f"role {user} lacks privileges the fix uses, nothing was run: " + "; ".join(lacks))


def read_column_state(conn: psycopg.Connection, schema: str, live: LiveTable, col: ColumnContract) -> ColumnState:
    """Judge each CHECK on the column alone, and count the values its rows hold (one scan)."""
    column = live.columns[col.name]
    checks = []
    for check in live.checks_on(col.name):
        verdict = judge_value_set(conn, schema, live.name, column, [check], col.values)
        checks.append(JudgedCheck(check, check.columns == (col.name,), tuple(verdict.rejected), verdict.allowed))
    type_refuses = tuple(judge_value_set(conn, schema, live.name, column, [], col.values).rejected)
    table = sql.Identifier(schema, live.name)
    counts = conn.execute(
        sql.SQL("SELECT {c}, count(*) FROM {t} GROUP BY {c}").format(c=sql.Identifier(col.name), t=table)
    ).fetchall()
    names = conn.execute(
        "SELECT conname FROM pg_constraint WHERE conrelid = %s::regclass", [table.as_string(conn)]
    ).fetchall()
    return ColumnState(
        table=live.name,
        column=column,
        code_values=col.values,
        checks=tuple(checks),
        type_refuses=type_refuses,
        value_counts={v: n for v, n in counts if v is not None},
        rows=sum(n for _, n in counts),
        constraint_names=frozenset(n for (n,) in names),
    )


def plan_from(schema: str, states: list[ColumnState], settings: MigrationSettings) -> Plan:
    """The steps and SQL for the columns' states; columns that cannot be fixed here become errors."""
    fixes, errors = [], []
    for state in states:
        try:
            fix = _fix_for(schema, state, settings)
        except PlanError as exc:
            errors.append(str(exc))
            continue
        if fix:
            fixes.append(fix)
    steps = []
    small = [f for f in fixes if not f.large]
    if small:
        steps.append(_replace_step(schema, small, settings))
    for fix in (f for f in fixes if f.large):
        steps += _expand_contract_steps(schema, fix, settings)
    return Plan(schema, tuple(fixes), tuple(steps), tuple(errors), settings)


def _unfinished(live: LiveTable, column: str) -> bool:
    """A NOT VALID value list on the column alone: what an interrupted migration leaves behind."""
    return any(
        not c.validated and c.columns == (column,) and parse_check(c.definition, column)[1] is not None
        for c in live.checks_on(column)
    )


def _holds_any(conn: psycopg.Connection, schema: str, table: str, column: str, values: list[str] | None) -> bool:
    return bool(values) and conn.execute(_exists_sql(schema, table, column, values)).fetchone()[0]


def _fix_for(schema: str, state: ColumnState, settings: MigrationSettings) -> ColumnFix | None:
    where = f"{schema}.{state.table}.{state.column.name}"
    codes = state.code_values
    column_type = state.column.type
    if not (column_type == "text" or column_type.startswith("character varying")):
        raise PlanError(f"{where} is of type {column_type}, which itself limits its values: "
                        "this needs a hand-written migration")
    if state.type_refuses:
        raise PlanError(f"{where} ({column_type}) refuses {_quoted(state.type_refuses)} before any CHECK: "
                        "this needs a hand-written migration")
    for j in state.checks:
        if not j.single and j.rejected:
            raise PlanError(f"{j.check.name} constrains {', '.join(j.check.columns)} together and refuses "
                            f"{_quoted(j.rejected)}: a check over several columns is kept as it is, "
                            "so this needs a hand-written migration")
    legacy = {v: n for v, n in sorted(state.value_counts.items()) if v not in codes}
    unmapped = [v for v in legacy if v not in settings.remap]
    if unmapped:
        raise PlanError(f"{where}: " + ", ".join(f"{legacy[v]} row(s) hold {v!r}" for v in unmapped)
                        + " with no mapping in the remap: add one (or fix those rows) first")
    wrong = {v: settings.remap[v] for v in legacy if settings.remap[v] not in codes}
    if wrong:
        raise PlanError(f"{where}: the remap maps " + ", ".join(f"{v!r} to {t!r}" for v, t in wrong.items())
                        + f", which the code never writes ({', '.join(codes)})")

    large = state.rows >= settings.large_table_rows
    single = [j for j in state.checks if j.single]
    exact = [j for j in single if not j.rejected and j.allowed is not None and set(j.allowed) == set(codes)]
    final = next((j.check for j in exact if j.check.validated or large), None)
    stale = [j for j in single if j.check is not final and (j.rejected or j.allowed is not None)]
    if not stale and not legacy and final is not None and final.validated:
        return None
    replaced = [j.check for j in stale if j.rejected or not large]
    retired = [j.check.name for j in stale if j.check not in replaced]
    taken = state.constraint_names - {c.name for c in replaced}
    transitional = _free_name(state.table, state.column.name, "transitional_check", taken) if large and replaced else None
    if transitional:
        taken |= {transitional}
    return ColumnFix(
        table=state.table,
        column=state.column.name,
        code_values=codes,
        large=large,
        rows=state.rows,
        legacy_counts=legacy,
        remap={v: t for v, t in settings.remap.items() if v in legacy},
        replaced=tuple(replaced),
        retired=tuple(retired) + ((transitional,) if transitional else ()),
        kept=tuple(j.check.name for j in state.checks if j.check is not final and j not in stale),
        final=final.name if final else _free_name(state.table, state.column.name, "check", taken),
        final_exists=final is not None,
        final_validated=bool(final and final.validated),
        transitional=transitional,
        singles_before=frozenset((j.check.name, j.check.validated) for j in single),
    )


def _replace_step(schema: str, fixes: list[ColumnFix], settings: MigrationSettings) -> Step:
    """Small tables: drop, remap, add and comment in one transaction (all columns at once)."""
    body = []
    for fix in fixes:
        table = sql.Identifier(schema, fix.table)
        for check in fix.replaced:
            body.append(_drop(table, check.name, "it is replaced below, in this same transaction"))
        if fix.remap:
            body.append(Statement(_remap_sql(schema, fix, batch=None), remaps=f"{fix.table}.{fix.column}"))
        if not fix.final_exists:
            body.append(Statement(
                _add_check(table, fix.final, _code_check(fix)),
                why=f"A small table (under {settings.large_table_rows} rows): validating under the lock already held\n"
                    "is shorter than a second transaction, and keeps the whole change atomic.\n"
                    "squawk-ignore constraint-missing-not-valid",
            ))
            body.append(Statement(_comment(schema, fix)))
    return Step(
        kind="replace",
        title="replace " + ", ".join(f"{schema}.{f.table}.{f.column}" for f in fixes)
              + " in one transaction",
        prelude=_prelude(settings, settings.statement_timeout_ms),
        lock=_lock([f.table for f in fixes], schema, "ACCESS EXCLUSIVE"),
        body=tuple(body),
        expects=tuple((f.table, f.column, f.singles_before) for f in fixes),
    )


def _expand_contract_steps(schema: str, fix: ColumnFix, settings: MigrationSettings) -> list[Step]:
    """Large tables: no transaction holds a lock that blocks reads or writes across a table scan.

    Stopping between steps leaves a resumable state that accepts every old and new value.
    """
    where = f"{schema}.{fix.table}.{fix.column}"
    table = sql.Identifier(schema, fix.table)
    checks = set(fix.singles_before)  # the column's own checks as each step finds them (its guard)
    steps = []

    def add(kind: str, title: str, body: list[Statement], *, lock_mode: str | None = "ACCESS EXCLUSIVE",
            timeout_ms: int = settings.statement_timeout_ms, drops: set[str] = frozenset(),
            adds: dict[str, bool] | None = None, **batching) -> None:
        steps.append(Step(
            kind, f"{where}: {title}", _prelude(settings, timeout_ms),
            _lock([fix.table], schema, lock_mode) if lock_mode else None,
            tuple(body), ((fix.table, fix.column, frozenset(checks)),), **batching,
        ))
        checks.difference_update({c for c in checks if c[0] in drops})
        checks.update((adds or {}).items())

    if fix.replaced:
        # The transitional check allows what the replaced checks allowed (in their own words) or a code value.
        old = " AND ".join(f"({parse_check(c.definition, fix.column)[0]})" for c in fix.replaced)
        transitional = sql.SQL("CHECK (({}) OR {} IN ({}))").format(
            sql.SQL(old), sql.Identifier(fix.column), _values(fix.code_values))
        dropped = {c.name for c in fix.replaced}
        add("expand", f"accept old and new values (transitional {fix.transitional}, NOT VALID)",
            [*(_drop(table, n, f"{fix.transitional} below allows every value it allowed") for n in sorted(dropped)),
             Statement(_add_check(table, fix.transitional, transitional) + " NOT VALID")],
            drops=dropped, adds={fix.transitional: False})
    if fix.remap:
        add("remap", f"remap legacy values in batches of {settings.batch_size}",
            [Statement(_remap_sql(schema, fix, batch=settings.batch_size), remaps=f"{fix.table}.{fix.column}")],
            lock_mode=None, batched=True, remaining_sql=_exists_sql(schema, fix.table, fix.column, fix.remap))
    if not fix.final_exists:
        add("contract", f"add {fix.final} (code values only, NOT VALID)",
            [Statement(_add_check(table, fix.final, _code_check(fix)) + " NOT VALID"),
             Statement(_comment(schema, fix))],
            adds={fix.final: False})
    if not fix.final_validated:
        validate = sql.SQL("ALTER TABLE {} VALIDATE CONSTRAINT {}").format(table, sql.Identifier(fix.final))
        add("validate", f"validate {fix.final} (reads and writes go on)", [Statement(validate.as_string(None))],
            lock_mode="SHARE UPDATE EXCLUSIVE", timeout_ms=settings.validate_timeout_ms,
            drops={fix.final}, adds={fix.final: True})
    if fix.retired:
        add("retire", "drop " + ", ".join(fix.retired),
            [_drop(table, n, f"{fix.final} (validated) accepts exactly the code values") for n in fix.retired],
            drops=set(fix.retired))
    return steps


def _prelude(settings: MigrationSettings, statement_timeout_ms: int) -> tuple[str, ...]:
    return (
        f"SET LOCAL lock_timeout = '{settings.lock_timeout_ms}ms'",
        f"SET LOCAL statement_timeout = '{statement_timeout_ms}ms'",
        f"SELECT pg_advisory_xact_lock({ADVISORY_LOCK_KEY})",
    )


def _lock(tables: list[str], schema: str, mode: str) -> str:
    names = sql.SQL(", ").join(sql.Identifier(schema, t) for t in tables)
    return sql.SQL("LOCK TABLE {} IN {} MODE").format(names, sql.SQL(mode)).as_string(None)


def _drop(table: sql.Identifier, name: str, reason: str) -> Statement:
    return Statement(
        sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(table, sql.Identifier(name)).as_string(None),
        why=f"Replacing a CHECK means dropping it: {reason}.\nsquawk-ignore ban-drop-constraint",
    )


def _add_check(table: sql.Identifier, name: str, check: sql.Composable) -> str:
    return sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(table, sql.Identifier(name), check).as_string(None)


def _code_check(fix: ColumnFix) -> sql.Composed:
    return sql.SQL("CHECK ({} IN ({}))").format(sql.Identifier(fix.column), _values(fix.code_values))


def _values(values) -> sql.Composed:
    return sql.SQL(", ").join(map(sql.Literal, values))


def _comment(schema: str, fix: ColumnFix) -> str:
    text = f"Values the application writes (bulkgen contract): {', '.join(fix.code_values)}."
    return sql.SQL("COMMENT ON COLUMN {} IS {}").format(
        sql.Identifier(schema, fix.table, fix.column), sql.Literal(text)
    ).as_string(None)


def _remap_sql(schema: str, fix: ColumnFix, batch: int | None) -> str:
    """Remap legacy values, returning rows remapped per legacy value.

    A batch takes rows no one else has locked (SKIP LOCKED): it never waits on a writer's row
    lock, so it can never deadlock with one; the rows it skips are taken by a later batch.
    """
    table, column = sql.Identifier(schema, fix.table), sql.Identifier(fix.column)
    cases = sql.SQL(" ").join(
        sql.SQL("WHEN {} THEN {}").format(sql.Literal(old), sql.Literal(new)) for old, new in fix.remap.items()
    )
    limit = sql.SQL(" LIMIT {} FOR UPDATE SKIP LOCKED").format(sql.Literal(batch)) if batch else sql.SQL("")
    return sql.SQL(
        "WITH legacy AS (SELECT ctid, {c} FROM {t} WHERE {c} IN ({old}){limit}), "
        "remapped AS (UPDATE {t} SET {c} = CASE {c} {cases} END WHERE ctid = ANY (ARRAY(SELECT ctid FROM legacy))) "
        "SELECT {c}, count(*) FROM legacy GROUP BY {c}"
    ).format(c=column, t=table, old=_values(fix.remap), limit=limit, cases=cases).as_string(None)


def _exists_sql(schema: str, table: str, column: str, values) -> str:
    return sql.SQL("SELECT EXISTS (SELECT FROM {} WHERE {} IN ({}))").format(
        sql.Identifier(schema, table), sql.Identifier(column), _values(values)
    ).as_string(None)


def _free_name(table: str, column: str, suffix: str, taken: set[str] | frozenset[str]) -> str:
    """`<table>_<column>_<suffix>`, as PostgreSQL would name it (truncated, numbered if taken)."""
    for n in count():
        tail = f"_{suffix}{n or ''}"
        name = f"{table}_{column}"[: _MAX_IDENTIFIER - len(tail)] + tail
        if name not in taken:
            return name


def _rows(n: int) -> str:
    return f"{n} row" if n == 1 else f"{n} rows"


def _quoted(values) -> str:
    return ", ".join(repr(v) for v in values)


def _describe_fix(schema: str, fix: ColumnFix) -> str:
    remap = ", ".join(f"{old}→{new} ({_rows(fix.legacy_counts[old])})" for old, new in fix.remap.items()) or "none"
    path = f"expand/contract via {fix.transitional}" if fix.transitional else (
        "expand/contract" if fix.large else "one transaction")
    dropped = [c.name for c in fix.replaced] + [n for n in fix.retired if n != fix.transitional]
    return (f"{schema}.{fix.table}.{fix.column}: {', '.join(dropped) or 'nothing'} → {fix.final}; "
            f"remap {remap}; {path} ({_rows(fix.rows)}); kept {', '.join(fix.kept) or 'nothing'}")
