-- Jobs and items `processing`, each with its job's status and the Dagster run the job records.
SELECT 'job' AS kind, j.id, j.id AS job_id, j.status AS job_status, j.shared_parameters ->> 'run' AS run
  FROM batch_jobs j
 WHERE j.id = ANY(%(jobs)s::uuid[]) AND j.status = 'processing'
UNION ALL
SELECT 'item', b.id, b.batch_job_id, j.status, j.shared_parameters ->> 'run'
  FROM batch_items b
  JOIN batch_jobs j ON j.id = b.batch_job_id
 WHERE b.batch_job_id = ANY(%(jobs)s::uuid[]) AND b.status = 'processing'
 ORDER BY 1 DESC, 3, 2
