"""Which privileges the current role lacks on a table: the one checker the gate and the migration share."""

from __future__ import annotations

from collections.abc import Iterable

import psycopg
from psycopg import sql

# Not a grantable privilege: membership in the table's owning role, which ALTER TABLE needs.
OWNERSHIP = "OWNERSHIP"


def lacking_privileges(conn: psycopg.Connection, schema: str, table: str, privileges: Iterable[str]) -> list[str]:
    """The privileges (SELECT, INSERT, ..., or OWNERSHIP) the current role lacks on `schema.table`, in order."""
    name = sql.Identifier(schema, table).as_string(conn)
    lacking = []
    for privilege in privileges:
        if privilege == OWNERSHIP:
            query = "SELECT pg_has_role((SELECT relowner FROM pg_class WHERE oid = %s::regclass), 'USAGE')"
            held = conn.execute(query, [name]).fetchone()[0]
        else:
            held = conn.execute("SELECT has_table_privilege(%s::regclass, %s)", [name, privilege]).fetchone()[0]
        if not held:
            lacking.append(privilege)
    return lacking
