"""Read the live catalog for the contracted tables only: the audit costs O(contract), not O(catalog).

Plain catalog queries rather than SQLAlchemy's inspector: one round trip covers every
contracted table, and we need what the inspector flattens (typmods, domains, enum labels,
the columns a CHECK constrains, NOT VALID). CHECK text is what `pg_get_constraintdef` prints,
built from the query's own snapshot so that concurrent DDL cannot tear it, which pglast parses
(the inspector's `sqltext` strips parentheses by regex).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg
from psycopg.rows import dict_row

from assets.audit.contract import Contract

# pg base type name -> contract type family
_FAMILIES = {
    "text": "text", "varchar": "text", "bpchar": "text", "name": "text", "citext": "text",
    "int2": "integer", "int4": "integer", "int8": "integer",
    "numeric": "numeric", "float4": "numeric", "float8": "numeric",
    "bool": "boolean", "uuid": "uuid", "json": "json", "jsonb": "json",
    "timestamp": "timestamp", "timestamptz": "timestamp", "date": "date",
}


@dataclass(frozen=True)
class LiveColumn:
    name: str
    type: str  # format_type(), e.g. "character varying(20)"
    family: str  # contract family, "enum", an array's as "<element family>[]", or the pg type name when it has none
    not_null: bool
    enum_labels: tuple[str, ...] | None


@dataclass(frozen=True)
class CheckConstraint:
    name: str
    definition: str  # pg_get_constraintdef(), e.g. "CHECK ((status = ANY (...))) NOT VALID"
    columns: tuple[str, ...]  # the columns it constrains (conkey)
    validated: bool


@dataclass
class LiveTable:
    name: str
    columns: dict[str, LiveColumn] = field(default_factory=dict)
    checks: list[CheckConstraint] = field(default_factory=list)

    def checks_on(self, column: str) -> list[CheckConstraint]:
        return [c for c in self.checks if column in c.columns]


_COLUMNS_SQL = """
SELECT c.relname AS table_name, a.attname AS column_name,
       format_type(a.atttypid, a.atttypmod) AS type_sql,
       bt.typname AS base_type, bt.typtype AS base_kind, bt.typcategory AS base_category,
       (SELECT ebt.typname FROM pg_type et
          JOIN pg_type ebt ON ebt.oid = CASE WHEN et.typtype = 'd' THEN et.typbasetype ELSE et.oid END
         WHERE et.oid = bt.typelem AND bt.typcategory = 'A') AS element_type,
       a.attnotnull AS not_null,
       (SELECT array_agg(e.enumlabel::text ORDER BY e.enumsortorder)
          FROM pg_enum e WHERE e.enumtypid = bt.oid) AS enum_labels
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
  JOIN pg_type t ON t.oid = a.atttypid
  JOIN pg_type bt ON bt.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
 WHERE n.nspname = %(schema)s AND c.relname = ANY(%(tables)s) AND c.relkind IN ('r', 'p')
 ORDER BY c.relname, a.attnum
"""

_CHECKS_SQL = """
SELECT c.relname AS table_name, con.conname AS name,
       -- what pg_get_constraintdef(con.oid) prints, from this snapshot's row rather than its cache lookup by OID
       -- (which sees a CHECK dropped by a concurrent migration that committed during this query as gone)
       'CHECK (' || pg_get_expr(con.conbin, con.conrelid) || ')'
       || CASE WHEN con.connoinherit THEN ' NO INHERIT' ELSE '' END
       || CASE WHEN to_jsonb(con) ->> 'conenforced' = 'false' THEN ' NOT ENFORCED'  -- PostgreSQL 18+
               WHEN NOT con.convalidated THEN ' NOT VALID' ELSE '' END AS definition,
       con.convalidated AS validated,
       ARRAY(SELECT a.attname::text FROM pg_attribute a
              WHERE a.attrelid = con.conrelid AND a.attnum = ANY(con.conkey)
              ORDER BY a.attnum) AS columns
  FROM pg_constraint con
  JOIN pg_class c ON c.oid = con.conrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = %(schema)s AND c.relname = ANY(%(tables)s) AND con.contype = 'c'
 ORDER BY c.relname, con.conname
"""

# One `LIKE` per scope pattern, OR'ed: each literal pattern becomes a range scan of pg_class's name
# index (relname is `name`, C collation), where `LIKE ANY(array)` would scan the whole catalog.
_UNUSED_TABLES_SQL = """
SELECT c.relname AS table_name,
       ARRAY(SELECT a.attname::text FROM pg_attribute a
              WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
              ORDER BY a.attnum) AS columns
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = %(schema)s AND c.relkind IN ('r', 'p')
   AND ({scope}) AND NOT (c.relname = ANY(%(tables)s))
 ORDER BY c.relname
"""


def read_catalog(conn: psycopg.Connection, contract: Contract) -> dict[str, LiveTable]:
    """The live shape of every contracted table that exists, keyed by table name."""
    params = {"schema": contract.schema, "tables": [t.name for t in contract.tables]}
    tables: dict[str, LiveTable] = {}
    with conn.cursor(row_factory=dict_row) as cur:
        for row in cur.execute(_COLUMNS_SQL, params):
            table = tables.setdefault(row["table_name"], LiveTable(row["table_name"]))
            table.columns[row["column_name"]] = LiveColumn(
                name=row["column_name"],
                type=row["type_sql"],
                family=_family(row),
                not_null=row["not_null"],
                enum_labels=tuple(row["enum_labels"]) if row["enum_labels"] else None,
            )
        for row in cur.execute(_CHECKS_SQL, params):
            tables[row["table_name"]].checks.append(
                CheckConstraint(row["name"], row["definition"], tuple(row["columns"]), row["validated"])
            )
    return tables


def read_unused_tables(conn: psycopg.Connection, contract: Contract) -> dict[str, list[str]]:
    """Tables in the contract's scope that the contract never names, with their real columns."""
    if not contract.scope:
        return {}
    params = {
        "schema": contract.schema,
        "tables": [t.name for t in contract.tables],
        **{f"scope{i}": pattern for i, pattern in enumerate(contract.scope)},
    }
    likes = " OR ".join(f"c.relname LIKE %(scope{i})s" for i in range(len(contract.scope)))
    query = _UNUSED_TABLES_SQL.format(scope=likes)
    with conn.cursor(row_factory=dict_row) as cur:
        return {row["table_name"]: row["columns"] for row in cur.execute(query, params)}


def _family(row: dict) -> str:
    if row["base_kind"] == "e":
        return "enum"
    if row["base_category"] == "A":
        return f"{_FAMILIES.get(row['element_type'], row['element_type'])}[]"
    return _FAMILIES.get(row["base_type"], row["base_type"])
