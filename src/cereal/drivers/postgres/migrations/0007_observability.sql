-- Observability: a failed task keeps its story, and a task carries its trace.
--   cereal_task_results.error_type       the qualified name of the executor's exception
--   cereal_task_results.error_traceback  its traceback (bounded by the writer)
--   cereal_tasks.traceparent             the W3C traceparent of the enqueuing callback's
--                                        span, restored when the task runs
--   cereal_workflow_results.error_type / error_traceback
--                                        what failed a failed run (an exception's
--                                        qualified type name and traceback)
-- All are NULL for rows written by older code. The three functions of
-- migration 0004 that read or write these rows are replaced: their signatures
-- change (a new result column or argument), so each is dropped and created again
-- with the same body apart from the new column. Completions store the new
-- columns through the complete_tasks query (queries.sql), still one set-based
-- statement per group of completions.
--
-- Upgrade note: stop workers running older cereal before applying this; their
-- statements call the old function signatures.

ALTER TABLE cereal_task_results
    ADD COLUMN error_type text,
    ADD COLUMN error_traceback text;
ALTER TABLE cereal_tasks ADD COLUMN traceparent text;
ALTER TABLE cereal_workflow_results
    ADD COLUMN error_type text,
    ADD COLUMN error_traceback text;

DROP FUNCTION cereal_claim_instances(text[], integer, integer, uuid, double precision);
DROP FUNCTION cereal_apply_decisions(
    bigint[], uuid[], boolean[], bytea[], bigint[], bytea[], text[], bigint[], bigint[],
    integer[], text[], bytea[], timestamptz[], text);
DROP FUNCTION cereal_claim_tasks(text, integer, uuid, double precision);

-- As in migration 0004, and each task result's error type and traceback.
CREATE FUNCTION cereal_claim_instances(
    p_workflow_names text[], p_max_instances integer, p_max_events integer,
    p_token uuid, p_expiry double precision
) RETURNS TABLE (
    instance_id bigint, first_row boolean, workflow_name text, instance_name text,
    status text, parameters bytea, payload bytea, enqueued_tasks bigint,
    completed_tasks bigint, started_at timestamptz, event_id bigint, event_type text,
    task_result_id bigint, enqueued_at timestamptz, result_id bigint,
    result_task_name text, result_parameters bytea, result_status text,
    result_error text, result_result bytea, result_error_type text,
    result_error_traceback text
) LANGUAGE plpgsql VOLATILE AS $$
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
           r.error_type, r.error_traceback
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
$$;

-- As in migration 0004, and each new task's traceparent (p_task_traceparents,
-- one entry per task like p_task_names) and each failing decision's exception
-- type and traceback (p_error_types, p_error_tracebacks, one per decision).
CREATE FUNCTION cereal_apply_decisions(
    p_instance_ids bigint[], p_tokens uuid[], p_finishes boolean[], p_payloads bytea[],
    p_completed bigint[], p_results bytea[], p_errors text[],
    p_event_ids bigint[], p_result_ids bigint[],
    p_task_owners integer[], p_task_names text[], p_task_parameters bytea[],
    p_task_start_after timestamptz[], p_note text, p_task_traceparents text[],
    p_error_types text[], p_error_tracebacks text[]
) RETURNS SETOF bigint LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_continued bigint[];
    v_finished bigint[];
