-- Dead letters: failed runs not requeued yet are listed newest first through a
-- partial index (a requeue stamps requeued_at in the transaction that starts
-- the new run, so a run is requeued at most once), and every task that ends with a status other than 'success' (its
-- retries exhausted, a non-retryable error, or its lease lost for good) is
-- copied here by a row trigger on cereal_task_results, in the transaction that
-- hands its result to the workflow, so none of the paths that record a result
-- (a worker's report, a sweep's LOST) can miss one.
--
-- task_id is the dead task's own id (AUTOINCREMENT: never reused). A row stays
-- while its run is live or its finished run is kept: trimming a run deletes its
-- dead tasks by instance id. A requeue deletes the row in the transaction that
-- queues the new task.

CREATE TABLE cereal_dead_tasks (
    task_id         INTEGER PRIMARY KEY,
    instance_id     INTEGER NOT NULL,
    workflow_name   TEXT    NOT NULL,
    instance_name   TEXT    NOT NULL,
    task_name       TEXT    NOT NULL,
    parameters      BLOB,
    status          TEXT    NOT NULL,
    error_text      TEXT    NOT NULL DEFAULT '',
    error_type      TEXT,
    error_traceback TEXT,
    attempts        INTEGER NOT NULL,
    enqueued_at     REAL    NOT NULL,
    died_at         REAL    NOT NULL
);

-- trimming a finished run's dead tasks
CREATE INDEX cereal_dead_tasks_by_instance ON cereal_dead_tasks (instance_id);

CREATE TRIGGER cereal_task_results_dead
AFTER INSERT ON cereal_task_results
FOR EACH ROW WHEN NEW.status <> 'success'
BEGIN
    INSERT OR IGNORE INTO cereal_dead_tasks
        (task_id, instance_id, workflow_name, instance_name, task_name, parameters, status,
         error_text, error_type, error_traceback, attempts, enqueued_at, died_at)
    SELECT NEW.task_id, NEW.instance_id, i.workflow_name, i.instance_name, NEW.task_name,
           NEW.parameters, NEW.status, NEW.error_text, NEW.error_type, NEW.error_traceback,
           NEW.attempts, NEW.enqueued_at, NEW.completed_at
    FROM cereal_workflow_instances AS i
    WHERE i.id = NEW.instance_id;
END;

ALTER TABLE cereal_workflow_results ADD COLUMN requeued_at REAL;

-- failed runs not requeued yet, newest first
CREATE INDEX cereal_workflow_results_failed ON cereal_workflow_results (id)
    WHERE error IS NOT NULL AND requeued_at IS NULL;
