"""Reading the live state a plan is made from: the contracted value-set columns the audit finds wanting,
their checks (table and domain) judged one conjunct at a time, their type, their rows and the views over them.

Everything here reads; it runs inside the planner's read-only transaction.
"""

from __future__ import annotations

from collections.abc import Iterable

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from assets.audit.catalog import CheckConstraint, LiveTable, read_catalog
from assets.audit.contract import ColumnContract, Contract
from assets.audit.findings import run_audit
from assets.audit.verdicts import check_conjuncts, judge_value_set, parse_check
from assets.migration.ledger import LEDGER_TABLE, ledger_exists
from assets.migration.model import (
    ColumnState, Conjunct, DependentView, Domain, EnumType, JudgedCheck, MissingPrivileges,
)
from assets.migration.settings import MigrationSettings
from assets.migration.statements import exists
from assets.privileges import OWNERSHIP, lacking_privileges

_TYPE_SQL = """
SELECT a.attnum, t.oid AS type_oid, t.typtype,
       format('%%I.%%I', tn.nspname, t.typname) AS type_name,
       format_type(t.typbasetype, t.typtypmod) AS base_type,
       CASE WHEN a.atttypid = 'varchar'::regtype AND a.atttypmod > 0 THEN a.atttypmod - 4 END AS varchar_length,
       (SELECT array_agg(e.enumlabel::text ORDER BY e.enumsortorder) FROM pg_enum e WHERE e.enumtypid = t.oid)
           AS labels
  FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid JOIN pg_namespace tn ON tn.oid = t.typnamespace
 WHERE a.attrelid = %(table)s::regclass AND a.attname = %(column)s
"""

# The table columns of a type (or of its array type), in any schema: who else an enum or a domain changes for
# (a partition is its table's, not another user).
_TYPE_USERS_SQL = """
SELECT n.nspname, c.relname, a.attname::text
  FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE a.atttypid IN (%(type)s, (SELECT typarray FROM pg_type WHERE oid = %(type)s))
   AND a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'f') AND NOT c.relispartition
 ORDER BY 1, 2, 3
"""

_DOMAIN_CHECKS_SQL = """
SELECT conname, pg_get_constraintdef(oid) AS definition, convalidated
  FROM pg_constraint WHERE contypid = %s AND contype = 'c' ORDER BY conname
"""

# Every view reading the column, directly or through other views, deepest last; its definition is printed
# with the search path emptied, so every name in it is qualified and it means the same when created again.
_VIEWS_SQL = """
WITH RECURSIVE readers(oid, depth) AS (
    SELECT r.ev_class, 1
      FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid
     WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass
       AND d.refobjid = %(table)s::regclass AND d.refobjsubid = %(attnum)s AND r.ev_class <> d.refobjid
    UNION
    SELECT r.ev_class, readers.depth + 1
      FROM readers JOIN pg_depend d ON d.refobjid = readers.oid AND d.refclassid = 'pg_class'::regclass
      JOIN pg_rewrite r ON r.oid = d.objid AND d.classid = 'pg_rewrite'::regclass
     WHERE r.ev_class <> readers.oid
)
SELECT format('%%I.%%I', n.nspname, c.relname) AS name,
       pg_get_viewdef(c.oid) AS definition, c.reloptions, pg_get_userbyid(c.relowner) AS owner,
       ARRAY(SELECT format('GRANT %%s ON %%I.%%I TO %%s%%s', g.privilege_type, n.nspname, c.relname,
                           CASE WHEN g.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(g.grantee)) END,
                           CASE WHEN g.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END)
               FROM aclexplode(c.relacl) g WHERE g.grantee <> c.relowner) AS grants,
       ARRAY(SELECT format('COMMENT ON %%s %%s IS %%L',
                           CASE WHEN ds.objsubid = 0 THEN 'VIEW ' || format('%%I.%%I', n.nspname, c.relname)
                                ELSE 'COLUMN ' || format('%%I.%%I.%%I', n.nspname, c.relname,
                                      (SELECT attname FROM pg_attribute WHERE attrelid = c.oid
                                          AND attnum = ds.objsubid)) END, '', ds.description)
               FROM pg_description ds WHERE ds.objoid = c.oid AND ds.classoid = 'pg_class'::regclass) AS comments,
       c.relkind = 'm' OR EXISTS (SELECT FROM pg_trigger WHERE tgrelid = c.oid)
           OR EXISTS (SELECT FROM pg_rewrite WHERE ev_class = c.oid AND rulename <> '_RETURN') AS unrestorable,
       max(readers.depth) AS depth
  FROM readers JOIN pg_class c ON c.oid = readers.oid JOIN pg_namespace n ON n.oid = c.relnamespace
 GROUP BY c.oid, n.oid
 ORDER BY max(readers.depth), 1
"""


