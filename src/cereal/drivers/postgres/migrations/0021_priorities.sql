-- Priorities: a task has a priority from 0 (the default) to 100, each level worth a
-- minute of waiting. Its ready rank, start_after less that many minutes, is a stored
-- generated column (through an IMMUTABLE function: a timestamp less whole seconds
-- does not depend on the time zone, though PostgreSQL marks the operator STABLE),
-- so every change of start_after (a retry, a hand-back, a lease given up) moves it
-- too. The ready indexes are keyed by the rank instead of start_after and include
-- start_after: the claim takes due tasks lowest rank first, so higher goes first,
-- and a task is passed over only by higher ones that became due less than the
-- difference in minutes after it (aging). With priority 0 the rank is the due time.
-- The claim function keeps its signature; the decision function takes the new
-- array as a new overload, and the previous ones stay for older workers.
-- Upgrade note: adding the stored column rewrites the task table (its queue) under
-- an exclusive lock, and the indexes are built again.

CREATE FUNCTION cereal_ready_rank(p_start_after timestamp with time zone, p_priority integer)
 RETURNS timestamp with time zone
 LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $function$
    SELECT p_start_after - make_interval(secs => p_priority * 60.0)
$function$;

ALTER TABLE cereal_tasks
    ADD COLUMN priority integer NOT NULL DEFAULT 0,
    ADD CONSTRAINT cereal_tasks_priority CHECK (priority BETWEEN 0 AND 100);

ALTER TABLE cereal_tasks
    ADD COLUMN ready_rank timestamp with time zone
        GENERATED ALWAYS AS (cereal_ready_rank(start_after, priority)) STORED;

DROP INDEX cereal_tasks_ready;

CREATE INDEX cereal_tasks_ready ON cereal_tasks (task_name, ready_rank, id)
    INCLUDE (start_after)
    WHERE state = 'queued' AND concurrency_key IS NULL;

DROP INDEX cereal_tasks_ready_keyed;

CREATE INDEX cereal_tasks_ready_keyed
    ON cereal_tasks (task_name, concurrency_key, ready_rank, id)
    INCLUDE (start_after)
    WHERE state = 'queued' AND concurrency_key IS NOT NULL;

-- A result and a dead letter keep the priority, so a requeued dead task keeps it.
ALTER TABLE cereal_task_results ADD COLUMN priority integer NOT NULL DEFAULT 0;

ALTER TABLE cereal_dead_tasks ADD COLUMN priority integer NOT NULL DEFAULT 0;

CREATE OR REPLACE FUNCTION cereal_record_dead_task()
 RETURNS trigger
 LANGUAGE plpgsql
AS $function$
BEGIN
    INSERT INTO cereal_dead_tasks
        (task_id, instance_id, workflow_name, instance_name, task_name, parameters, status,
         error, error_type, error_traceback, attempts, enqueued_at, died_at,
         concurrency_key, concurrency_limit, rate_limit_starts, rate_limit_seconds,
         priority)
    SELECT NEW.task_id, NEW.instance_id, i.workflow_name, i.instance_name, NEW.task_name,
           NEW.parameters, NEW.status, NEW.error, NEW.error_type, NEW.error_traceback,
           NEW.attempts, NEW.enqueued_at, NEW.completed_at, NEW.concurrency_key,
           NEW.concurrency_limit, NEW.rate_limit_starts, NEW.rate_limit_seconds, NEW.priority
    FROM cereal_workflow_instances AS i
    WHERE i.id = NEW.instance_id
    ON CONFLICT (task_id) DO NOTHING;
    RETURN NULL;
END
$function$;

CREATE OR REPLACE FUNCTION cereal_claim_tasks(p_task_name text, p_max_tasks integer, p_lease uuid, p_expiry double precision, p_retry_policy jsonb)
 RETURNS TABLE(id bigint, lease uuid, instance_id bigint, task_name text, parameters bytea, workflow_name text, instance_name text, enqueued_at timestamp with time zone, start_after timestamp with time zone, attempt integer, traceparent text, retry_policy text)
 LANGUAGE plpgsql
