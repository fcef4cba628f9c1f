-- The claim returns each task's ready rank, so a claimer orders what it took by
-- it (reading it back by id in the calling statement missed tasks committed while
-- the claim waited for a key's lock), as cereal_claim_ranked_tasks; the old name
-- keeps its result type for workers of earlier releases, which call it prepared,
-- and runs the same claim. A full-window mark now uses the clock the key's window
-- was counted with: a start that left between the count and the mark no longer
-- moves the mark to the next start's leaving time.

CREATE FUNCTION cereal_claim_ranked_tasks(p_task_name text, p_max_tasks integer, p_lease uuid, p_expiry double precision, p_retry_policy jsonb)
 RETURNS TABLE(id bigint, lease uuid, instance_id bigint, task_name text, parameters bytea, workflow_name text, instance_name text, enqueued_at timestamp with time zone, start_after timestamp with time zone, attempt integer, traceparent text, retry_policy text, ready_rank timestamp with time zone)
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
    v_started integer;
    v_recorded boolean := false;
    -- per key met in the loop: its running tasks and starts in the window, counted
    -- once after its lock and then kept with this claim's own takes (no other claimer
    -- can add any while the lock is held; ends and departures only make it safer)
    v_count_keys text[] := '{}';
    v_running_of integer[] := '{}';
    v_started_of integer[] := '{}';
    v_counted_at timestamp with time zone[] := '{}';
    v_at timestamp with time zone;
    v_full_keys text[] := '{}';
    v_pos integer;
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
                             -- a window a claim found full stays full until its
                             -- first start leaves it (cereal_key_windows); others
                             -- are counted after the key's lock
                             CASE WHEN head.rate_limit_starts IS NULL THEN NULL
                                  WHEN EXISTS (SELECT 1 FROM cereal_key_windows AS m
                                               WHERE m.concurrency_key = w.k
                                                 AND m.full_until > now()) THEN 0
                                  ELSE head.rate_limit_starts END)
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
            v_pos := array_position(v_count_keys, v_candidate.concurrency_key);
            IF v_pos IS NULL THEN
                -- the window's end is read inside the counting statement, after its
                -- snapshot: a start another claimer pruned had left the window by then
                SELECT clock.at,
                       (SELECT count(*) FROM cereal_tasks AS r
                        WHERE r.concurrency_key = v_candidate.concurrency_key
                          AND r.state = 'running'),
                       (SELECT count(*) FROM cereal_key_starts AS s
                        WHERE s.concurrency_key = v_candidate.concurrency_key
                          AND s.leaves_at > clock.at)
                INTO v_at, v_running, v_started
                FROM (SELECT clock_timestamp() AS at) AS clock;
                v_count_keys := v_count_keys || v_candidate.concurrency_key;
                v_running_of := v_running_of || v_running::integer;
                v_started_of := v_started_of || v_started::integer;
                v_counted_at := v_counted_at || v_at;
                v_pos := cardinality(v_count_keys);
            END IF;
            CONTINUE WHEN v_candidate.concurrency_limit IS NOT NULL
                          AND v_running_of[v_pos] >= v_candidate.concurrency_limit;
            IF v_candidate.rate_limit_starts IS NOT NULL THEN
                IF v_started_of[v_pos] >= v_candidate.rate_limit_starts THEN
                    v_full_keys := v_full_keys || v_candidate.concurrency_key;
                    CONTINUE;
                END IF;
                -- the start is timed now, after the count: it leaves the window no
                -- earlier than a start counted there could
                INSERT INTO cereal_key_starts (concurrency_key, leaves_at)
                VALUES (v_candidate.concurrency_key,
                        clock_timestamp()
                            + make_interval(secs => v_candidate.rate_limit_seconds));
                v_started_of[v_pos] := v_started_of[v_pos] + 1;
                v_recorded := true;
                IF v_started_of[v_pos] >= v_candidate.rate_limit_starts THEN
                    v_full_keys := v_full_keys || v_candidate.concurrency_key;
                END IF;
            END IF;
            v_running_of[v_pos] := v_running_of[v_pos] + 1;
            RETURN QUERY
            UPDATE cereal_tasks AS t
            SET state = 'running', lease = p_lease, heartbeat_at = now(),
                lease_expiry = p_expiry, attempt = t.attempt + 1,
                retry_policy = coalesce(t.retry_policy, p_retry_policy)
            WHERE t.id = v_candidate.id
            RETURNING t.id, t.lease, t.instance_id, t.task_name, t.parameters,
                      t.workflow_name, t.instance_name, t.enqueued_at, t.start_after,
                      t.attempt, t.traceparent, t.retry_policy::text, t.ready_rank;
            v_taken := v_taken + 1;
        END LOOP;
        IF cardinality(v_full_keys) > 0 THEN
            -- a full window stays full until its first start leaves: later claims
            -- pass the key over until then without counting its window (the first
            -- start inside at the count, whose clock says which were inside)
            INSERT INTO cereal_key_windows AS m (concurrency_key, full_until)
            SELECT f.k, coalesce((SELECT min(s.leaves_at) FROM cereal_key_starts AS s
                                  WHERE s.concurrency_key = f.k
                                    AND s.leaves_at
                                        > v_counted_at[array_position(v_count_keys, f.k)]),
                                 clock_timestamp())
            FROM (SELECT DISTINCT k FROM unnest(v_full_keys) AS k) AS f
            ON CONFLICT (concurrency_key) DO UPDATE SET full_until = EXCLUDED.full_until;
        END IF;
        IF v_recorded THEN
            -- a recorded start must outlive a crash of the server (the claim's own
            -- commit is otherwise asynchronous: a lost lease only returns its task
            -- to the queue, but a lost start would let one more through the window)
            PERFORM set_config('synchronous_commit', 'on', true);
            -- starts that have left their window, a few per claim that records one
            -- (the sweep's trim deletes the rest)
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
              t.retry_policy::text, t.ready_rank;
END
$function$;


CREATE OR REPLACE FUNCTION cereal_claim_tasks(p_task_name text, p_max_tasks integer, p_lease uuid, p_expiry double precision, p_retry_policy jsonb)
 RETURNS TABLE(id bigint, lease uuid, instance_id bigint, task_name text, parameters bytea, workflow_name text, instance_name text, enqueued_at timestamp with time zone, start_after timestamp with time zone, attempt integer, traceparent text, retry_policy text)
 LANGUAGE sql
AS $function$
    SELECT c.id, c.lease, c.instance_id, c.task_name, c.parameters, c.workflow_name,
           c.instance_name, c.enqueued_at, c.start_after, c.attempt, c.traceparent,
           c.retry_policy
    FROM cereal_claim_ranked_tasks(p_task_name, p_max_tasks, p_lease, p_expiry,
                                   p_retry_policy) AS c
$function$;
