-- Items per topic of each job, beside the active personas × active emotional arcs.
SELECT j.id AS job_id, t.topic, count(b.id) AS items, e.expected
  FROM batch_jobs j
 CROSS JOIN LATERAL jsonb_array_elements_text(j.shared_parameters -> 'topics') AS t(topic)
 CROSS JOIN (SELECT (SELECT count(*) FROM personas WHERE is_active)
                    * (SELECT count(*) FROM emotional_arcs WHERE is_active) AS expected) AS e
  LEFT JOIN batch_items b ON b.batch_job_id = j.id AND b.topic = t.topic
 WHERE j.id = ANY(%(jobs)s::uuid[])
 GROUP BY j.id, t.topic, e.expected
 ORDER BY j.id, t.topic
