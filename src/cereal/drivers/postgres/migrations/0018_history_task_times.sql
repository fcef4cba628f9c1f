-- Run timelines: each task_complete entry of the event history keeps the ended
-- task's enqueue time and attempts (from its cereal_task_results row), so the
-- dashboard draws the task as a bar from its enqueue to its result. History
-- written before this migration keeps NULL in both (drawn as a mark).

ALTER TABLE cereal_event_history
    ADD COLUMN task_enqueued_at timestamptz,
    ADD COLUMN task_attempts    integer;

CREATE OR REPLACE FUNCTION cereal_record_event_history() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO cereal_event_history
        (event_id, instance_id, workflow_name, instance_name, event_type,
         task_name, task_status, error_text, enqueued_at, task_enqueued_at, task_attempts)
    SELECT e.id, e.instance_id, i.workflow_name, i.instance_name, e.event_type,
           r.task_name, r.status, coalesce(r.error, ''), e.enqueued_at,
           r.enqueued_at, r.attempts
    FROM cereal_new_events AS e
    JOIN cereal_workflow_instances AS i ON i.id = e.instance_id
    LEFT JOIN cereal_task_results AS r ON r.id = e.task_result_id;
    RETURN NULL;
END
$$;
