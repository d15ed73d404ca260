"""The run's owner: the app user a batch is made for, written to every owner column the contract names.

The app shows a user only the rows whose `created_by` is theirs (RLS `auth.uid() = created_by`),
so a batch without its owner is invisible to everyone. An owner is refused before anything is
written when it is not a UUID, or when an owner column's foreign key points at a table (e.g.
`user_profiles`) with no row for it: the insert would fail half way through the run otherwise.
"""

from __future__ import annotations

import os
from uuid import UUID

import psycopg
from psycopg import sql

from assets.audit.contract import CONTRACT, Contract

OWNER_ENV = "BULKGEN_OWNER"

# The single-column foreign keys on one column, with the table and column each references.
_REFERENCES_SQL = """
SELECT con.confrelid::regclass::text AS referenced, ref.attname AS referenced_column,
       nref.nspname AS referenced_schema, cref.relname AS referenced_table
  FROM pg_constraint con
  JOIN pg_attribute src ON src.attrelid = con.conrelid AND src.attnum = con.conkey[1]
  JOIN pg_attribute ref ON ref.attrelid = con.confrelid AND ref.attnum = con.confkey[1]
  JOIN pg_class cref ON cref.oid = con.confrelid
  JOIN pg_namespace nref ON nref.oid = cref.relnamespace
 WHERE con.contype = 'f' AND cardinality(con.conkey) = 1
   AND con.conrelid = to_regclass(%(table)s) AND src.attname = %(column)s
"""


class OwnerRefused(ValueError):
    """The owner cannot be written: not a UUID, or unknown where an owner column references a users table."""


def parse_owner(value: str | UUID | None) -> UUID:
    """The owner as a UUID; refuses nothing given and anything that is not a UUID."""
    if isinstance(value, UUID):
        return value
    if value is None or not str(value).strip():
        raise OwnerRefused(f"no owner: pass --owner UUID (the app user the conversations are for) or set {OWNER_ENV}")
    try:
        return UUID(str(value).strip())
    except ValueError:
        raise OwnerRefused(f"owner {str(value)[:80]!r} is not a UUID") from None


def default_owner() -> str | None:
    """The configured default owner ($BULKGEN_OWNER): what schedules, sensors and the UI's runs use."""
    return os.environ.get(OWNER_ENV) or None


def owner_columns(table: str) -> list[str]:
    """The columns of `table` the contract (generation's own) names as holding the owner."""
    return [c.name for t, c in CONTRACT.owner_columns() if t.name == table]


def owner_refusals(conn: psycopg.Connection, contract: Contract, owner: UUID) -> list[str]:
    """One line per owner column whose foreign key references a table with no row for `owner` (read-only)."""
    problems, checked = [], set()
    for table, column in contract.owner_columns():
        qualified = sql.Identifier(contract.schema, table.name).as_string(conn)
        references = conn.execute(_REFERENCES_SQL, {"table": qualified, "column": column.name}).fetchall()
        for referenced, referenced_column, schema, name in references:
            if (referenced, referenced_column) in checked:
                continue
            checked.add((referenced, referenced_column))
            try:
                with conn.transaction():
                    (found,) = conn.execute(
                        sql.SQL("SELECT EXISTS (SELECT FROM {} WHERE {} = %s)").format(
                            sql.Identifier(schema, name), sql.Identifier(referenced_column)),
                        [owner],
                    ).fetchone()
            except psycopg.errors.InsufficientPrivilege:
                problems.append(f"cannot check owner {owner}: no SELECT on {referenced}, "
                                f"which {table.name}.{column.name} references")
                continue
            if not found:
                problems.append(f"owner {owner} has no row in {referenced} "
                                f"({table.name}.{column.name} references {referenced}({referenced_column}))")
    return problems


def ensure_owner(conn: psycopg.Connection, contract: Contract, owner: str | UUID | None) -> UUID:
    """The owner as a UUID, or OwnerRefused naming why it cannot be written."""
    parsed = parse_owner(owner)
    if problems := owner_refusals(conn, contract, parsed):
        raise OwnerRefused("owner refused, nothing written: " + "; ".join(problems))
    return parsed