BEGIN
    PERFORM 1 FROM cereal_workflow_instances
    WHERE id = ANY(p_instance_ids)
    ORDER BY id
    FOR UPDATE;

    WITH decided AS (
        SELECT d.instance_id, d.token, d.payload, d.completed, d.position
        FROM unnest(p_instance_ids, p_tokens, p_finishes, p_payloads, p_completed)
             WITH ORDINALITY AS d(instance_id, token, finish, payload, completed, position)
        WHERE NOT d.finish
    ), added AS (
        SELECT t.owner, count(*) AS n
        FROM unnest(p_task_owners) AS t(owner)
        GROUP BY t.owner
    ), updated AS (
        UPDATE cereal_workflow_instances AS i
        SET payload = decided.payload,
            status = 'running',
            enqueued_tasks = i.enqueued_tasks + coalesce(added.n, 0),
            completed_tasks = decided.completed,
            updated_at = now(),
            ready_at = (SELECT min(e.enqueued_at) FROM cereal_workflow_events AS e
                        WHERE e.instance_id = i.id AND e.id <> ALL(p_event_ids)),
            claim_token = NULL, claimed_at = NULL, claim_expiry = NULL
        FROM decided
        LEFT JOIN added ON added.owner = decided.position
        WHERE i.id = decided.instance_id AND i.claim_token = decided.token
        RETURNING i.id
    )
    SELECT coalesce(array_agg(id), '{}') INTO v_continued FROM updated;

    DELETE FROM cereal_workflow_events
    WHERE id = ANY(p_event_ids) AND instance_id = ANY(v_continued);
    DELETE FROM cereal_task_results
    WHERE id = ANY(p_result_ids) AND instance_id = ANY(v_continued);

    INSERT INTO cereal_tasks
        (instance_id, workflow_name, instance_name, task_name, parameters, start_after,
         traceparent)
    SELECT i.id, i.workflow_name, i.instance_name, t.task_name, t.parameters,
           coalesce(t.start_after, now()), t.traceparent
    FROM unnest(p_task_owners, p_task_names, p_task_parameters, p_task_start_after,
                p_task_traceparents)
             WITH ORDINALITY AS t(owner, task_name, parameters, start_after, traceparent,
                                  position)
    JOIN cereal_workflow_instances AS i ON i.id = p_instance_ids[t.owner]
    WHERE i.id = ANY(v_continued)
    ORDER BY t.position;

    WITH finishing AS (
        SELECT d.instance_id, d.token, d.result, d.error, d.error_type, d.error_traceback
        FROM unnest(p_instance_ids, p_tokens, p_finishes, p_results, p_errors,
                    p_error_types, p_error_tracebacks)
             AS d(instance_id, token, finish, result, error, error_type, error_traceback)
        WHERE d.finish
    ), gone AS (
        DELETE FROM cereal_workflow_instances AS i
        USING finishing
        WHERE i.id = finishing.instance_id AND i.claim_token = finishing.token
        RETURNING i.id, i.workflow_name, i.instance_name, i.parameters, i.started_at,
                  finishing.result, finishing.error, finishing.error_type,
                  finishing.error_traceback
    ), history AS (
        INSERT INTO cereal_workflow_results
            (workflow_name, instance_name, parameters, result, error, started_at, ended_at,
             error_type, error_traceback)
        SELECT workflow_name, instance_name, parameters, result, error, started_at,
               clock_timestamp(), error_type, error_traceback
        FROM gone
        ORDER BY id
    )
    SELECT coalesce(array_agg(id), '{}') INTO v_finished FROM gone;

    IF p_note IS NOT NULL AND cardinality(v_continued) > 0 THEN
        PERFORM pg_notify('cereal_wakeup', p_note);
    END IF;
    RETURN QUERY SELECT unnest(v_continued || v_finished);
END
$$;

-- As in migration 0004, and each task's traceparent.
CREATE FUNCTION cereal_claim_tasks(
    p_task_name text, p_max_tasks integer, p_lease uuid, p_expiry double precision
) RETURNS TABLE (
    id bigint, lease uuid, instance_id bigint, task_name text, parameters bytea,
    workflow_name text, instance_name text, enqueued_at timestamptz,
    start_after timestamptz, attempt integer, traceparent text
) LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);
    RETURN QUERY
    UPDATE cereal_tasks AS t
    SET state = 'running', lease = p_lease, heartbeat_at = now(),
        lease_expiry = p_expiry, attempt = t.attempt + 1
    FROM (
        SELECT q.id FROM cereal_tasks AS q
        WHERE q.task_name = p_task_name AND q.state = 'queued' AND q.start_after <= now()
        ORDER BY q.start_after, q.id
        LIMIT p_max_tasks
        FOR UPDATE SKIP LOCKED
    ) AS picked
    WHERE t.id = picked.id
    RETURNING t.id, t.lease, t.instance_id, t.task_name, t.parameters, t.workflow_name,
              t.instance_name, t.enqueued_at, t.start_after, t.attempt, t.traceparent;
END
$$;
