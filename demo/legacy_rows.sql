-- Batch jobs the app wrote before its status vocabulary changed: every legacy status appears.
INSERT INTO batch_jobs (name, status, priority, tier, total_items, completed_items, successful_items,
                        failed_items, error_handling, started_at, completed_at)
VALUES
    ('legacy import: career topics', 'pending', 'normal', 'template', 24, 0, 0, 0, 'continue', NULL, NULL),
    ('legacy import: cash-flow topics', 'pending', 'high', 'template', 24, 0, 0, 0, 'stop', NULL, NULL),
    ('legacy nightly batch', 'running', 'normal', 'edge_case', 24, 10, 9, 1, 'continue', now() - interval '2 hours', NULL),
    ('legacy paused batch', 'paused', 'low', 'template', 24, 12, 12, 0, 'continue', now() - interval '3 days', NULL),
    ('legacy finished batch', 'completed', 'normal', 'template', 24, 24, 23, 1, 'continue',
        now() - interval '5 days', now() - interval '5 days' + interval '40 minutes'),
    ('legacy broken batch', 'failed', 'normal', 'template', 24, 3, 0, 3, 'stop',
        now() - interval '4 days', now() - interval '4 days' + interval '1 minute'),
    ('legacy cancelled batch', 'cancelled', 'normal', 'scenario', 24, 0, 0, 0, 'continue', NULL, NULL);
