-- One trace per workflow run: the enqueue's W3C traceparent is kept with the
-- live instance and the reporting task run's with each task result, so every
-- callback's span (in whichever process claims the run) has its parent. Both
-- are NULL when nothing is traced; adding a nullable column rewrites nothing.
-- The claim returns both, from a function of its own: the old
-- cereal_claim_instances stays as it was, because workers of the previous
-- release still call it through prepared statements, which PostgreSQL refuses
-- once a function's result type changes. A later migration drops it.

ALTER TABLE cereal_workflow_instances ADD COLUMN traceparent text;

ALTER TABLE cereal_task_results ADD COLUMN traceparent text;

CREATE FUNCTION cereal_claim_traced_instances(p_workflow_names text[], p_max_instances integer, p_max_events integer, p_token uuid, p_expiry double precision)
 RETURNS TABLE(instance_id bigint, first_row boolean, workflow_name text, instance_name text, status text, parameters bytea, payload bytea, enqueued_tasks bigint, completed_tasks bigint, started_at timestamp with time zone, event_id bigint, event_type text, task_result_id bigint, enqueued_at timestamp with time zone, result_id bigint, result_task_name text, result_parameters bytea, result_status text, result_error text, result_result bytea, result_error_type text, result_error_traceback text, result_attempts integer, traceparent text, result_traceparent text)
 LANGUAGE plpgsql
AS $function$
#variable_conflict use_column
BEGIN
    -- a claim is a lease: if the server crashes before this commit reaches disk
    -- the claim is simply gone and the events are delivered again, so the
    -- commit need not wait for the WAL flush (the decision's commit does)
    PERFORM set_config('synchronous_commit', 'off', true);
    UPDATE cereal_workflow_instances AS i
    SET claim_token = p_token, claimed_at = now(), claim_expiry = p_expiry
    FROM (
        SELECT c.id FROM unnest(p_workflow_names) AS n(name)
        CROSS JOIN LATERAL (
            SELECT w.id, w.ready_at FROM cereal_workflow_instances AS w
            WHERE w.workflow_name = n.name AND w.ready_at IS NOT NULL
              AND w.claim_token IS NULL
            ORDER BY w.ready_at, w.id
            LIMIT p_max_instances
            FOR NO KEY UPDATE SKIP LOCKED
        ) AS c
        ORDER BY c.ready_at, c.id
        LIMIT p_max_instances
    ) AS picked
    WHERE i.id = picked.id;

    RETURN QUERY
    SELECT i.id, coalesce(e.position = 1, true),
           i.workflow_name, i.instance_name, i.status,
           CASE WHEN coalesce(e.position = 1, true) THEN i.parameters END,
           CASE WHEN coalesce(e.position = 1, true) THEN i.payload END,
           i.enqueued_tasks, i.completed_tasks, i.started_at,
           e.id, e.event_type, e.task_result_id, e.enqueued_at,
           r.id, r.task_name, r.parameters, r.status, r.error, r.result,
           r.error_type, r.error_traceback, r.attempts,
           i.traceparent, r.traceparent
    FROM cereal_workflow_instances AS i
    LEFT JOIN LATERAL (
        SELECT ev.id, ev.event_type, ev.task_result_id, ev.enqueued_at,
               row_number() OVER (ORDER BY ev.id) AS position
        FROM cereal_workflow_events AS ev
        WHERE ev.instance_id = i.id
        ORDER BY ev.id
        LIMIT p_max_events
    ) AS e ON true
    LEFT JOIN cereal_task_results AS r ON r.id = e.task_result_id
    WHERE i.claim_token = p_token
    ORDER BY i.ready_at, i.id, e.id;
END
$function$;
