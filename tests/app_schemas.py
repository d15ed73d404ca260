"""Schemas of our own drawn from the facts about the app's production database (DESIGN.md, issue 14).

`supabase_schema(lists)`: Supabase's roles (`anon`, `authenticated`, `service_role`), a stand-in
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

_SUPABASE = """
CREATE SCHEMA auth;
CREATE TABLE auth.users (id uuid PRIMARY KEY, email text);
-- Supabase's auth.uid(): the subject of the request's JWT, as PostgREST sets it per request.
CREATE FUNCTION auth.uid() RETURNS uuid LANGUAGE sql STABLE AS
    $$ SELECT nullif(current_setting('request.jwt.claim.sub', true), '')::uuid $$;
GRANT USAGE ON SCHEMA auth TO anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION auth.uid() TO anon, authenticated, service_role;

CREATE TABLE user_profiles (
    id uuid PRIMARY KEY REFERENCES auth.users (id) ON DELETE CASCADE,
    full_name text,
    role text NOT NULL DEFAULT 'reviewer',
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE personas (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    persona_key text NOT NULL UNIQUE,
    name text NOT NULL,
    archetype text NOT NULL,
    demographics jsonb,
    financial_background text,
    communication_style text,
    emotional_baseline text,
    typical_questions {list},
    common_concerns {list},
    language_patterns {list},
    is_active boolean NOT NULL DEFAULT true,
    created_at timestamptz DEFAULT now(),
    updated_at timestamptz DEFAULT now()
);

CREATE TABLE emotional_arcs (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    arc_key text NOT NULL UNIQUE,
    name text NOT NULL,
    tier text NOT NULL DEFAULT 'template',
    starting_emotion text NOT NULL,
    ending_emotion text NOT NULL,
    typical_turn_count_min integer NOT NULL DEFAULT 3,
    typical_turn_count_max integer NOT NULL DEFAULT 6,
    arc_strategy text,
    conversation_category text,
    key_principles {list},
    characteristic_phrases {list},
    response_techniques {list},
    avoid_tactics {list},
    complexity_baseline integer,
    is_active boolean NOT NULL DEFAULT true,
    created_at timestamptz DEFAULT now(),
    updated_at timestamptz DEFAULT now()
);

CREATE TABLE training_topics (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    topic_key text NOT NULL UNIQUE,
    name text NOT NULL,
    description text,
    category text,
    complexity_level text,
    typical_question_examples {list},
    is_active boolean NOT NULL DEFAULT true,
    created_at timestamptz DEFAULT now(),
    updated_at timestamptz DEFAULT now()
);

CREATE TABLE conversations (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    conversation_id text NOT NULL UNIQUE,
    conversation_name text,
    persona_id uuid REFERENCES personas (id),
    emotional_arc_id uuid REFERENCES emotional_arcs (id),
    training_topic_id uuid REFERENCES training_topics (id),
    persona_key text,
    emotional_arc_key text,
    topic_key text,
    tier text CHECK (tier IN ('template', 'scenario', 'edge_case')),
    status text NOT NULL DEFAULT 'pending_review'
        CHECK (status IN ('generated', 'pending_review', 'approved', 'rejected', 'needs_revision', 'archived')),
    processing_status text DEFAULT 'pending'
        CHECK (processing_status IN ('pending', 'processing', 'completed', 'failed')),
    parameters jsonb NOT NULL DEFAULT '{{}}',
    turn_count integer,
    total_tokens integer NOT NULL DEFAULT 0,
    quality_score numeric(4, 2),
    starting_emotion text,
    ending_emotion text,
    file_path text,
    file_size bigint,
    storage_bucket text,
    reviewed_by uuid REFERENCES user_profiles (id),
    review_notes text,
    created_by uuid REFERENCES user_profiles (id),
    is_active boolean DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE batch_jobs (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name text NOT NULL,
    job_type text NOT NULL DEFAULT 'generation',
    status text NOT NULL DEFAULT 'queued'
        CHECK (status IN ('queued', 'processing', 'paused', 'completed', 'failed', 'cancelled')),
    priority text NOT NULL DEFAULT 'normal' CHECK (priority IN ('low', 'normal', 'high')),
    total_items integer NOT NULL DEFAULT 0,
    completed_items integer NOT NULL DEFAULT 0,
    failed_items integer NOT NULL DEFAULT 0,
    successful_items integer NOT NULL DEFAULT 0,
    tier text CHECK (tier IN ('template', 'scenario', 'edge_case')),
    shared_parameters jsonb NOT NULL DEFAULT '{{}}',
    concurrent_processing integer NOT NULL DEFAULT 3,
    error_handling text NOT NULL DEFAULT 'continue' CHECK (error_handling IN ('stop', 'continue')),
    created_by uuid REFERENCES user_profiles (id),
    started_at timestamptz,
    completed_at timestamptz,
    estimated_time_remaining integer,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE batch_items (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    batch_job_id uuid NOT NULL REFERENCES batch_jobs (id) ON DELETE CASCADE,
    position integer NOT NULL,
    topic text NOT NULL,
    tier text NOT NULL DEFAULT 'template',
    parameters jsonb NOT NULL DEFAULT '{{}}',
    -- still as in production: the code's 'cancelled' is refused
    status text NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'processing', 'completed', 'failed')),
    progress integer NOT NULL DEFAULT 0,
    estimated_time integer,
    conversation_id uuid REFERENCES conversations (id),
    error_message text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

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
    return _SUPABASE.format(list=LIST_TYPES[lists])


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