def read_states(conn: psycopg.Connection, contract: Contract, settings: MigrationSettings,
                ) -> tuple[list[ColumnState], list[str]]:
    """The states of the columns to fix (chosen from the audit's verdicts) and the contracted ones that are absent.

    Runs in a read-only transaction that is rolled back.
    """
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
        absent, wanted = [], []  # absent: the missing tables and columns, in the contract's order
        for table, col in contract.value_set_columns():
            if table.name in live and col.name not in live[table.name].columns and col.optional:
                continue  # the code writes an optional column only where it exists: nothing to fix
            if table.name not in live or col.name not in live[table.name].columns:
                absent.append(f"{contract.schema}.{table.name}" + (f".{col.name}" if table.name in live else ""))
            elif ((table.name, col.name) in refused or _unfinished(live[table.name], col.name)
                  or legacy_allowed.get((table.name, col.name))):
                wanted.append((table, col))
        require_privileges(conn, contract.schema, read=[table.name for table, _ in wanted])
        states = [
            read_column_state(conn, contract, live[table.name], col)
            for table, col in wanted
            if (table.name, col.name) in refused
            or _unfinished(live[table.name], col.name)
            or _holds_any(conn, contract.schema, table.name, col.name, legacy_allowed.get((table.name, col.name)))
        ]
    return states, list(dict.fromkeys(absent))


def require_privileges(conn: psycopg.Connection, schema: str, *, read: Iterable[str] = (),
                       alter: Iterable[str] = (), update: Iterable[str] = (), ledger: bool = False) -> None:
    """Raise MissingPrivileges naming each privilege the current role lacks: SELECT on the tables it reads,
    ownership of those whose constraints it alters, UPDATE where it remaps rows, and what the ledger needs."""
    needs = [(read, "SELECT", "needs SELECT on {} to read its rows"),
             (alter, OWNERSHIP, "must own {} to alter its constraints"),
             (update, "UPDATE", "needs UPDATE on {} to remap its legacy rows")]
    lacks = [problem.format(f"{schema}.{table}")
             for tables, privilege, problem in needs for table in dict.fromkeys(tables)
             if lacking_privileges(conn, schema, table, [privilege])]
    if ledger:
        if not ledger_exists(conn, schema):
            if not conn.execute("SELECT has_schema_privilege(%s, 'CREATE')", [schema]).fetchone()[0]:
                lacks.append(f"needs CREATE on schema {schema} to create the ledger {LEDGER_TABLE}")
        elif lacking_privileges(conn, schema, LEDGER_TABLE, ["INSERT"]):
            lacks.append(f"needs INSERT on {schema}.{LEDGER_TABLE} to record each step")
    if lacks:
        (user,) = conn.execute("SELECT current_user").fetchone()
        raise MissingPrivileges(f"role {user} lacks privileges the fix uses, nothing was run: " + "; ".join(lacks))


def read_column_state(conn: psycopg.Connection, contract: Contract, live: LiveTable,
                      col: ColumnContract) -> ColumnState:
    """Judge each CHECK on the column, one conjunct at a time, and count the values its rows hold (one scan)."""
    schema = contract.schema
    column = live.columns[col.name]
    table = sql.Identifier(schema, live.name)
    with conn.cursor(row_factory=dict_row) as cur:
        kind = cur.execute(_TYPE_SQL, {"table": table.as_string(conn), "column": col.name}).fetchone()
    type_refuses = tuple(judge_value_set(conn, schema, live.name, column, [], col.values).rejected)
    judgeable = tuple(v for v in col.values if v not in type_refuses)
    checks = [_judge_table_check(conn, schema, live.name, column, check, col.values, judgeable)
              for check in live.checks_on(col.name)]
    enum = domain = None
    if kind["typtype"] in ("e", "d"):
        others = [f"{n}.{t}.{c}" for n, t, c in conn.execute(_TYPE_USERS_SQL, {"type": kind["type_oid"]})
                  if not _same_contract_column(contract, n, t, c, col.values if kind["typtype"] == "d" else None)]
        if kind["typtype"] == "e":
            enum = EnumType(kind["type_name"], tuple(kind["labels"]), tuple(others))
        else:
            rows = conn.execute(_DOMAIN_CHECKS_SQL, [kind["type_oid"]]).fetchall()
            domain = Domain(kind["type_name"], kind["base_type"], tuple(others), frozenset(r[0] for r in rows))
            checks += [_judge_domain_check(conn, kind["base_type"], CheckConstraint(name, definition, (col.name,),
                                                                                    validated), col.values)
                       for name, definition, validated in rows]
    counts = conn.execute(
        sql.SQL("SELECT {c}::text, count(*) FROM {t} GROUP BY 1").format(c=sql.Identifier(col.name), t=table)
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
        varchar_length=kind["varchar_length"],
        enum=enum,
        domain=domain,
        views=_read_views(conn, table.as_string(conn), kind["attnum"]) if _may_retype(kind, col.values) else (),
    )


