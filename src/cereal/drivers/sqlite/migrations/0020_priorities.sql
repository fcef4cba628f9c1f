-- Priorities: a task has a priority from 0 (the default) to 100, each level worth a
-- minute of waiting. The claim takes due tasks in order of their ready rank,
-- start_after - 60.0 * priority, then id: higher goes first, and a task is passed
-- over only by higher ones that became due less than the difference in minutes
-- after it (aging). The ready indexes are keyed by that expression (queries write
-- it exactly so, for SQLite to match them), and keep start_after last so a claim
-- filters out tasks not yet due without reading the table: with priority 0 the
-- rank is the due time, and a task not yet due sorts after now as before.

ALTER TABLE cereal_tasks ADD COLUMN priority INTEGER NOT NULL DEFAULT 0
    CHECK (priority BETWEEN 0 AND 100);

DROP INDEX cereal_tasks_ready;

CREATE INDEX cereal_tasks_ready
ON cereal_tasks (task_name, start_after - 60.0 * priority, id, start_after)
WHERE state = 'queued' AND concurrency_key IS NULL;

DROP INDEX cereal_tasks_ready_keys;

CREATE INDEX cereal_tasks_ready_keys
ON cereal_tasks (task_name, concurrency_key, start_after - 60.0 * priority, id, start_after)
WHERE state = 'queued' AND concurrency_key IS NOT NULL;

-- A result and a dead letter keep the priority, so a requeued dead task keeps it;
-- the dead-letter trigger copies it.
ALTER TABLE cereal_task_results ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
ALTER TABLE cereal_dead_tasks ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;

DROP TRIGGER cereal_task_results_dead;

CREATE TRIGGER cereal_task_results_dead
AFTER INSERT ON cereal_task_results
FOR EACH ROW WHEN NEW.status <> 'success'
BEGIN
    INSERT OR IGNORE INTO cereal_dead_tasks
        (task_id, instance_id, workflow_name, instance_name, task_name, parameters, status,
         error_text, error_type, error_traceback, attempts, enqueued_at, died_at,
         concurrency_key, concurrency_limit, rate_limit_starts, rate_limit_seconds, priority)
    SELECT NEW.task_id, NEW.instance_id, i.workflow_name, i.instance_name, NEW.task_name,
           NEW.parameters, NEW.status, NEW.error_text, NEW.error_type, NEW.error_traceback,
           NEW.attempts, NEW.enqueued_at, NEW.completed_at, NEW.concurrency_key,
           NEW.concurrency_limit, NEW.rate_limit_starts, NEW.rate_limit_seconds, NEW.priority
    FROM cereal_workflow_instances AS i
    WHERE i.id = NEW.instance_id;
END;
