-- Two costs that grew with stored rows inside the write lock.
--
-- 1. History trimming. Migration 0008's row trigger on cereal_workflow_results
--    rescanned the whole event history of the deleted run's name pair for
--    every deleted row, and a schedule reuses one pair for every run: trimming
--    2 001 runs of an 11 001-run schedule held the lock for half a minute. A
--    finished run now records its instance's id (instance_id), and the sweep
--    deletes a trimmed run's history by that id (the history index's
--    (workflow_name, instance_name, instance_id) prefix), in bounded batches
--    that each commit. The trigger goes.
--
--    Existing runs get their id by the rule the trigger kept: per pair, the
--    newest finished runs with history match the newest results, one to one
--    (runs of one pair are sequential; instance ids and result ids both grow).
--    A result left unmatched (stored before 0008) has no history: NULL.
--
-- 2. Task claims. The ready index was (task_name, id, start_after) and a claim
--    took the lowest ids among due tasks, so it stepped over every task not yet
--    due (delayed, or waiting out a retry backoff). The index becomes
--    (task_name, start_after, id) and a claim takes the earliest due first
--    (PostgreSQL's order: for a task enqueued without delay start_after is its
--    enqueue time), so it reads only due entries.

ALTER TABLE cereal_workflow_results ADD COLUMN instance_id INTEGER;

DROP TRIGGER cereal_workflow_results_trim_history;

CREATE TEMP TABLE cereal_run_links (
    result_id   INTEGER PRIMARY KEY,
    instance_id INTEGER NOT NULL
);

INSERT INTO temp.cereal_run_links (result_id, instance_id)
SELECT r.id, f.instance_id
FROM (
    SELECT id, workflow_name, instance_name,
           row_number() OVER (PARTITION BY workflow_name, instance_name ORDER BY id DESC) AS age
    FROM cereal_workflow_results
) AS r
JOIN (
    SELECT workflow_name, instance_name, instance_id,
           row_number() OVER (PARTITION BY workflow_name, instance_name
                              ORDER BY instance_id DESC) AS age
    FROM (
        SELECT DISTINCT h.workflow_name, h.instance_name, h.instance_id
        FROM cereal_event_history AS h
        WHERE NOT EXISTS (
            SELECT 1 FROM cereal_workflow_instances AS i WHERE i.id = h.instance_id)
    )
) AS f
  ON f.workflow_name = r.workflow_name AND f.instance_name = r.instance_name AND f.age = r.age;

UPDATE cereal_workflow_results
SET instance_id = (
    SELECT l.instance_id FROM temp.cereal_run_links AS l
    WHERE l.result_id = cereal_workflow_results.id)
WHERE id IN (SELECT result_id FROM temp.cereal_run_links);

-- history of finished runs that no kept result matches (the trigger would have
-- dropped it at the next trim); none is left behind for ever
DELETE FROM cereal_event_history
WHERE instance_id NOT IN (SELECT id FROM cereal_workflow_instances)
  AND instance_id NOT IN (SELECT instance_id FROM temp.cereal_run_links);

DROP TABLE temp.cereal_run_links;

DROP INDEX cereal_tasks_ready;

-- claims: due tasks of one name, earliest due first; delayed ones sort after now
CREATE INDEX cereal_tasks_ready
    ON cereal_tasks (task_name, start_after, id)
    WHERE state = 'queued';
