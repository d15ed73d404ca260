"""The audit needs nothing but read access: it runs as a role that can only connect and look."""

import uuid

import psycopg
from psycopg import sql

from assets.audit.contract import load_contract
from assets.audit.findings import run_audit


def test_audit_as_a_read_only_role(legacy_db):
    role = f"bulkgen_reader_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(legacy_db, autocommit=True) as conn:
        with psycopg.connect(legacy_db) as owner:
            as_owner = run_audit(owner, load_contract())
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
        try:
            conn.execute(sql.SQL("REVOKE ALL ON SCHEMA public FROM PUBLIC"))
            conn.execute(sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(sql.Identifier(role)))
            info = psycopg.conninfo.conninfo_to_dict(legacy_db)
            with psycopg.connect(psycopg.conninfo.make_conninfo(**{**info, "user": role})) as reader:
                assert not reader.execute("SELECT has_table_privilege('batch_jobs', 'SELECT')").fetchone()[0]
                as_reader = run_audit(reader, load_contract())
        finally:
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
    assert as_reader == as_owner
    assert {(f.table, f.column) for f in as_reader if f.kind == "rejected_values"} == {
        ("batch_jobs", "status"), ("batch_items", "status")
    }
