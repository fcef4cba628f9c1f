-- Event history: every event an instance receives (start, task_complete with
-- the task's name and outcome, cancel), kept after a decision consumes it so
-- the dashboard can show an instance's story.
--
-- Rows are written by a statement-level trigger on cereal_workflow_events (one
-- set-based INSERT per statement), so the queries and functions that add and
-- consume events stay unchanged. event_id is the event's own id (its sequence):
-- an event is still pending while a cereal_workflow_events row has that id.
--
-- Retention follows the finished runs: when cereal_workflow_results rows are
-- deleted (the sweep's trimming), a statement-level trigger keeps, per affected
-- name pair, the history of the live instance and of the newest finished runs
-- still kept (runs of one pair are sequential, so instance ids order them).

CREATE TABLE cereal_event_history (
    event_id      bigint      PRIMARY KEY,
    instance_id   bigint      NOT NULL,
    workflow_name text        NOT NULL,
    instance_name text        NOT NULL,
    event_type    text        NOT NULL,
    task_name     text,
    task_status   text,
    error_text    text        NOT NULL DEFAULT '',
    enqueued_at   timestamptz NOT NULL
);

-- reads: the runs of a name pair, one run's events in sequence; retention
CREATE INDEX cereal_event_history_by_run
    ON cereal_event_history (workflow_name, instance_name, instance_id, event_id);

-- events pending now (handled ones are gone): live instances start with these
INSERT INTO cereal_event_history
    (event_id, instance_id, workflow_name, instance_name, event_type,
     task_name, task_status, error_text, enqueued_at)
SELECT e.id, e.instance_id, i.workflow_name, i.instance_name, e.event_type,
       r.task_name, r.status, coalesce(r.error, ''), e.enqueued_at
FROM cereal_workflow_events AS e
JOIN cereal_workflow_instances AS i ON i.id = e.instance_id
LEFT JOIN cereal_task_results AS r ON r.id = e.task_result_id;

CREATE FUNCTION cereal_record_event_history() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO cereal_event_history
        (event_id, instance_id, workflow_name, instance_name, event_type,
         task_name, task_status, error_text, enqueued_at)
    SELECT e.id, e.instance_id, i.workflow_name, i.instance_name, e.event_type,
           r.task_name, r.status, coalesce(r.error, ''), e.enqueued_at
    FROM cereal_new_events AS e
    JOIN cereal_workflow_instances AS i ON i.id = e.instance_id
    LEFT JOIN cereal_task_results AS r ON r.id = e.task_result_id;
    RETURN NULL;
END
$$;

CREATE TRIGGER cereal_workflow_events_history
    AFTER INSERT ON cereal_workflow_events
    REFERENCING NEW TABLE AS cereal_new_events
    FOR EACH STATEMENT EXECUTE FUNCTION cereal_record_event_history();

CREATE FUNCTION cereal_trim_event_history() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    WITH pairs AS (
        SELECT DISTINCT workflow_name, instance_name FROM cereal_trimmed_runs
    ), kept AS (
        -- how many finished runs each pair still keeps
        SELECT p.workflow_name, p.instance_name, count(r.id) AS runs
        FROM pairs AS p
        LEFT JOIN cereal_workflow_results AS r
               ON r.workflow_name = p.workflow_name AND r.instance_name = p.instance_name
        GROUP BY p.workflow_name, p.instance_name
    ), finished_runs AS (
        -- the pair's finished runs that have history, newest first
        SELECT runs.workflow_name, runs.instance_name, runs.instance_id,
               row_number() OVER (PARTITION BY runs.workflow_name, runs.instance_name
                                  ORDER BY runs.instance_id DESC) AS age
        FROM (
            SELECT DISTINCT h.workflow_name, h.instance_name, h.instance_id
            FROM pairs AS p
            JOIN cereal_event_history AS h
              ON h.workflow_name = p.workflow_name AND h.instance_name = p.instance_name
            WHERE NOT EXISTS (
                SELECT 1 FROM cereal_workflow_instances AS i WHERE i.id = h.instance_id)
        ) AS runs
    )
    DELETE FROM cereal_event_history AS h
    USING finished_runs AS f
    JOIN kept AS k ON k.workflow_name = f.workflow_name AND k.instance_name = f.instance_name
    WHERE f.age > k.runs
      AND h.workflow_name = f.workflow_name AND h.instance_name = f.instance_name
      AND h.instance_id = f.instance_id;
    RETURN NULL;
END
$$;

CREATE TRIGGER cereal_workflow_results_trim_history
    AFTER DELETE ON cereal_workflow_results
    REFERENCING OLD TABLE AS cereal_trimmed_runs
    FOR EACH STATEMENT EXECUTE FUNCTION cereal_trim_event_history();
