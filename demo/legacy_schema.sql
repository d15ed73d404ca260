-- The application's legacy schema, as the seed audit found it in Supabase (step 6):
-- batch_jobs.status still allows the old pending/running values the code no longer writes,
-- batch_items.status lacks the 'cancelled' the code writes, batch_checkpoints is unused.

-- The app's users (in Supabase, one per auth user): a batch and its conversations belong to one.
CREATE TABLE user_profiles (
    id uuid PRIMARY KEY,
    email text NOT NULL UNIQUE,
    full_name text,
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
    typical_questions jsonb,
    common_concerns jsonb,
    language_patterns jsonb,
    is_active boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE emotional_arcs (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    arc_key text NOT NULL UNIQUE,
    name text NOT NULL,
    starting_emotion text NOT NULL,
    ending_emotion text NOT NULL,
    arc_strategy text,
    conversation_category text,
    tier text NOT NULL DEFAULT 'template' CHECK (tier IN ('template', 'scenario', 'edge_case')),
    typical_turn_count_min integer NOT NULL DEFAULT 3,
    typical_turn_count_max integer NOT NULL DEFAULT 6,
    complexity_baseline integer,
    key_principles jsonb,
    characteristic_phrases jsonb,
    response_techniques jsonb,
    avoid_tactics jsonb,
    is_active boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT emotional_arcs_turn_range_check CHECK (typical_turn_count_min <= typical_turn_count_max)
);

CREATE TABLE training_topics (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    topic_key text NOT NULL UNIQUE,
    name text NOT NULL,
    category text,
    description text,
    complexity_level text,
    typical_question_examples jsonb,
    is_active boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
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
    tier text NOT NULL DEFAULT 'template' CHECK (tier IN ('template', 'scenario', 'edge_case')),
    status text NOT NULL DEFAULT 'pending_review'
        CHECK (status IN ('generated', 'pending_review', 'approved', 'rejected', 'archived')),
    processing_status text CHECK (processing_status IN ('pending', 'processing', 'completed', 'failed')),
    parameters jsonb NOT NULL DEFAULT '{}',
    turn_count integer,
    total_tokens integer NOT NULL DEFAULT 0,
    quality_score numeric(4, 2),
    starting_emotion text,
    ending_emotion text,
    file_path text,
    file_size bigint,
    storage_bucket text,
    created_by uuid REFERENCES user_profiles (id),
    is_active boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE batch_jobs (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name text NOT NULL,
    job_type text NOT NULL DEFAULT 'generation',
    status text NOT NULL DEFAULT 'pending',
    priority text NOT NULL DEFAULT 'normal',
    total_items integer NOT NULL DEFAULT 0,
    completed_items integer NOT NULL DEFAULT 0,
    failed_items integer NOT NULL DEFAULT 0,
    successful_items integer NOT NULL DEFAULT 0,
    tier text,
    shared_parameters jsonb NOT NULL DEFAULT '{}',
    concurrent_processing integer NOT NULL DEFAULT 3,
    error_handling text NOT NULL DEFAULT 'continue',
    created_by uuid REFERENCES user_profiles (id),
    started_at timestamptz,
    completed_at timestamptz,
    estimated_time_remaining integer,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT batch_jobs_status_check
        CHECK (status IN ('pending', 'running', 'paused', 'completed', 'failed', 'cancelled')),
    CONSTRAINT batch_jobs_priority_check CHECK (priority IN ('low', 'normal', 'high')),
    CONSTRAINT batch_jobs_tier_check CHECK (tier IN ('template', 'scenario', 'edge_case')),
    CONSTRAINT batch_jobs_error_handling_check CHECK (error_handling IN ('stop', 'continue')),
    CONSTRAINT batch_jobs_concurrent_processing_check CHECK (concurrent_processing BETWEEN 1 AND 10),
    -- Unrelated to the status fix, yet its text mentions "status": the seed's LIKE '%status%' drops it.
    CONSTRAINT batch_jobs_completed_at_check
        CHECK (status <> 'completed' OR completed_at IS NOT NULL)
);

CREATE TABLE batch_items (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    batch_job_id uuid NOT NULL REFERENCES batch_jobs (id) ON DELETE CASCADE,
    position integer NOT NULL,
    topic text NOT NULL,
    tier text NOT NULL DEFAULT 'template' CHECK (tier IN ('template', 'scenario', 'edge_case')),
    parameters jsonb NOT NULL DEFAULT '{}',
    status text NOT NULL DEFAULT 'queued'
        CHECK (status IN ('queued', 'processing', 'completed', 'failed')),
    progress integer NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 100),
    estimated_time integer,
    conversation_id uuid REFERENCES conversations (id),
    error_message text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (batch_job_id, position)
);

CREATE INDEX batch_items_batch_job_id_status_idx ON batch_items (batch_job_id, status);

-- Created for a checkpoint feature that was never built; no code names it.
CREATE TABLE batch_checkpoints (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    job_id uuid REFERENCES batch_jobs (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
