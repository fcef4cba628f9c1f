-- Run timelines: each task_complete entry of the event history keeps the ended
-- task's enqueue time and attempts (from its cereal_task_results row), so the
-- dashboard draws the task as a bar from its enqueue to its result. History
-- written before this migration keeps NULL in both (drawn as a mark).

ALTER TABLE cereal_event_history ADD COLUMN task_enqueued_at REAL;
ALTER TABLE cereal_event_history ADD COLUMN task_attempts INTEGER;

DROP TRIGGER cereal_workflow_events_history;

CREATE TRIGGER cereal_workflow_events_history
AFTER INSERT ON cereal_workflow_events
FOR EACH ROW
BEGIN
    INSERT INTO cereal_event_history
        (event_id, instance_id, workflow_name, instance_name, event_type,
         task_name, task_status, error_text, enqueued_at, task_enqueued_at, task_attempts)
    SELECT NEW.id, NEW.instance_id, i.workflow_name, i.instance_name, NEW.event_type,
           r.task_name, r.status, coalesce(r.error_text, ''), NEW.enqueued_at,
           r.enqueued_at, r.attempts
    FROM cereal_workflow_instances AS i
    LEFT JOIN cereal_task_results AS r ON r.id = NEW.task_result_id
    WHERE i.id = NEW.instance_id;
END;
