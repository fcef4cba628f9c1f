-- Per-key concurrency limits: a task may carry a concurrency key with a limit;
-- the claim leases it only while fewer than its limit of tasks with that key
-- (of any task name, workflow or run) are running. Both columns are NULL on a
-- task without a key, and on every task stored before this migration.

ALTER TABLE cereal_tasks ADD COLUMN concurrency_key TEXT;
ALTER TABLE cereal_tasks ADD COLUMN concurrency_limit INTEGER
    CHECK ((concurrency_key IS NULL) = (concurrency_limit IS NULL));

-- The claim counts the running tasks of each key it meets: only running keyed
-- tasks are indexed, so a task without a key costs the index nothing.
CREATE INDEX cereal_tasks_running_keys ON cereal_tasks (concurrency_key)
WHERE state = 'running' AND concurrency_key IS NOT NULL;

-- The claim walks the keys of ready keyed tasks (one probe per key) apart from
-- the others: with no keyed task queued under a name, this is one empty probe.
-- The ready index then holds unkeyed tasks only, so a backlog of keyed tasks
-- over their limit never slows the unkeyed claim.
CREATE INDEX cereal_tasks_ready_keys ON cereal_tasks (task_name, concurrency_key, start_after, id)
WHERE state = 'queued' AND concurrency_key IS NOT NULL;

DROP INDEX cereal_tasks_ready;

CREATE INDEX cereal_tasks_ready ON cereal_tasks (task_name, start_after, id)
WHERE state = 'queued' AND concurrency_key IS NULL;

-- A result and a dead letter keep the task's key, so a requeued dead task runs
-- under its key again; the dead-letter trigger copies them.
ALTER TABLE cereal_task_results ADD COLUMN concurrency_key TEXT;
ALTER TABLE cereal_task_results ADD COLUMN concurrency_limit INTEGER;
ALTER TABLE cereal_dead_tasks ADD COLUMN concurrency_key TEXT;
ALTER TABLE cereal_dead_tasks ADD COLUMN concurrency_limit INTEGER;

DROP TRIGGER cereal_task_results_dead;

CREATE TRIGGER cereal_task_results_dead
AFTER INSERT ON cereal_task_results
FOR EACH ROW WHEN NEW.status <> 'success'
BEGIN
    INSERT OR IGNORE INTO cereal_dead_tasks
        (task_id, instance_id, workflow_name, instance_name, task_name, parameters, status,
         error_text, error_type, error_traceback, attempts, enqueued_at, died_at,
         concurrency_key, concurrency_limit)
    SELECT NEW.task_id, NEW.instance_id, i.workflow_name, i.instance_name, NEW.task_name,
           NEW.parameters, NEW.status, NEW.error_text, NEW.error_type, NEW.error_traceback,
           NEW.attempts, NEW.enqueued_at, NEW.completed_at, NEW.concurrency_key,
           NEW.concurrency_limit
    FROM cereal_workflow_instances AS i
    WHERE i.id = NEW.instance_id;
END;

-- Where each task name's walk of its keys goes on from: a claim visits at most
-- 256 keys, so with more keys queued the next claim starts after the last key
-- the previous one visited, wrapping round, and every key has its turn. No row
-- while a claim can visit every key.
CREATE TABLE cereal_key_cursors (
    task_name TEXT PRIMARY KEY,
    after_key TEXT NOT NULL
) WITHOUT ROWID;
