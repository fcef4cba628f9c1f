-- Dead letters: failed runs not requeued yet are listed newest first through a
-- partial index (a requeue stamps requeued_at in the transaction that starts
-- the new run, so a run is requeued at most once), and every task that ends with a status other than 'success' (its
-- retries exhausted, a non-retryable error, or its lease lost for good) is
-- copied here by a row trigger on cereal_task_results, in the statement that
-- hands its result to the workflow, so none of the statements that record a
-- result (a worker's report, a sweep's LOST) can miss one. The trigger's WHEN
-- clause is evaluated without calling the function: a success costs nothing.
--
-- task_id is the dead task's own id (an identity: never reused). A row stays
-- while its run is live or its finished run is kept: trimming a run (the
-- history trigger below) deletes its dead tasks by instance id. A requeue
-- deletes the row in the transaction that queues the new task.

CREATE TABLE cereal_dead_tasks (
    task_id         bigint      NOT NULL,
    instance_id     bigint      NOT NULL,
    workflow_name   text        NOT NULL,
    instance_name   text        NOT NULL,
    task_name       text        NOT NULL,
    parameters      bytea,
    status          text        NOT NULL,
    error           text        NOT NULL DEFAULT '',
    error_type      text,
    error_traceback text,
    attempts        integer     NOT NULL,
    enqueued_at     timestamptz NOT NULL,
    died_at         timestamptz NOT NULL,
    CONSTRAINT cereal_dead_tasks_pkey PRIMARY KEY (task_id)
);

-- trimming a finished run's dead tasks
CREATE INDEX cereal_dead_tasks_instance ON cereal_dead_tasks (instance_id);

CREATE FUNCTION cereal_record_dead_task() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO cereal_dead_tasks
        (task_id, instance_id, workflow_name, instance_name, task_name, parameters, status,
         error, error_type, error_traceback, attempts, enqueued_at, died_at)
    SELECT NEW.task_id, NEW.instance_id, i.workflow_name, i.instance_name, NEW.task_name,
           NEW.parameters, NEW.status, NEW.error, NEW.error_type, NEW.error_traceback,
           NEW.attempts, NEW.enqueued_at, NEW.completed_at
    FROM cereal_workflow_instances AS i
    WHERE i.id = NEW.instance_id
    ON CONFLICT (task_id) DO NOTHING;
    RETURN NULL;
END
$$;

CREATE TRIGGER cereal_task_results_dead
AFTER INSERT ON cereal_task_results
FOR EACH ROW WHEN (NEW.status <> 'success')
EXECUTE FUNCTION cereal_record_dead_task();

-- As in migration 0010, and a trimmed run's dead tasks go with its history.
CREATE OR REPLACE FUNCTION cereal_trim_event_history() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_run record;
BEGIN
    FOR v_run IN
        SELECT t.workflow_name, t.instance_name, t.instance_id
        FROM cereal_trimmed_runs AS t
        WHERE t.instance_id IS NOT NULL
    LOOP
        DELETE FROM cereal_event_history AS h
        WHERE h.workflow_name = v_run.workflow_name
          AND h.instance_name = v_run.instance_name
          AND h.instance_id = v_run.instance_id;
        DELETE FROM cereal_dead_tasks AS d
        WHERE d.instance_id = v_run.instance_id;
    END LOOP;
    RETURN NULL;
END
$$;

ALTER TABLE cereal_workflow_results ADD COLUMN requeued_at timestamptz;

-- failed runs not requeued yet, newest first
CREATE INDEX cereal_workflow_results_failed ON cereal_workflow_results (id)
    WHERE error IS NOT NULL AND requeued_at IS NULL;
