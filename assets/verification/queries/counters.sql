-- Each job's counters beside the items they count.
SELECT j.id AS job_id, j.status, j.total_items, j.completed_items, j.successful_items, j.failed_items,
       count(b.id) AS items,
       count(b.id) FILTER (WHERE b.status = 'completed') AS completed,
       count(b.id) FILTER (WHERE b.status = 'failed') AS failed
  FROM batch_jobs j
  LEFT JOIN batch_items b ON b.batch_job_id = j.id
 WHERE j.id = ANY(%(jobs)s::uuid[])
 GROUP BY j.id
 ORDER BY j.id
