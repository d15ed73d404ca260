"""Verdicts on CHECK constraints: which code values PostgreSQL itself would refuse.

A value is judged by evaluating the constraint's own expression, read-only, on a row of the
table's own type built from that value (`json_populate_record`), so typmods, domains and enum
labels apply exactly as on an INSERT. A `WHERE` read proves nothing about what a CHECK accepts.

For a check over several columns only the top-level conjuncts that depend on this column
alone are evaluated: a FALSE there fails every row, whatever the other columns hold. The
rest cannot be decided from one value and is reported as such, never as a rejection.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import psycopg
from pglast import ast, parse_sql
from pglast.enums import A_Expr_Kind, BoolExprType
from pglast.stream import RawStream
from pglast.visitors import Visitor
from psycopg import sql

from assets.audit.catalog import CheckConstraint, LiveColumn


@dataclass(frozen=True)
class ParsedCheck:
    """A CHECK split into what one column decides alone and what needs other columns."""

    constraint: CheckConstraint
    decidable_sql: str | None  # AND of the conjuncts over this column only, or None
    allowed: tuple[str, ...] | None  # the allow-list those conjuncts spell, when they spell one
    undecidable: bool  # some conjunct also depends on other columns


@dataclass(frozen=True)
class ValueSetVerdict:
    """What the live table accepts for one enum-like column, judged against the code's values."""

    allowed: tuple[str, ...] | None  # parsed allow-list (CHECK lists, enum labels), None if not a list
    rejected: dict[str, str]  # code value -> why PostgreSQL refuses it
    undecidable: tuple[str, ...]  # names of checks that depend on other columns too


@cache
def parse_check(definition: str, column: str) -> tuple[str | None, tuple[str, ...] | None, bool]:
    """Split `pg_get_constraintdef` text into (decidable SQL, allow-list, has undecidable part)."""
    stmt = parse_sql(f"ALTER TABLE _t ADD {definition}")[0].stmt
    expr = stmt.cmds[0].def_.raw_expr
    decidable, undecidable = [], False
    for conjunct in _conjuncts(expr):
        if _columns_in(conjunct) <= {column}:
            decidable.append(conjunct)
        else:
            undecidable = True
    allowed = None
    for conjunct in decidable:
        allowed = _intersect(allowed, _allow_list(conjunct, column))
    decidable_sql = " AND ".join(f"({RawStream()(c)})" for c in decidable) or None
    return decidable_sql, allowed, undecidable


@cache
def check_conjuncts(definition: str, column: str) -> tuple[tuple[str, frozenset[str], tuple[str, ...] | None], ...]:
    """Each top-level conjunct of a CHECK as (SQL, the columns it reads, the allow-list it spells on `column`)."""
    stmt = parse_sql(f"ALTER TABLE _t ADD {definition}")[0].stmt
    return tuple(
        (RawStream()(c), frozenset(_columns_in(c)), _allow_list(c, column))
        for c in _conjuncts(stmt.cmds[0].def_.raw_expr)
    )


def judge_value_set(
    conn: psycopg.Connection,
    schema: str,
    table: str,
    column: LiveColumn,
    checks: list[CheckConstraint],
    values: tuple[str, ...],
) -> ValueSetVerdict:
    """Decide, as PostgreSQL would on INSERT, which of `values` the column refuses.

    Runs inside the caller's (read-only) transaction; each probe is its own savepoint.
    """
    parsed = [ParsedCheck(c, *parse_check(c.definition, column.name)) for c in checks]
    allowed = column.enum_labels
    for p in parsed:
        allowed = _intersect(allowed, p.allowed)
    rejected, undecidable = {}, {p.constraint.name for p in parsed if p.undecidable}
    for value in values:
        try:
            reason = _refusal(conn, schema, table, column.name, value, parsed)
        except _WritesWhenEvaluated as exc:
            undecidable.add(exc.constraint)
            continue
        if reason:
            rejected[value] = reason
    return ValueSetVerdict(
        allowed=allowed,
        rejected=rejected,
        undecidable=tuple(sorted(undecidable)),
    )