AS $function$
#variable_conflict use_column
DECLARE
    v_taken integer := 0;
    v_cursor text;
    v_walked text[];
    v_next_cursor text;
    v_keys text[];
    v_rooms integer[];
    v_unkeyed_at timestamp with time zone[];
    v_unkeyed_id bigint[];
    v_ahead integer := 0;
    v_lock integer;
    v_candidate record;
    v_running integer;
    v_at timestamp with time zone;
    v_started integer;
    v_recorded boolean := false;
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);
    -- (ordered like the keyed ready index, so the probe reads it, never the table)
    IF EXISTS (
        SELECT 1 FROM (
            SELECT k.concurrency_key FROM cereal_tasks AS k
            WHERE k.task_name = p_task_name AND k.state = 'queued'
              AND k.concurrency_key IS NOT NULL
            ORDER BY k.concurrency_key LIMIT 1
        ) AS first_key
    ) THEN
        -- visit at most 256 keys, going on from where the last claim of this name
        -- stopped and wrapping round, so every key has its turn
        SELECT c.after_key INTO v_cursor FROM cereal_key_cursors AS c
        WHERE c.task_name = p_task_name;
        v_walked := ARRAY(SELECT cereal_keys_after(p_task_name, v_cursor, 256));
        IF v_cursor IS NOT NULL AND cardinality(v_walked) < 256 THEN
            v_walked := v_walked || ARRAY(
                SELECT w.k FROM cereal_keys_after(p_task_name, NULL, 256 - cardinality(v_walked))
                    AS w(k)
                WHERE w.k <= v_cursor);
        END IF;
        IF cardinality(v_walked) >= 256 THEN
            v_next_cursor := v_walked[cardinality(v_walked)];
        END IF;
        IF v_next_cursor IS DISTINCT FROM v_cursor THEN
            IF v_next_cursor IS NULL THEN
                DELETE FROM cereal_key_cursors AS c WHERE c.task_name = p_task_name;
            ELSE
                INSERT INTO cereal_key_cursors AS c (task_name, after_key)
                VALUES (p_task_name, v_next_cursor)
                ON CONFLICT (task_name) DO UPDATE SET after_key = EXCLUDED.after_key;
            END IF;
        END IF;
        -- of those, the keys whose oldest due task has room in this snapshot, oldest
        -- due first; the first max tasks in due order come from keys whose oldest
        -- due task is among them: twice that many (at most 64, a bound on the
        -- locks one claim holds) leave room for keys that fill up. A key gives at
        -- most its room: the least of its oldest task's concurrency limit less its
        -- running tasks and its rate limit's starts less the starts still in the
        -- window (least() passes over a limit the task has not; it has one at
        -- least; tasks sharing a key share the limits).
        SELECT array_agg(picked.k), array_agg(picked.room) INTO v_keys, v_rooms
        FROM (
            SELECT counted.k, counted.room
            FROM (
                SELECT w.k, head.ready_rank, head.id,
                       least(head.concurrency_limit
                                 - (SELECT count(*) FROM cereal_tasks AS r
                                    WHERE head.concurrency_limit IS NOT NULL
                                      AND r.concurrency_key = w.k AND r.state = 'running'),
                             head.rate_limit_starts
                                 - (SELECT count(*) FROM cereal_key_starts AS s
                                    WHERE head.rate_limit_starts IS NOT NULL
                                      AND s.concurrency_key = w.k AND s.leaves_at > now()))
                           AS room
                FROM unnest(v_walked) AS w(k)
                CROSS JOIN LATERAL (
                    SELECT q.ready_rank, q.id, q.concurrency_limit, q.rate_limit_starts
                    FROM cereal_tasks AS q
                    WHERE q.task_name = p_task_name AND q.state = 'queued'
                      AND q.concurrency_key = w.k
                      AND q.ready_rank <= now() AND q.start_after <= now()
                    ORDER BY q.ready_rank, q.id LIMIT 1
                ) AS head
            ) AS counted
            WHERE counted.room > 0
            ORDER BY counted.ready_rank, counted.id
            LIMIT least(p_max_tasks * 2, 64)
        ) AS picked;
    END IF;

    IF v_keys IS NOT NULL THEN
        -- the decisive count below is fresh only when each statement takes a new
        -- snapshot, as READ COMMITTED does
        IF current_setting('transaction_isolation') <> 'read committed' THEN
            RAISE EXCEPTION 'claiming tasks with a concurrency key needs READ COMMITTED, not %',
                current_setting('transaction_isolation');
        END IF;
        -- Each of these keys is locked until this transaction ends, in one global
        -- order (by lock number), waiting for a claimer holding it (its claim is
        -- one short statement): claimers never deadlock, and never both pass a
        -- key over. Counted after the lock, a key's running tasks include every
        -- earlier claim of it, committed (a volatile function's statement takes a
        -- fresh snapshot) or this call's own.
        FOR v_lock IN SELECT DISTINCT hashtext(k) FROM unnest(v_keys) AS k ORDER BY 1 LOOP
            PERFORM pg_advisory_xact_lock(1667592805, v_lock);
        END LOOP;
        -- the due unkeyed tasks this claim could take: a keyed task is taken only
        -- while it and the unkeyed ones due before it fit, so neither kind starves
        SELECT array_agg(u.ready_rank ORDER BY u.ready_rank, u.id),
               array_agg(u.id ORDER BY u.ready_rank, u.id)
        INTO v_unkeyed_at, v_unkeyed_id
        FROM (
            SELECT q.ready_rank, q.id FROM cereal_tasks AS q
            WHERE q.task_name = p_task_name AND q.state = 'queued'
              AND q.concurrency_key IS NULL
              AND q.ready_rank <= now() AND q.start_after <= now()
            ORDER BY q.ready_rank, q.id
            LIMIT p_max_tasks
        ) AS u;
        FOR v_candidate IN
            SELECT c.id, c.ready_rank, c.concurrency_key, c.concurrency_limit,
                   c.rate_limit_starts, c.rate_limit_seconds
            FROM unnest(v_keys, v_rooms) AS k(key, room)
            CROSS JOIN LATERAL (
                SELECT q.id, q.concurrency_key, q.concurrency_limit, q.ready_rank,
                       q.rate_limit_starts, q.rate_limit_seconds
                FROM cereal_tasks AS q
                WHERE q.task_name = p_task_name AND q.state = 'queued'
                  AND q.concurrency_key = k.key
                  AND q.ready_rank <= now() AND q.start_after <= now()
                ORDER BY q.ready_rank, q.id
                LIMIT least(p_max_tasks, k.room)
            ) AS c
            ORDER BY c.ready_rank, c.id
        LOOP
            WHILE v_ahead < coalesce(cardinality(v_unkeyed_id), 0)
                  AND (v_unkeyed_at[v_ahead + 1], v_unkeyed_id[v_ahead + 1])
                      < (v_candidate.ready_rank, v_candidate.id) LOOP
                v_ahead := v_ahead + 1;
            END LOOP;
            EXIT WHEN v_taken + v_ahead >= p_max_tasks;
            PERFORM 1 FROM cereal_tasks AS t
            WHERE t.id = v_candidate.id AND t.state = 'queued'
            FOR UPDATE SKIP LOCKED;
            CONTINUE WHEN NOT FOUND;
            IF v_candidate.concurrency_limit IS NOT NULL THEN
                SELECT count(*) INTO v_running FROM cereal_tasks AS r
                WHERE r.concurrency_key = v_candidate.concurrency_key AND r.state = 'running';
                CONTINUE WHEN v_running >= v_candidate.concurrency_limit;
            END IF;
            IF v_candidate.rate_limit_starts IS NOT NULL THEN
                -- the window's end is read inside the counting statement, after its
                -- snapshot: a start another claimer pruned had left the window by then
                SELECT clock.at,
                       (SELECT count(*) FROM cereal_key_starts AS s
                        WHERE s.concurrency_key = v_candidate.concurrency_key
                          AND s.leaves_at > clock.at)
                INTO v_at, v_started
                FROM (SELECT clock_timestamp() AS at) AS clock;
                CONTINUE WHEN v_started >= v_candidate.rate_limit_starts;
                INSERT INTO cereal_key_starts (concurrency_key, leaves_at)
                VALUES (v_candidate.concurrency_key,
                        v_at + make_interval(secs => v_candidate.rate_limit_seconds));
                v_recorded := true;
            END IF;
            RETURN QUERY
            UPDATE cereal_tasks AS t
            SET state = 'running', lease = p_lease, heartbeat_at = now(),
                lease_expiry = p_expiry, attempt = t.attempt + 1,
                retry_policy = coalesce(t.retry_policy, p_retry_policy)
            WHERE t.id = v_candidate.id
            RETURNING t.id, t.lease, t.instance_id, t.task_name, t.parameters,
                      t.workflow_name, t.instance_name, t.enqueued_at, t.start_after,
                      t.attempt, t.traceparent, t.retry_policy::text;
            v_taken := v_taken + 1;
        END LOOP;
        IF v_recorded THEN
            -- starts that have left their window, a few per claim that records one
            DELETE FROM cereal_key_starts AS s
            WHERE s.id IN (SELECT e.id FROM cereal_key_starts AS e
                           WHERE e.leaves_at <= clock_timestamp()
                           ORDER BY e.leaves_at LIMIT 64
                           FOR UPDATE SKIP LOCKED);
        END IF;
        IF v_taken >= p_max_tasks THEN
            RETURN;
        END IF;
    END IF;

    -- tasks without a key: one set-based statement through the unkeyed ready
    -- index, rows another claimer holds skipped inside the limit
    RETURN QUERY
    UPDATE cereal_tasks AS t
    SET state = 'running', lease = p_lease, heartbeat_at = now(),
        lease_expiry = p_expiry, attempt = t.attempt + 1,
        retry_policy = coalesce(t.retry_policy, p_retry_policy)
    FROM (
        SELECT q.id FROM cereal_tasks AS q
        WHERE q.task_name = p_task_name AND q.state = 'queued'
          AND q.concurrency_key IS NULL
          AND q.ready_rank <= now() AND q.start_after <= now()
        ORDER BY q.ready_rank, q.id
        LIMIT p_max_tasks - v_taken
        FOR UPDATE SKIP LOCKED
    ) AS picked
    WHERE t.id = picked.id
    RETURNING t.id, t.lease, t.instance_id, t.task_name, t.parameters, t.workflow_name,
              t.instance_name, t.enqueued_at, t.start_after, t.attempt, t.traceparent,
              t.retry_policy::text;
