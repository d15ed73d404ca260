"""The SQL text of a plan: every statement a migration runs, built from identifiers and literals, never pasted."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from itertools import count

from psycopg import sql

from assets.migration.model import ColumnFix, DependentView, Statement
from assets.migration.settings import MigrationSettings

# One key for every bulkgen migration in a database, so two runs never interleave.
ADVISORY_LOCK_KEY = int.from_bytes(hashlib.sha256(b"bulkgen.migration").digest()[:8], "big", signed=True)
_MAX_IDENTIFIER = 63


def prelude(settings: MigrationSettings, statement_timeout_ms: int) -> tuple[str, ...]:
    return (
        f"SET LOCAL lock_timeout = '{settings.lock_timeout_ms}ms'",
        f"SET LOCAL statement_timeout = '{statement_timeout_ms}ms'",
        f"SELECT pg_advisory_xact_lock({ADVISORY_LOCK_KEY})",
    )


def lock(tables: Iterable[str], schema: str, mode: str) -> str:
    names = sql.SQL(", ").join(sql.Identifier(schema, t) for t in dict.fromkeys(tables))
    return sql.SQL("LOCK TABLE {} IN {} MODE").format(names, sql.SQL(mode)).as_string(None)


def holder(schema: str, fix: ColumnFix, on_domain: bool) -> sql.Composable:
    """`ALTER TABLE t` or, for a constraint of the column's domain, `ALTER DOMAIN d`."""
    if on_domain:
        return sql.SQL("ALTER DOMAIN {}").format(sql.SQL(fix.domain))
    return sql.SQL("ALTER TABLE {}").format(sql.Identifier(schema, fix.table))


def value_ref(fix: ColumnFix, on_domain: bool) -> sql.Composable:
    return sql.SQL("VALUE") if on_domain else sql.Identifier(fix.column)


def drop(alter: sql.Composable, name: str, reason: str) -> Statement:
    return Statement(
        sql.SQL("{} DROP CONSTRAINT {}").format(alter, sql.Identifier(name)).as_string(None),
        why=f"Replacing a CHECK means dropping it: {reason}.\nsquawk-ignore ban-drop-constraint",
    )


def add_check(alter: sql.Composable, name: str, expression: sql.Composable | str, *, not_valid: bool,
              why: str = "", on_domain: bool = False) -> Statement:
    expression = sql.SQL(expression) if isinstance(expression, str) else expression
    text = sql.SQL("{} ADD CONSTRAINT {} CHECK ({})").format(alter, sql.Identifier(name), expression)
    if on_domain:
        why = "\n".join(filter(None, [why, _DOMAIN_CONSTRAINT]))
    return Statement(text.as_string(None) + (" NOT VALID" if not_valid else ""), why=why)


_DOMAIN_CONSTRAINT = ("The domain's own constraint is what refuses the value: it is replaced where it lives, so every\n"
                      "column of the domain stays guarded.\nsquawk-ignore ban-alter-domain-with-add-constraint")


def validate(alter: sql.Composable, name: str) -> Statement:
    return Statement(sql.SQL("{} VALIDATE CONSTRAINT {}").format(alter, sql.Identifier(name)).as_string(None))


def code_list(ref: sql.Composable, codes: Iterable[str]) -> sql.Composed:
    return sql.SQL("{} IN ({})").format(ref, values(codes))


def values(items: Iterable[str]) -> sql.Composed:
    return sql.SQL(", ").join(map(sql.Literal, items))


def add_enum_value(enum: str, label: str) -> Statement:
    return Statement(
        sql.SQL("ALTER TYPE {} ADD VALUE IF NOT EXISTS {}").format(sql.SQL(enum), sql.Literal(label)).as_string(None),
        why="A new label is usable only once committed: this transaction commits before any step writes it.\n"
            "Appended: nothing orders by these labels, and the column's check decides what is written.\n"
            "squawk-ignore require-enum-value-ordering",
    )


def retype(schema: str, fix: ColumnFix) -> Statement:
    change = sql.SQL("ALTER TABLE {} ALTER COLUMN {} TYPE {}").format(
        sql.Identifier(schema, fix.table), sql.Identifier(fix.column), sql.SQL(fix.retype.to))
    if fix.retype.rewrite:
        change = sql.SQL("{} USING {}::text").format(change, sql.Identifier(fix.column))
    return Statement(change.as_string(None),
                     why=f"{fix.retype.why}\nsquawk-ignore changing-column-type, prefer-text-field")


def drop_view(view: DependentView) -> Statement:
    return Statement(f"DROP VIEW {view.name}",
                     why="PostgreSQL refuses to change the type of a column a view reads: it is created again "
                         "below,\nas it was, in this same transaction.\nsquawk-ignore ban-drop-view")


def comment(schema: str, fix: ColumnFix) -> Statement:
    text = f"Values the application writes (bulkgen contract): {', '.join(fix.code_values)}."
    return Statement(sql.SQL("COMMENT ON COLUMN {} IS {}").format(
        sql.Identifier(schema, fix.table, fix.column), sql.Literal(text)).as_string(None))


def remap(schema: str, fix: ColumnFix, batch: int | None) -> Statement:
    """Remap legacy values, returning rows remapped per legacy value.

    A batch takes rows no one else has locked (SKIP LOCKED): it never waits on a writer's row
    lock, so it can never deadlock with one; the rows it skips are taken by a later batch.
    The column is compared as text, so an enum column's labels need no cast here.
    """
    table, column = sql.Identifier(schema, fix.table), sql.Identifier(fix.column)
    cases = sql.SQL(" ").join(
        sql.SQL("WHEN {} THEN {}").format(sql.Literal(old), sql.Literal(new)) for old, new in fix.remap.items()
    )
    new_value = sql.SQL("CASE {}::text {} END").format(column, cases)
    if fix.enum:
        new_value = sql.SQL("({})::{}").format(new_value, sql.SQL(fix.enum))
    limit = sql.SQL(" LIMIT {} FOR UPDATE SKIP LOCKED").format(sql.Literal(batch)) if batch else sql.SQL("")
    return Statement(sql.SQL(
        "WITH legacy AS (SELECT ctid, {c}::text AS value FROM {t} WHERE {c}::text IN ({old}){limit}), "
        "remapped AS (UPDATE {t} SET {c} = {new} WHERE ctid = ANY (ARRAY(SELECT ctid FROM legacy))) "
        "SELECT value, count(*) FROM legacy GROUP BY value"
    ).format(c=column, t=table, old=values(fix.remap), limit=limit, new=new_value).as_string(None),
        remaps=f"{fix.table}.{fix.column}")


def exists(schema: str, table: str, column: str, items: Iterable[str]) -> str:
    return sql.SQL("SELECT EXISTS (SELECT FROM {} WHERE {}::text IN ({}))").format(
        sql.Identifier(schema, table), sql.Identifier(column), values(items)
    ).as_string(None)


def free_name(stem: str, suffix: str, taken: set[str] | frozenset[str]) -> str:
    """`<stem>_<suffix>`, as PostgreSQL would name it (truncated, numbered if taken)."""
    for n in count():
        tail = f"_{suffix}{n or ''}"
        name = stem[: _MAX_IDENTIFIER - len(tail)] + tail
        if name not in taken:
            return name
