-- Task idempotency keys: a run gets at most one task per key while it lives.
--
-- cereal_task_keys holds the keys of each live run with the task each made (its
-- id changes when a dead task is requeued in its place); the rows of a run go
-- with it (the foreign key cascades when the finished or killed instance row is
-- deleted). The task row carries its key too, so listings show it.
ALTER TABLE cereal_tasks ADD COLUMN idempotency_key text;

CREATE TABLE cereal_task_keys (
    instance_id bigint NOT NULL,
    idempotency_key text NOT NULL,
    task_id bigint NOT NULL,
    CONSTRAINT cereal_task_keys_pkey PRIMARY KEY (instance_id, idempotency_key),
    CONSTRAINT cereal_task_keys_instance_fk FOREIGN KEY (instance_id)
        REFERENCES cereal_workflow_instances (id) ON DELETE CASCADE
);

-- The decision function with the tasks' idempotency keys (NULL when no task of
-- the group has one). A keyed task is stored only when its run has no task with
-- that key yet and it is the first of the decision with it; enqueued_tasks counts
-- only the tasks stored. The instance rows are locked first, and every writer of
-- a run's keys holds its row locked, so the check cannot race. It answers the
-- position of each decision applied with its instance id, and stores the tasks
-- of those decisions only: a group may hold a lapsed claim's decision beside the
-- live claim's for the same instance (a shared driver, `cereal serve`), and the
-- lapsed one stores nothing and is not told it was applied. Earlier overloads
-- stay for processes of older releases.
CREATE FUNCTION cereal_apply_decisions(p_instance_ids bigint[], p_tokens uuid[], p_finishes boolean[], p_payloads bytea[], p_completed bigint[], p_results bytea[], p_errors text[], p_event_ids bigint[], p_result_ids bigint[], p_task_owners integer[], p_task_names text[], p_task_parameters bytea[], p_task_start_after timestamp with time zone[], p_note text, p_task_traceparents text[], p_error_types text[], p_error_tracebacks text[], p_task_retry_policies jsonb[], p_task_concurrency_keys text[], p_task_concurrency_limits integer[], p_task_rate_limit_starts integer[], p_task_rate_limit_seconds double precision[], p_task_priorities integer[], p_task_idempotency_keys text[])
RETURNS TABLE (applied_instance_id bigint, applied_position bigint)
LANGUAGE plpgsql
AS $function$
DECLARE
    v_continued bigint[];
    v_finished bigint[];
    -- the positions (in p_instance_ids) of the decisions applied
    v_continued_at bigint[];
    v_finished_at bigint[];
    -- per task position: whether it is stored (NULL array: every task is)
    v_keep boolean[];
