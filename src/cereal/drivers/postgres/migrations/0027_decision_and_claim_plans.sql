-- The decision function of migration 0026, restated whole with two changes.
-- Each of its statements runs only when the batch holds something for it (a
-- continue, an event or result to delete, a task to add, a finish). A drain's
-- decisions are mostly continues that add no task, and pg_stat_statements showed
-- the empty task insert alone at 0.4-0.7 ms a call: its planning and executor
-- start (opening cereal_tasks and its indexes) are paid whatever it inserts.
-- The tasks added take their runs' names from the continue's own UPDATE instead
-- of looking each run up again by p_instance_ids[t.owner] (16 continues adding
-- a task each, 25 000 live runs: 1.83 ms a call before, 1.50 ms after, p50).
-- Same signature and answer, so CREATE OR REPLACE.
--
-- The instance claim keeps one generic plan: under the default plan cache mode
-- its UPDATE was planned afresh on every call (the generic plan's estimate, with
-- an unknown LIMIT and name list, never beats the custom one's), 0.2 ms a call,
-- though EXPLAIN shows both plans alike (the claimable index under a lateral
-- join). The setting is the function's own: the claim of tasks, whose generic
-- plan is a worse one, keeps the default.
ALTER FUNCTION cereal_claim_traced_instances(text[], integer, integer, uuid, double precision)
    SET plan_cache_mode = force_generic_plan;

CREATE OR REPLACE FUNCTION cereal_apply_decisions(p_instance_ids bigint[], p_tokens uuid[], p_finishes boolean[], p_payloads bytea[], p_completed bigint[], p_results bytea[], p_errors text[], p_event_ids bigint[], p_result_ids bigint[], p_task_owners integer[], p_task_names text[], p_task_parameters bytea[], p_task_start_after timestamp with time zone[], p_note text, p_task_traceparents text[], p_error_types text[], p_error_tracebacks text[], p_task_retry_policies jsonb[], p_task_concurrency_keys text[], p_task_concurrency_limits integer[], p_task_rate_limit_starts integer[], p_task_rate_limit_seconds double precision[], p_task_priorities integer[], p_task_idempotency_keys text[])
RETURNS TABLE (applied_instance_id bigint, applied_position bigint, started_workflow text)
LANGUAGE plpgsql
AS $function$
DECLARE
    v_continued bigint[];
    v_finished bigint[];
    -- the positions (in p_instance_ids) of the decisions applied
    v_continued_at bigint[];
    v_finished_at bigint[];
    -- the names of the runs continued (for their new tasks' rows), by position
    v_continued_workflows text[];
    v_continued_names text[];
    -- per task position: whether it is stored (NULL array: every task is)
    v_keep boolean[];
    -- the workflow concurrency keys of the runs finished, and the runs they let start
    v_freed text[];
    v_admitted text[];
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

    -- each statement below runs only when the batch holds what it works on: a
    -- drain's decisions are mostly continues that enqueue nothing, and even a
    -- statement that touches no row pays its planning and executor start
    v_continued := '{}';
    v_continued_at := '{}';
    v_finished := '{}';
    v_finished_at := '{}';
    IF false = ANY(p_finishes) THEN
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
            RETURNING i.id, decided.position, i.workflow_name, i.instance_name
        )
        SELECT coalesce(array_agg(u.id), '{}'), coalesce(array_agg(u.position), '{}'),
               array_agg(u.workflow_name), array_agg(u.instance_name)
        INTO v_continued, v_continued_at, v_continued_workflows, v_continued_names
        FROM updated AS u;
    END IF;

    IF cardinality(v_continued) > 0 AND cardinality(p_event_ids) > 0 THEN
        DELETE FROM cereal_workflow_events
        WHERE id = ANY(p_event_ids) AND instance_id = ANY(v_continued);
    END IF;
    IF cardinality(v_continued) > 0 AND cardinality(p_result_ids) > 0 THEN
        DELETE FROM cereal_task_results
        WHERE id = ANY(p_result_ids) AND instance_id = ANY(v_continued);
    END IF;

    IF cardinality(v_continued) > 0 AND cardinality(p_task_owners) > 0 THEN
        WITH inserted AS (
            INSERT INTO cereal_tasks
                (instance_id, workflow_name, instance_name, task_name, parameters, start_after,
                 traceparent, retry_policy, concurrency_key, concurrency_limit, rate_limit_starts,
                 rate_limit_seconds, priority, idempotency_key)
            SELECT c.id, c.workflow_name, c.instance_name, t.task_name, t.parameters,
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
            JOIN unnest(v_continued, v_continued_at, v_continued_workflows, v_continued_names)
                 AS c(id, position, workflow_name, instance_name) ON c.position = t.owner
            WHERE coalesce(v_keep[t.position], true)
            ORDER BY t.position
            RETURNING id, instance_id, idempotency_key
        )
        INSERT INTO cereal_task_keys (instance_id, idempotency_key, task_id)
        SELECT instance_id, idempotency_key, id FROM inserted
        WHERE idempotency_key IS NOT NULL;
    END IF;

    IF true = ANY(p_finishes) THEN
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
                      finishing.error_traceback, finishing.position, i.concurrency_key,
                      i.concurrency_limit, i.waiting_for_key
        ), history AS (
            INSERT INTO cereal_workflow_results
                (workflow_name, instance_name, parameters, result, error, started_at, ended_at,
                 error_type, error_traceback, instance_id, concurrency_key, concurrency_limit)
            SELECT workflow_name, instance_name, parameters, result, error, started_at,
                   clock_timestamp(), error_type, error_traceback, id, concurrency_key,
                   concurrency_limit
            FROM gone
            ORDER BY id
        )
        SELECT coalesce(array_agg(g.id), '{}'), coalesce(array_agg(g.position), '{}'),
               array_agg(DISTINCT g.concurrency_key)
                   FILTER (WHERE g.concurrency_key IS NOT NULL AND NOT g.waiting_for_key)
        INTO v_finished, v_finished_at, v_freed
        FROM gone AS g;
    END IF;

    -- the finished runs free their keys' places: the next waiting runs start
    IF v_freed IS NOT NULL THEN
        SELECT array_agg(s.name) INTO v_admitted FROM cereal_start_waiting_runs(v_freed) AS s(name);
    END IF;

    IF p_note IS NOT NULL AND cardinality(v_continued) > 0 THEN
        PERFORM pg_notify('cereal_wakeup', p_note);
    END IF;
    RETURN QUERY
        SELECT a.id, a.position, NULL::text
        FROM unnest(v_continued || v_finished, v_continued_at || v_finished_at) AS a(id, position)
        UNION ALL
        SELECT NULL, NULL, s.name FROM unnest(v_admitted) AS s(name);
END
$function$;
