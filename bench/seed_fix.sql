-- The seed audit's own fix (bulk-processing-audit-step-6.md, section 5), run as its author meant:
-- pasted whole into an SQL editor, so one script and one transaction. Verbatim except for the one
-- change it needs to complete: Step 3 (remap the legacy rows) runs before Step 2 (add the new
-- constraint), which otherwise fails on the rows still holding 'pending' or 'running'.

-- Step 1: Drop ALL existing status check constraints
DO $$
DECLARE
    r RECORD;
BEGIN
    FOR r IN
        SELECT conname
        FROM pg_constraint
        WHERE conrelid = 'batch_jobs'::regclass
        AND contype = 'c'
        AND pg_get_constraintdef(oid) LIKE '%status%'
    LOOP
        RAISE NOTICE 'Dropping constraint: %', r.conname;
        EXECUTE 'ALTER TABLE batch_jobs DROP CONSTRAINT ' || quote_ident(r.conname);
    END LOOP;
END $$;

-- Step 3: Update any existing records to new values (just in case)
UPDATE batch_jobs SET status = 'queued' WHERE status = 'pending';
UPDATE batch_jobs SET status = 'processing' WHERE status = 'running';

-- Step 2: Add new constraint matching codebase values
ALTER TABLE batch_jobs
ADD CONSTRAINT batch_jobs_status_check
CHECK (status IN ('queued', 'processing', 'paused', 'completed', 'failed', 'cancelled'));

-- Step 4: Document the change
COMMENT ON COLUMN batch_jobs.status IS
'Job status: queued (waiting), processing (active), paused, completed, failed, cancelled';