BEGIN
    PERFORM 1 FROM cereal_workflow_instances
    WHERE id = ANY(p_instance_ids)
    ORDER BY id
    FOR UPDATE;

    IF p_task_idempotency_keys IS NOT NULL THEN
        SELECT array_agg(k.keep ORDER BY k.position) INTO v_keep
        FROM (
            SELECT t.position,
                   t.key IS NULL
                   OR (row_number() OVER (PARTITION BY t.owner, t.key ORDER BY t.position) = 1
                       AND NOT EXISTS (
                           SELECT 1 FROM cereal_task_keys AS k
                           WHERE k.instance_id = p_instance_ids[t.owner]
                             AND k.idempotency_key = t.key)) AS keep
            FROM unnest(p_task_owners, p_task_idempotency_keys)
                 WITH ORDINALITY AS t(owner, key, position)
        ) AS k;
    END IF;

    WITH decided AS (
        SELECT d.instance_id, d.token, d.payload, d.completed, d.position
        FROM unnest(p_instance_ids, p_tokens, p_finishes, p_payloads, p_completed)
             WITH ORDINALITY AS d(instance_id, token, finish, payload, completed, position)
        WHERE NOT d.finish
    ), added AS (
        SELECT t.owner, count(*) AS n
        FROM unnest(p_task_owners) WITH ORDINALITY AS t(owner, position)
        WHERE coalesce(v_keep[t.position], true)
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
        RETURNING i.id, decided.position
    )
    SELECT coalesce(array_agg(u.id), '{}'), coalesce(array_agg(u.position), '{}')
    INTO v_continued, v_continued_at
    FROM updated AS u;

    DELETE FROM cereal_workflow_events
    WHERE id = ANY(p_event_ids) AND instance_id = ANY(v_continued);
    DELETE FROM cereal_task_results
    WHERE id = ANY(p_result_ids) AND instance_id = ANY(v_continued);

    WITH inserted AS (
        INSERT INTO cereal_tasks
            (instance_id, workflow_name, instance_name, task_name, parameters, start_after,
             traceparent, retry_policy, concurrency_key, concurrency_limit, rate_limit_starts,
             rate_limit_seconds, priority, idempotency_key)
        SELECT i.id, i.workflow_name, i.instance_name, t.task_name, t.parameters,
               coalesce(t.start_after, now()), t.traceparent, t.retry_policy,
               t.concurrency_key, t.concurrency_limit, t.rate_limit_starts,
               t.rate_limit_seconds, coalesce(t.priority, 0), p_task_idempotency_keys[t.position]
        FROM unnest(p_task_owners, p_task_names, p_task_parameters, p_task_start_after,
                    p_task_traceparents, p_task_retry_policies, p_task_concurrency_keys,
                    p_task_concurrency_limits, p_task_rate_limit_starts,
                    p_task_rate_limit_seconds, p_task_priorities)
                 WITH ORDINALITY AS t(owner, task_name, parameters, start_after, traceparent,
                                      retry_policy, concurrency_key, concurrency_limit,
                                      rate_limit_starts, rate_limit_seconds, priority, position)
        JOIN cereal_workflow_instances AS i ON i.id = p_instance_ids[t.owner]
        WHERE t.owner = ANY(v_continued_at) AND coalesce(v_keep[t.position], true)
        ORDER BY t.position
        RETURNING id, instance_id, idempotency_key
    )
    INSERT INTO cereal_task_keys (instance_id, idempotency_key, task_id)
    SELECT instance_id, idempotency_key, id FROM inserted
    WHERE idempotency_key IS NOT NULL;

    WITH finishing AS (
        SELECT d.instance_id, d.token, d.result, d.error, d.error_type, d.error_traceback,
               d.position
        FROM unnest(p_instance_ids, p_tokens, p_finishes, p_results, p_errors,
                    p_error_types, p_error_tracebacks)
             WITH ORDINALITY
             AS d(instance_id, token, finish, result, error, error_type, error_traceback,
                  position)
        WHERE d.finish
    ), gone AS (
        DELETE FROM cereal_workflow_instances AS i
        USING finishing
        WHERE i.id = finishing.instance_id AND i.claim_token = finishing.token
        RETURNING i.id, i.workflow_name, i.instance_name, i.parameters, i.started_at,
                  finishing.result, finishing.error, finishing.error_type,
                  finishing.error_traceback, finishing.position
    ), history AS (
        INSERT INTO cereal_workflow_results
            (workflow_name, instance_name, parameters, result, error, started_at, ended_at,
             error_type, error_traceback, instance_id)
        SELECT workflow_name, instance_name, parameters, result, error, started_at,
               clock_timestamp(), error_type, error_traceback, id
        FROM gone
        ORDER BY id
    )
    SELECT coalesce(array_agg(g.id), '{}'), coalesce(array_agg(g.position), '{}')
    INTO v_finished, v_finished_at
    FROM gone AS g;

    IF p_note IS NOT NULL AND cardinality(v_continued) > 0 THEN
        PERFORM pg_notify('cereal_wakeup', p_note);
    END IF;
    RETURN QUERY SELECT * FROM unnest(v_continued || v_finished, v_continued_at || v_finished_at);
END
$function$;
