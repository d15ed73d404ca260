-- (topic, persona, arc) triples a job holds more than once, with the items that repeat them.
SELECT batch_job_id AS job_id, topic, parameters ->> 'persona_key' AS persona, parameters ->> 'arc_key' AS arc,
       array_agg(id ORDER BY position) AS item_ids
  FROM batch_items
 WHERE batch_job_id = ANY(%(jobs)s::uuid[])
 GROUP BY batch_job_id, topic, parameters ->> 'persona_key', parameters ->> 'arc_key'
HAVING count(*) > 1
 ORDER BY 1, 2, 3, 4