def _judge_table_check(conn, schema: str, table: str, column, check: CheckConstraint,
                       codes: tuple[str, ...], judgeable: tuple[str, ...]) -> JudgedCheck:
    """Codes the column's type refuses cannot be built into a row: only the others judge each conjunct."""
    verdict = judge_value_set(conn, schema, table, column, [check], judgeable)
    conjuncts = []
    for text, columns, listed in check_conjuncts(_enforced(check.definition), column.name):
        column_only = columns <= {column.name}
        refuses = column_only and bool(judge_value_set(
            conn, schema, table, column, [CheckConstraint(check.name, f"CHECK ({text})", (column.name,), True)],
            judgeable).rejected)
        conjuncts.append(Conjunct(text, columns, column_only, column_only and (refuses or listed is not None)))
    allowed = parse_check(check.definition, column.name)[1]
    rejected = tuple(v for v in codes if v in verdict.rejected or (allowed is not None and v not in allowed))
    return JudgedCheck(check, False, check.columns == (column.name,), rejected, allowed, tuple(conjuncts))


def _judge_domain_check(conn, base_type: str, check: CheckConstraint, codes: tuple[str, ...]) -> JudgedCheck:
    conjuncts, rejected = [], set()
    for text, columns, listed in check_conjuncts(_enforced(check.definition), "value"):
        refused = {v for v in codes if not conn.execute(
            sql.SQL("SELECT ({}) IS NOT FALSE FROM (SELECT {}::{} AS value) AS d").format(
                sql.SQL(text), sql.Literal(v), sql.SQL(base_type))).fetchone()[0]}
        rejected |= refused
        conjuncts.append(Conjunct(text, columns, True, bool(refused) or listed is not None))
    return JudgedCheck(check, True, True, tuple(v for v in codes if v in rejected),
                       parse_check(check.definition, "value")[1], tuple(conjuncts))


def _read_views(conn, table: str, attnum: int) -> tuple[DependentView, ...]:
    (path,) = conn.execute("SELECT set_config('search_path', '', true)").fetchone()
    try:
        with conn.cursor(row_factory=dict_row) as cur:
            rows = cur.execute(_VIEWS_SQL, {"table": table, "attnum": attnum}).fetchall()
    finally:
        conn.execute("SELECT set_config('search_path', %s, true)", [path])
    views = []
    for row in rows:
        options = f" WITH ({', '.join(row['reloptions'])})" if row["reloptions"] else ""
        create = f"CREATE VIEW {row['name']}{options} AS {row['definition'].strip().rstrip(';')}"
        owner = sql.SQL("ALTER VIEW {} OWNER TO {}").format(sql.SQL(row["name"]), sql.Identifier(row["owner"]))
        views.append(DependentView(row["name"], row["unrestorable"],
                                   (create, owner.as_string(conn), *row["grants"], *row["comments"])))
    return tuple(views)


def _may_retype(kind: dict, codes: tuple[str, ...]) -> bool:
    """Whether the plan may change the column's type: a too-short varchar, or an enum (see planning)."""
    return kind["typtype"] == "e" or (kind["varchar_length"] or 10**9) < max(map(len, codes))


def _same_contract_column(contract: Contract, schema: str, table: str, column: str,
                          codes: tuple[str, ...] | None) -> bool:
    """A contracted value-set column (with these code values, when given): a change made for one suits it."""
    if schema != contract.schema:
        return False
    return any(t.name == table and c.name == column and (codes is None or set(c.values) == set(codes))
               for t, c in contract.value_set_columns())


def _enforced(definition: str) -> str:
    return definition.removesuffix(" NOT VALID")


def _unfinished(live: LiveTable, column: str) -> bool:
    """A NOT VALID value list on the column alone: what an interrupted migration leaves behind."""
    return any(
        not c.validated and c.columns == (column,) and parse_check(c.definition, column)[1] is not None
        for c in live.checks_on(column)
    )


def _holds_any(conn: psycopg.Connection, schema: str, table: str, column: str, values: list[str] | None) -> bool:
    return bool(values) and conn.execute(exists(schema, table, column, values)).fetchone()[0]