class _WritesWhenEvaluated(Exception):
    """The check calls something that writes: a read-only probe cannot judge it."""

    def __init__(self, constraint: str):
        super().__init__(constraint)
        self.constraint = constraint


def _refusal(conn, schema: str, table: str, column: str, value: str, parsed: list[ParsedCheck]) -> str | None:
    """Why an INSERT of `value` into the column would fail, or None when it would pass."""
    row = sql.SQL("json_populate_record(NULL::{}.{}, json_build_object({}, {}::text)) AS _bulkgen_row").format(
        sql.Identifier(schema), sql.Identifier(table), sql.Literal(column), sql.Literal(value)
    )
    probes = [(None, sql.SQL("SELECT true FROM {}").format(row))]
    probes += [
        (p.constraint.name, sql.SQL("SELECT ({}) IS NOT FALSE FROM {}").format(sql.SQL(p.decidable_sql), row))
        for p in parsed
        if p.decidable_sql
    ]
    for name, probe in probes:
        try:
            with conn.transaction():
                passes = conn.execute(probe).fetchone()[0]
        except psycopg.errors.QueryCanceled:
            raise
        except psycopg.errors.ReadOnlySqlTransaction:
            raise _WritesWhenEvaluated(name or "the column's type") from None
        except psycopg.Error as exc:
            message = exc.diag.message_primary or str(exc)
            return f"{name}: {message}" if name else message
        if not passes:
            return f"violates {name}"
    return None


def _intersect(a: tuple[str, ...] | None, b: tuple[str, ...] | None) -> tuple[str, ...] | None:
    """Both allow-lists at once, in a's order; None stands for "not a list" (no restriction known)."""
    if a is None or b is None:
        return b if a is None else a
    return tuple(v for v in a if v in b)


def _conjuncts(expr: ast.Node) -> list[ast.Node]:
    if isinstance(expr, ast.BoolExpr) and expr.boolop == BoolExprType.AND_EXPR:
        return [c for arg in expr.args for c in _conjuncts(arg)]
    return [expr]


class _ColumnRefs(Visitor):
    def __init__(self):
        super().__init__()
        self.names: set[str] = set()

    def visit_ColumnRef(self, ancestors, node):
        last = node.fields[-1]
        self.names.add(last.sval if isinstance(last, ast.String) else "*")


def _columns_in(expr: ast.Node) -> set[str]:
    refs = _ColumnRefs()
    refs(expr)
    return refs.names


def _allow_list(expr: ast.Node, column: str) -> tuple[str, ...] | None:
    """The values `expr` allows when it is a plain value list on the bare column, else None."""
    if isinstance(expr, ast.BoolExpr) and expr.boolop == BoolExprType.OR_EXPR:
        parts = [_allow_list(arg, column) for arg in expr.args]
        return None if any(p is None for p in parts) else tuple(dict.fromkeys(v for p in parts for v in p))
    if not isinstance(expr, ast.A_Expr) or _operator(expr) != "=" or not _is_column(expr.lexpr, column):
        return None
    if expr.kind == A_Expr_Kind.AEXPR_OP:
        value = _string(expr.rexpr)
        return None if value is None else (value,)
    if expr.kind == A_Expr_Kind.AEXPR_IN:
        items = expr.rexpr
    elif expr.kind == A_Expr_Kind.AEXPR_OP_ANY:
        array = _strip_casts(expr.rexpr)
        if not isinstance(array, ast.A_ArrayExpr):
            return None
        items = array.elements or ()
    else:
        return None
    values = [_string(item) for item in items]
    return None if any(v is None for v in values) else tuple(dict.fromkeys(values))


def _operator(expr: ast.A_Expr) -> str:
    return expr.name[-1].sval


def _strip_casts(node: ast.Node) -> ast.Node:
    while isinstance(node, ast.TypeCast):
        node = node.arg
    return node


def _is_column(node: ast.Node, column: str) -> bool:
    node = _strip_casts(node)
    return isinstance(node, ast.ColumnRef) and _columns_in(node) == {column}


def _string(node: ast.Node) -> str | None:
    node = _strip_casts(node)
    if isinstance(node, ast.A_Const) and not node.isnull and isinstance(node.val, ast.String):
        return node.val.sval
    return None