END
$function$;

CREATE FUNCTION cereal_apply_decisions(p_instance_ids bigint[], p_tokens uuid[], p_finishes boolean[], p_payloads bytea[], p_completed bigint[], p_results bytea[], p_errors text[], p_event_ids bigint[], p_result_ids bigint[], p_task_owners integer[], p_task_names text[], p_task_parameters bytea[], p_task_start_after timestamp with time zone[], p_note text, p_task_traceparents text[], p_error_types text[], p_error_tracebacks text[], p_task_retry_policies jsonb[], p_task_concurrency_keys text[], p_task_concurrency_limits integer[], p_task_rate_limit_starts integer[], p_task_rate_limit_seconds double precision[], p_task_priorities integer[])
 RETURNS SETOF bigint
 LANGUAGE plpgsql
AS $function$
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
         traceparent, retry_policy, concurrency_key, concurrency_limit, rate_limit_starts,
         rate_limit_seconds, priority)
    SELECT i.id, i.workflow_name, i.instance_name, t.task_name, t.parameters,
           coalesce(t.start_after, now()), t.traceparent, t.retry_policy,
           t.concurrency_key, t.concurrency_limit, t.rate_limit_starts, t.rate_limit_seconds,
           coalesce(t.priority, 0)
    FROM unnest(p_task_owners, p_task_names, p_task_parameters, p_task_start_after,
                p_task_traceparents, p_task_retry_policies, p_task_concurrency_keys,
                p_task_concurrency_limits, p_task_rate_limit_starts, p_task_rate_limit_seconds,
                p_task_priorities)
             WITH ORDINALITY AS t(owner, task_name, parameters, start_after, traceparent,
                                  retry_policy, concurrency_key, concurrency_limit,
                                  rate_limit_starts, rate_limit_seconds, priority, position)
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
             error_type, error_traceback, instance_id)
        SELECT workflow_name, instance_name, parameters, result, error, started_at,
               clock_timestamp(), error_type, error_traceback, id
        FROM gone
        ORDER BY id
    )
    SELECT coalesce(array_agg(id), '{}') INTO v_finished FROM gone;

    IF p_note IS NOT NULL AND cardinality(v_continued) > 0 THEN
        PERFORM pg_notify('cereal_wakeup', p_note);
    END IF;
    RETURN QUERY SELECT unnest(v_continued || v_finished);
END
$function$;
