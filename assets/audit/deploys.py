"""Signs of a deploy: what changed in the catalog, the Supabase migrations, the contract, or the app's code.

The deploy sensor keeps the last `DeployState` as its cursor and re-audits when any part moves.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import psycopg

from assets.audit.code_contract import CodeContract
from assets.audit.contract import Contract

# Columns, types, nullability, defaults and every constraint of the contracted tables, hashed in SQL.
_CATALOG_FINGERPRINT_SQL = """
SELECT md5(coalesce(string_agg(part, E'\\n' ORDER BY part), ''))
  FROM (
    SELECT format('%%s.%%s %%s %%s %%s', c.relname, a.attname, format_type(a.atttypid, a.atttypmod),
                  a.attnotnull, pg_get_expr(d.adbin, d.adrelid)) AS part
      FROM pg_class c
      JOIN pg_namespace n ON n.oid = c.relnamespace
      JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
      LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
     WHERE n.nspname = %(schema)s AND c.relname = ANY(%(tables)s)
    UNION ALL
    SELECT format('%%s constraint %%s %%s', c.relname, con.conname, pg_get_constraintdef(con.oid))
      FROM pg_constraint con
      JOIN pg_class c ON c.oid = con.conrelid
      JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = %(schema)s AND c.relname = ANY(%(tables)s)
    UNION ALL
    SELECT format('%%s enum %%s', t.typname, string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder))
      FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid
      JOIN pg_namespace n ON n.oid = t.typnamespace
     WHERE n.nspname = %(schema)s
     GROUP BY t.typname
  ) parts
"""

@dataclass(frozen=True)
class DeployState:
    catalog: str  # fingerprint of the contracted tables' catalog
    migration: str | None  # latest supabase_migrations.schema_migrations version, if that table exists
    contract: str  # sha256 of the contract file
    code: str | None = None  # fingerprint of the contract extracted from the app's source, when one is audited

    def to_cursor(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_cursor(cls, cursor: str | None) -> DeployState | None:
        return cls(**json.loads(cursor)) if cursor else None

    def changes_since(self, previous: DeployState | None) -> list[str]:
        """What moved, in words for the run's tags and the sensor log; empty when nothing did."""
        if previous is None:
            return ["first look at this database"]
        moved = []
        if self.catalog != previous.catalog:
            moved.append("the catalog of the contracted tables changed")
        if self.migration != previous.migration:
            moved.append(f"new Supabase migration {self.migration}")
        if self.contract != previous.contract:
            moved.append("the contract file changed")
        if self.code != previous.code:
            moved.append("what the app's code writes changed")
        return moved


def read_deploy_state(conn: psycopg.Connection, contract: Contract, code: CodeContract | None = None) -> DeployState:
    params = {"schema": contract.schema, "tables": [t.name for t in contract.tables]}
    catalog = conn.execute(_CATALOG_FINGERPRINT_SQL, params).fetchone()[0]
    migration = None
    if conn.execute("SELECT to_regclass('supabase_migrations.schema_migrations') IS NOT NULL").fetchone()[0]:
        migration = conn.execute("SELECT max(version)::text FROM supabase_migrations.schema_migrations").fetchone()[0]
    contract_hash = hashlib.sha256(Path(contract.path).read_bytes()).hexdigest()
    return DeployState(catalog=catalog, migration=migration, contract=contract_hash,
                       code=code.fingerprint() if code else None)
