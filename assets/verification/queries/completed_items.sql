-- Every completed item, with the conversation it points at (NULL when that row does not exist).
SELECT b.id AS item_id, b.batch_job_id AS job_id, b.conversation_id, c.id AS conversation, c.file_path
  FROM batch_items b
  LEFT JOIN conversations c ON c.id = b.conversation_id
 WHERE b.batch_job_id = ANY(%(jobs)s::uuid[]) AND b.status = 'completed'
 ORDER BY b.batch_job_id, b.position
