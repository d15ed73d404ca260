"""Schemas of our own drawn from the facts about the app's production database (DESIGN.md, issue 14).

`supabase_schema(lists)`: the demo's tables moved to production's shape, with Supabase's roles (`anon`, `authenticated`, `service_role`), a stand-in
`auth.uid()` that reads the request's JWT subject as Supabase's does, `user_profiles` referencing
`auth.users`, `created_by` on `batch_jobs` and `conversations` referencing `user_profiles`, and RLS
that shows a user only their own rows (`auth.uid() = created_by`; batch items through their job).
The list columns are `text[]` (as production holds them) or `jsonb`. As in production,
`batch_items.status` still refuses `cancelled`: the one true error the audit must report.

`required_only_schema(contract)`: every contracted table with only the columns the contract does
not call optional, and no constraint the contract does not need.
"""

from __future__ import annotations

from psycopg import sql

from assets.audit.contract import Contract
from pipelines.demo import DEMO_DIR

# Roles are per server, not per database: created once, whichever test gets there first.
SUPABASE_ROLES = """
DO $$
BEGIN
    CREATE ROLE anon NOLOGIN;
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
END $$;
DO $$
BEGIN
    CREATE ROLE authenticated NOLOGIN;
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
END $$;
DO $$
BEGIN
    CREATE ROLE service_role NOLOGIN BYPASSRLS;
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
END $$;
"""

# The demo's schema (demo/legacy_schema.sql) moved to production's shape: users in auth.users, their profiles
# referencing them, batch_jobs.status fixed (only batch_items.status still refuses 'cancelled'), the review
# columns, list columns as {list}, and RLS over the owner's rows.
_SUPABASE = """
CREATE SCHEMA auth;
CREATE TABLE auth.users (id uuid PRIMARY KEY, email text);
-- Supabase's auth.uid(): the subject of the request's JWT, as PostgREST sets it per request.
CREATE FUNCTION auth.uid() RETURNS uuid LANGUAGE sql STABLE AS
    $$ SELECT nullif(current_setting('request.jwt.claim.sub', true), '')::uuid $$;
GRANT USAGE ON SCHEMA auth TO anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION auth.uid() TO anon, authenticated, service_role;

DROP TABLE batch_checkpoints;
ALTER TABLE user_profiles DROP COLUMN email, ADD FOREIGN KEY (id) REFERENCES auth.users (id) ON DELETE CASCADE;
ALTER TABLE batch_jobs DROP CONSTRAINT batch_jobs_status_check, ALTER COLUMN status SET DEFAULT 'queued',
    ADD CHECK (status IN ('queued', 'processing', 'paused', 'completed', 'failed', 'cancelled'));
ALTER TABLE conversations DROP CONSTRAINT conversations_status_check,
    ADD CHECK (status IN ('generated', 'pending_review', 'approved', 'rejected', 'needs_revision', 'archived')),
    ADD COLUMN reviewed_by uuid REFERENCES user_profiles (id), ADD COLUMN review_notes text;
ALTER TABLE personas ALTER COLUMN typical_questions TYPE {list} USING NULL,
    ALTER COLUMN common_concerns TYPE {list} USING NULL, ALTER COLUMN language_patterns TYPE {list} USING NULL;
ALTER TABLE emotional_arcs ALTER COLUMN key_principles TYPE {list} USING NULL,
    ALTER COLUMN characteristic_phrases TYPE {list} USING NULL,
    ALTER COLUMN response_techniques TYPE {list} USING NULL, ALTER COLUMN avoid_tactics TYPE {list} USING NULL;
ALTER TABLE training_topics ALTER COLUMN typical_question_examples TYPE {list} USING NULL;

ALTER TABLE conversations ENABLE ROW LEVEL SECURITY;
ALTER TABLE batch_jobs ENABLE ROW LEVEL SECURITY;
ALTER TABLE batch_items ENABLE ROW LEVEL SECURITY;
CREATE POLICY conversations_own ON conversations FOR ALL TO authenticated
    USING (auth.uid() = created_by) WITH CHECK (auth.uid() = created_by);
CREATE POLICY batch_jobs_own ON batch_jobs FOR ALL TO authenticated
    USING (auth.uid() = created_by) WITH CHECK (auth.uid() = created_by);
CREATE POLICY batch_items_own ON batch_items FOR ALL TO authenticated
    USING (EXISTS (SELECT FROM batch_jobs j WHERE j.id = batch_items.batch_job_id AND j.created_by = auth.uid()));
GRANT USAGE ON SCHEMA public TO anon, authenticated, service_role;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO authenticated;
GRANT ALL ON ALL TABLES IN SCHEMA public TO service_role;
"""

LIST_TYPES = {"text[]": "text[]", "jsonb": "jsonb"}


def supabase_schema(lists: str) -> str:
    """The app's tables as in Supabase, list columns as `lists` (`text[]` or `jsonb`); run after SUPABASE_ROLES."""
    return (DEMO_DIR / "legacy_schema.sql").read_text() + _SUPABASE.format(list=LIST_TYPES[lists])


def add_user(conn, user_id: str, name: str) -> None:
    """An app user: an auth user and its profile, as Supabase's sign-up trigger makes them."""
    conn.execute("INSERT INTO auth.users (id, email) VALUES (%s, %s)", [user_id, f"{name}@example.invalid"])
    conn.execute("INSERT INTO user_profiles (id, full_name) VALUES (%s, %s)", [user_id, name])


_SQL_TYPES = {"text": "text", "integer": "integer", "numeric": "numeric", "boolean": "boolean", "uuid": "uuid",
              "json": "jsonb", "timestamp": "timestamptz", "date": "date"}
_DEFAULTS = {"integer": "DEFAULT 0", "timestamp": "DEFAULT now()", "json": "DEFAULT '{}'", "boolean": "DEFAULT true"}


def required_only_schema(contract: Contract) -> sql.Composed:
    """Every contracted table with only its required columns: `id` the key, counters from 0, times from now(),
    flags true."""
    statements = []
    for table in contract.tables:
        columns = []
        for column in table.columns:
            if column.optional:
                continue
            spec = "PRIMARY KEY DEFAULT gen_random_uuid()" if column.name == "id" else _DEFAULTS.get(column.type, "")
            columns.append(sql.SQL("{} {} {}").format(sql.Identifier(column.name), sql.SQL(_SQL_TYPES[column.type]),
                                                      sql.SQL(spec)))
        statements.append(sql.SQL("CREATE TABLE {} ({})").format(
            sql.Identifier(contract.schema, table.name), sql.SQL(", ").join(columns)))
    return sql.SQL(";\n").join(statements)
