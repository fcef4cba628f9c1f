-- Workflow concurrency keys: of the live runs carrying a key, at most its limit
-- are started at once; the others wait (waiting_for_key) with no ready_at, so
-- no claim sees them, until a started run of the key ends and the same
-- transaction starts the oldest waiting ones (cereal_start_waiting_runs). Every
-- writer that counts a key's started runs or starts one holds the key's
-- advisory lock (class 1667592823, 'cerw'), taken after any instance row lock
-- it needs, so racing enqueues and endings never start more than the limit. A
-- finished run keeps its key and limit, so a requeued failed run goes back
-- under them. The check keeps a waiting run unready whatever writes to it (an
-- older release's cancel fails instead of starting it over the limit).
ALTER TABLE cereal_workflow_instances
    ADD COLUMN concurrency_key text,
    ADD COLUMN concurrency_limit integer,
    ADD COLUMN waiting_for_key boolean NOT NULL DEFAULT false;

ALTER TABLE cereal_workflow_instances ADD CONSTRAINT cereal_workflow_instances_concurrency
    CHECK ((concurrency_key IS NULL) = (concurrency_limit IS NULL)
           AND (concurrency_limit IS NULL OR concurrency_limit >= 1)
           AND (NOT waiting_for_key OR (concurrency_key IS NOT NULL AND ready_at IS NULL)));

ALTER TABLE cereal_workflow_results
    ADD COLUMN concurrency_key text,
    ADD COLUMN concurrency_limit integer;


-- A failed run under a key is requeued only by a release that puts it back
-- under its key (and says so in the stamp): an earlier release's requeue, which
-- would start it unkeyed, fails instead.
ALTER TABLE cereal_workflow_results ADD COLUMN requeued_under_key boolean;

CREATE FUNCTION cereal_refuse_unkeyed_requeue()
RETURNS trigger
LANGUAGE plpgsql
AS $function$
BEGIN
    IF OLD.concurrency_key IS NOT NULL AND OLD.requeued_at IS NULL
       AND NEW.requeued_at IS NOT NULL AND NEW.requeued_under_key IS NOT TRUE THEN
        RAISE EXCEPTION 'failed run % ran under workflow concurrency key %: requeue it with a cereal release that keeps the key', OLD.id, OLD.concurrency_key;
    END IF;
    RETURN NEW;
END
$function$;

CREATE TRIGGER cereal_workflow_results_keyed_requeue
    BEFORE UPDATE OF requeued_at ON cereal_workflow_results
    FOR EACH ROW EXECUTE FUNCTION cereal_refuse_unkeyed_requeue();

-- a key's started runs counted; its waiting runs in enqueue order (and any at all)
CREATE INDEX cereal_workflow_instances_started_by_key
    ON cereal_workflow_instances (concurrency_key)
    WHERE concurrency_key IS NOT NULL AND NOT waiting_for_key;
CREATE INDEX cereal_workflow_instances_waiting_by_key
    ON cereal_workflow_instances (concurrency_key, id)
    WHERE waiting_for_key;

-- Start the oldest waiting runs of each key while fewer than their own limit of
-- the key's runs are started; the workflow names of the runs started. The keys
-- are locked in one global order, each count is taken after the locks (READ
-- COMMITTED: a fresh snapshot per statement).
CREATE FUNCTION cereal_start_waiting_runs(p_keys text[])
RETURNS SETOF text
LANGUAGE plpgsql
AS $function$
DECLARE
    v_lock integer;
    v_key text;
    v_run record;
    v_started bigint;
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'starting keyed workflow runs needs READ COMMITTED, not %',
            current_setting('transaction_isolation');
    END IF;
    FOR v_lock IN SELECT DISTINCT hashtext(k) FROM unnest(p_keys) AS k ORDER BY 1 LOOP
        PERFORM pg_advisory_xact_lock(1667592823, v_lock);
    END LOOP;
    FOR v_key IN SELECT DISTINCT k FROM unnest(p_keys) AS k WHERE k IS NOT NULL ORDER BY 1 LOOP
        LOOP
            SELECT w.id, w.workflow_name, w.concurrency_limit INTO v_run
            FROM cereal_workflow_instances AS w
            WHERE w.concurrency_key = v_key AND w.waiting_for_key
            ORDER BY w.id
            LIMIT 1
            FOR UPDATE;
            EXIT WHEN NOT FOUND;
            SELECT count(*) INTO v_started FROM cereal_workflow_instances AS s
            WHERE s.concurrency_key = v_key AND NOT s.waiting_for_key;
            EXIT WHEN v_started >= v_run.concurrency_limit;
            UPDATE cereal_workflow_instances AS i
            SET waiting_for_key = false,
                ready_at = coalesce((SELECT min(e.enqueued_at) FROM cereal_workflow_events AS e
                                     WHERE e.instance_id = i.id), now())
            WHERE i.id = v_run.id;
            RETURN NEXT v_run.workflow_name;
        END LOOP;
    END LOOP;
END
$function$;

-- Create a run under a key: inserted waiting (no ready_at) and then, under the
-- key's lock, started if its key has room. Inserting first means the insert's
-- wait on a live row of the same names (one being finished) holds no key lock.
-- NULL when the names are live.
CREATE FUNCTION cereal_enqueue_keyed_workflow(p_workflow_name text, p_instance_name text, p_parameters bytea, p_traceparent text, p_key text, p_limit integer)
RETURNS bigint
LANGUAGE plpgsql
AS $function$
DECLARE
    v_id bigint;
    v_started bigint;
BEGIN
    INSERT INTO cereal_workflow_instances
        (workflow_name, instance_name, parameters, ready_at, traceparent, concurrency_key,
         concurrency_limit, waiting_for_key)
    VALUES (p_workflow_name, p_instance_name, p_parameters, NULL, p_traceparent, p_key,
            p_limit, true)
    ON CONFLICT (workflow_name, instance_name) DO NOTHING
    RETURNING id INTO v_id;
    IF v_id IS NULL THEN
        RETURN NULL;
    END IF;
    INSERT INTO cereal_workflow_events (instance_id, workflow_name, event_type)
    VALUES (v_id, p_workflow_name, 'start');
    PERFORM cereal_start_waiting_runs(ARRAY[p_key]);
    RETURN v_id;
END
$function$;

-- The decision function of migration 0025 (released with it, so replaced here:
-- its answer gains a column), now also keeping a finished run's key and limit
-- in its history row and starting the waiting runs its end lets start (after
-- the finished rows are deleted, so they are not counted). Besides a row per
-- decision applied, it answers a row per run started from waiting, with only
-- its workflow name: the driver announces them after the commit.
DROP FUNCTION cereal_apply_decisions(bigint[], uuid[], boolean[], bytea[], bigint[], bytea[], text[], bigint[], bigint[], integer[], text[], bytea[], timestamp with time zone[], text, text[], text[], text[], jsonb[], text[], integer[], integer[], double precision[], integer[], text[]);

CREATE FUNCTION cereal_apply_decisions(p_instance_ids bigint[], p_tokens uuid[], p_finishes boolean[], p_payloads bytea[], p_completed bigint[], p_results bytea[], p_errors text[], p_event_ids bigint[], p_result_ids bigint[], p_task_owners integer[], p_task_names text[], p_task_parameters bytea[], p_task_start_after timestamp with time zone[], p_note text, p_task_traceparents text[], p_error_types text[], p_error_tracebacks text[], p_task_retry_policies jsonb[], p_task_concurrency_keys text[], p_task_concurrency_limits integer[], p_task_rate_limit_starts integer[], p_task_rate_limit_seconds double precision[], p_task_priorities integer[], p_task_idempotency_keys text[])
RETURNS TABLE (applied_instance_id bigint, applied_position bigint, started_workflow text)
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
