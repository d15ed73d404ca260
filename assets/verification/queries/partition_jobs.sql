-- The batch job of each topic: the latest generation job whose topics include it.
SELECT DISTINCT ON (t.topic) t.topic, j.id AS job_id
  FROM unnest(%(topics)s::text[]) AS t(topic)
  JOIN batch_jobs j ON j.job_type = 'generation' AND j.shared_parameters -> 'topics' ? t.topic
 ORDER BY t.topic, j.created_at DESC, j.id
