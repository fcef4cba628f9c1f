-- Event history: every event an instance receives (start, task_complete with
-- the task's name and outcome, cancel), kept after a decision consumes it so
-- the dashboard can show an instance's story.
--
-- Rows are written by a row trigger on cereal_workflow_events, so the queries
-- that add and consume events stay unchanged. event_id is the event's own id
-- (AUTOINCREMENT: never reused): an event is still pending while a
-- cereal_workflow_events row has that id.
--
-- Retention follows the finished runs: when a cereal_workflow_results row is
-- deleted (the sweep's trimming), a trigger keeps, for that name pair, the
-- history of the live instance and of the newest finished runs still kept
-- (runs of one pair are sequential, so instance ids order them).

CREATE TABLE cereal_event_history (
    event_id      INTEGER PRIMARY KEY,
    instance_id   INTEGER NOT NULL,
    workflow_name TEXT    NOT NULL,
    instance_name TEXT    NOT NULL,
    event_type    TEXT    NOT NULL,
    task_name     TEXT,
    task_status   TEXT,
    error_text    TEXT    NOT NULL DEFAULT '',
    enqueued_at   REAL    NOT NULL
);

-- reads: the runs of a name pair, one run's events in sequence; retention
CREATE INDEX cereal_event_history_by_run
    ON cereal_event_history (workflow_name, instance_name, instance_id, event_id);

-- events pending now (handled ones are gone): live instances start with these
INSERT INTO cereal_event_history
    (event_id, instance_id, workflow_name, instance_name, event_type,
     task_name, task_status, error_text, enqueued_at)
SELECT e.id, e.instance_id, i.workflow_name, i.instance_name, e.event_type,
       r.task_name, r.status, coalesce(r.error_text, ''), e.enqueued_at
FROM cereal_workflow_events AS e
JOIN cereal_workflow_instances AS i ON i.id = e.instance_id
LEFT JOIN cereal_task_results AS r ON r.id = e.task_result_id;

CREATE TRIGGER cereal_workflow_events_history
AFTER INSERT ON cereal_workflow_events
FOR EACH ROW
BEGIN
    INSERT INTO cereal_event_history
        (event_id, instance_id, workflow_name, instance_name, event_type,
         task_name, task_status, error_text, enqueued_at)
    SELECT NEW.id, NEW.instance_id, i.workflow_name, i.instance_name, NEW.event_type,
           r.task_name, r.status, coalesce(r.error_text, ''), NEW.enqueued_at
    FROM cereal_workflow_instances AS i
    LEFT JOIN cereal_task_results AS r ON r.id = NEW.task_result_id
    WHERE i.id = NEW.instance_id;
END;

CREATE TRIGGER cereal_workflow_results_trim_history
AFTER DELETE ON cereal_workflow_results
FOR EACH ROW
BEGIN
    DELETE FROM cereal_event_history
    WHERE workflow_name = OLD.workflow_name AND instance_name = OLD.instance_name
      AND instance_id NOT IN (
          SELECT id FROM cereal_workflow_instances
          WHERE workflow_name = OLD.workflow_name AND instance_name = OLD.instance_name)
      AND instance_id NOT IN (
          -- the newest finished runs, as many as the pair still keeps
          SELECT DISTINCT h.instance_id FROM cereal_event_history AS h
          WHERE h.workflow_name = OLD.workflow_name AND h.instance_name = OLD.instance_name
            AND h.instance_id NOT IN (
                SELECT id FROM cereal_workflow_instances
                WHERE workflow_name = OLD.workflow_name AND instance_name = OLD.instance_name)
          ORDER BY h.instance_id DESC
          LIMIT (SELECT count(*) FROM cereal_workflow_results
                 WHERE workflow_name = OLD.workflow_name AND instance_name = OLD.instance_name));
END;
