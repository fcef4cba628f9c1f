-- Runtime queries of the PostgreSQL driver, one named block each.
-- Every value is bound (%(name)s); identifiers are fixed here.
-- The wakeup channel is 'cereal_wakeup'; %(note)s is NULL when nothing is announced.

-- name: enqueue_workflow
-- Create a live instance and its start event; no row when the names are live.
WITH inst AS (
    INSERT INTO cereal_workflow_instances
        (workflow_name, instance_name, parameters, ready_at, traceparent)
    VALUES (%(workflow_name)s, %(instance_name)s, %(parameters)s, now(), %(traceparent)s)
    ON CONFLICT (workflow_name, instance_name) DO NOTHING
    RETURNING id, workflow_name
), ev AS (
    INSERT INTO cereal_workflow_events (instance_id, workflow_name, event_type)
    SELECT id, workflow_name, 'start' FROM inst
    RETURNING instance_id
)
SELECT ev.instance_id,
       CASE WHEN %(note)s::text IS NULL THEN NULL
            ELSE pg_notify('cereal_wakeup', %(note)s::text)::text END AS notified
FROM ev

-- name: enqueue_workflows
-- enqueue_workflow for a group of callers (a group commit): one row, with its
-- position, for each run created. Of two callers naming the same run the first
-- creates it; the others, and callers whose names are live, get no row. Rows
-- are inserted in name order, so two groups in two processes that name the
-- same runs wait on each other's inserts in one order and cannot deadlock.
WITH wanted AS (
    SELECT DISTINCT ON (w.workflow_name, w.instance_name)
           w.workflow_name, w.instance_name, w.parameters, w.traceparent, w.position
    FROM unnest(%(workflow_names)s::text[], %(instance_names)s::text[],
                %(parameters)s::bytea[], %(traceparents)s::text[])
         WITH ORDINALITY AS w(workflow_name, instance_name, parameters, traceparent, position)
    ORDER BY w.workflow_name, w.instance_name, w.position
), inst AS (
    INSERT INTO cereal_workflow_instances
        (workflow_name, instance_name, parameters, ready_at, traceparent)
    SELECT workflow_name, instance_name, parameters, now(), traceparent
    FROM wanted
    ORDER BY workflow_name, instance_name
    ON CONFLICT (workflow_name, instance_name) DO NOTHING
    RETURNING id, workflow_name, instance_name
), ev AS (
    INSERT INTO cereal_workflow_events (instance_id, workflow_name, event_type)
    SELECT id, workflow_name, 'start' FROM inst
    RETURNING instance_id
), notified AS (
    SELECT pg_notify('cereal_wakeup', %(note)s::text)::text AS notified
    WHERE %(note)s::text IS NOT NULL AND EXISTS (SELECT 1 FROM ev)
)
SELECT wanted.position, inst.id AS instance_id, notified.notified
FROM inst
JOIN wanted USING (workflow_name, instance_name)
LEFT JOIN notified ON true

-- name: store_identity
-- Which store this session's statements reach: the cluster (its system
-- identifier, fixed at initdb, the same through any proxy), the database (its
-- oid, kept across renames) and the instance table the search path finds
-- (NULL when there is none). The names are for messages only.
SELECT (SELECT system_identifier FROM pg_control_system()) AS system_identifier,
       (SELECT oid FROM pg_database WHERE datname = current_database()) AS database_oid,
       current_database() AS database_name,
       c.oid AS table_oid,
       n.nspname AS schema_name
FROM (SELECT to_regclass('cereal_workflow_instances') AS found) AS t
LEFT JOIN pg_class AS c ON c.oid = t.found
LEFT JOIN pg_namespace AS n ON n.oid = c.relnamespace

-- name: store_identity_in_cluster
-- store_identity for a role that may not call pg_control_system() (PUBLIC may
-- by default; a hosting provider can revoke it): no cluster identifier.
SELECT NULL::bigint AS system_identifier,
       (SELECT oid FROM pg_database WHERE datname = current_database()) AS database_oid,
       current_database() AS database_name,
       c.oid AS table_oid,
       n.nspname AS schema_name
FROM (SELECT to_regclass('cereal_workflow_instances') AS found) AS t
LEFT JOIN pg_class AS c ON c.oid = t.found
LEFT JOIN pg_namespace AS n ON n.oid = c.relnamespace

-- name: enqueue_keyed_workflow
-- Create a run under a workflow concurrency key, started or waiting (see the
-- function in migration 0026); no row when the names are live.
SELECT k.id,
       CASE WHEN %(note)s::text IS NULL THEN NULL
            ELSE pg_notify('cereal_wakeup', %(note)s::text)::text END AS notified
FROM (SELECT cereal_enqueue_keyed_workflow(
          %(workflow_name)s, %(instance_name)s, %(parameters)s, %(traceparent)s,
          %(concurrency_key)s, %(concurrency_limit)s) AS id) AS k
WHERE k.id IS NOT NULL

-- name: start_waiting_runs
-- Start the waiting runs of these workflow concurrency keys that now fit (0026);
-- one row per run started, with its workflow name.
SELECT s.name AS workflow_name FROM cereal_start_waiting_runs(%(keys)s::text[]) AS s(name)

-- name: keys_with_waiting_runs
-- Sweep: the next %(limit)s keys after %(after)s that have a waiting run, in key
-- order (the waiting index), so sweeps go round every key.
SELECT DISTINCT concurrency_key FROM cereal_workflow_instances
WHERE waiting_for_key AND concurrency_key > %(after)s
ORDER BY concurrency_key
LIMIT %(limit)s

-- name: cancel_workflow
-- Append a cancel event to the live instance and mark it ready (unless it waits
-- for its workflow concurrency key: its events are delivered once it starts).
-- Updating the instance row first orders this before or after a concurrent
-- decision or finish (a finish then deletes the event); the update applies to
-- the row's latest version, so a decision that just emptied the queue cannot
-- hide the new event.
WITH inst AS (
    UPDATE cereal_workflow_instances
    SET ready_at = CASE WHEN waiting_for_key THEN NULL ELSE coalesce(ready_at, now()) END
    WHERE workflow_name = %(workflow_name)s AND instance_name = %(instance_name)s
    RETURNING id, workflow_name
), ev AS (
    INSERT INTO cereal_workflow_events (instance_id, workflow_name, event_type)
    SELECT id, workflow_name, 'cancel' FROM inst
    RETURNING instance_id
)
SELECT ev.instance_id,
       CASE WHEN %(note)s::text IS NULL THEN NULL
            ELSE pg_notify('cereal_wakeup', %(note)s::text)::text END AS notified
FROM ev

-- name: claim_instances
-- Claim up to max_instances instances with their oldest events, in one
-- statement (see the function in migrations 0004, 0007, 0008 and 0015, which
-- added the trace contexts; 0027 keeps its plan): each workflow name is an index
-- range scan of the claimable index (ready, unclaimed instances only), so the cost does not
-- grow with the queued events or the history, and rows locked by a
-- concurrent completion or claim are skipped, never waited for.
SELECT * FROM cereal_claim_traced_instances(%(workflow_names)s::text[], %(max_instances)s,
                                            %(max_events)s, %(token)s, %(expiry)s)

-- name: claimed_instances
-- The instances a claim token holds (to release a claim whose caller was cancelled).
SELECT id AS instance_id FROM cereal_workflow_instances WHERE claim_token = %(token)s

-- name: lock_claimed_instance
-- The first statement of a release: lock our claimed instance, so that the
-- next statement's fresh snapshot sees every event committed before it (event
-- writers update the instance row first, and wait for this lock).
SELECT id FROM cereal_workflow_instances
WHERE id = %(instance_id)s AND claim_token = %(token)s
FOR NO KEY UPDATE

-- name: apply_decisions
-- A group of decisions in one statement (see the function in migrations 0004,
-- 0007, 0008, 0019, 0020, 0021, 0025, 0026 and 0027); returns the instance id and
-- position of each decision applied, then the workflow name of each run started from
-- waiting.
SELECT d.applied_instance_id AS id, d.applied_position AS position,
       d.started_workflow
FROM cereal_apply_decisions(
    %(instance_ids)s::bigint[], %(tokens)s::uuid[], %(finishes)s::boolean[],
    %(payloads)s::bytea[], %(completed)s::bigint[], %(results)s::bytea[],
    %(errors)s::text[], %(event_ids)s::bigint[], %(result_ids)s::bigint[],
    %(task_owners)s::integer[], %(task_names)s::text[], %(task_parameters)s::bytea[],
    %(task_start_after)s::timestamptz[], %(note)s::text,
    %(task_traceparents)s::text[], %(error_types)s::text[],
    %(error_tracebacks)s::text[], %(task_retry_policies)s::jsonb[],
    %(task_concurrency_keys)s::text[], %(task_concurrency_limits)s::integer[],
    %(task_rate_limit_starts)s::integer[],
    %(task_rate_limit_seconds)s::double precision[],
    %(task_priorities)s::integer[], %(task_idempotency_keys)s::text[]) AS d

-- name: apply_decisions_and_claim
-- apply_decisions, then in the same transaction a claim of up to
-- claim_max_tasks ready tasks of claim_task_name (claim_tasks' claim, for an idle
-- runner of this process that promised to take the tasks the decisions add; see
-- migration 0028). Rows: each decision applied and each run started (as
-- apply_decisions), then each task claimed (claimed_id not null).
SELECT d.applied_instance_id AS id, d.applied_position AS position,
       d.started_workflow, d.claimed_id, d.claimed_lease, d.claimed_instance_id,
       d.claimed_task_name, d.claimed_parameters, d.claimed_workflow_name,
       d.claimed_instance_name, d.claimed_enqueued_at, d.claimed_attempt,
       d.claimed_traceparent, d.claimed_retry_policy, d.claimed_ready_rank
FROM cereal_apply_decisions_and_claim(
    %(instance_ids)s::bigint[], %(tokens)s::uuid[], %(finishes)s::boolean[],
    %(payloads)s::bytea[], %(completed)s::bigint[], %(results)s::bytea[],
    %(errors)s::text[], %(event_ids)s::bigint[], %(result_ids)s::bigint[],
    %(task_owners)s::integer[], %(task_names)s::text[], %(task_parameters)s::bytea[],
    %(task_start_after)s::timestamptz[], %(note)s::text,
    %(task_traceparents)s::text[], %(error_types)s::text[],
    %(error_tracebacks)s::text[], %(task_retry_policies)s::jsonb[],
    %(task_concurrency_keys)s::text[], %(task_concurrency_limits)s::integer[],
    %(task_rate_limit_starts)s::integer[],
    %(task_rate_limit_seconds)s::double precision[],
    %(task_priorities)s::integer[], %(task_idempotency_keys)s::text[],
    %(claim_task_name)s::text, %(claim_max_tasks)s::integer, %(claim_lease)s::uuid,
    %(claim_expiry)s::double precision, %(claim_retry_policy)s::jsonb) AS d

-- name: release_claimed
-- Give a claim up without a decision: its events stay and are delivered again.
-- ready_at is recomputed (after lock_claimed_instance) in case the claim found
-- no event at all.
UPDATE cereal_workflow_instances
SET claim_token = NULL, claimed_at = NULL, claim_expiry = NULL,
    ready_at = (SELECT min(enqueued_at) FROM cereal_workflow_events
                WHERE instance_id = %(instance_id)s)
WHERE id = %(instance_id)s AND claim_token = %(token)s
RETURNING id

-- name: heartbeat_claim
-- Keep a claim alive during a long callback; no row when it is gone.
UPDATE cereal_workflow_instances SET claimed_at = now()
WHERE id = %(instance_id)s AND claim_token = %(token)s
RETURNING id

-- name: release_lapsed_claims
-- Sweep: claims whose holder stopped heartbeating (crashed) for longer than
-- its own expiry are released; their events are delivered again.
UPDATE cereal_workflow_instances AS i
SET claim_token = NULL, claimed_at = NULL, claim_expiry = NULL
FROM (
    SELECT id FROM cereal_workflow_instances
    WHERE claim_token IS NOT NULL
      AND claimed_at < now() - make_interval(secs => coalesce(claim_expiry, %(expiry)s))
    FOR NO KEY UPDATE SKIP LOCKED
) AS lapsed
WHERE i.id = lapsed.id
RETURNING i.workflow_name

-- name: kill_instance
-- A kill: as finish_claimed, found by names, whoever holds the claim. It does
-- not wait for a running callback (a claim is a token in the row, not a lock):
-- that callback's decision finds the instance gone.
-- A run under a workflow concurrency key: the caller then starts the key's
-- waiting runs that fit (start_waiting_runs): in the same transaction for a
-- started run, after the commit for a waiting one (see PostgresDriver.kill_workflow).
WITH inst AS (
    DELETE FROM cereal_workflow_instances
    WHERE workflow_name = %(workflow_name)s AND instance_name = %(instance_name)s
    RETURNING id, workflow_name, instance_name, parameters, started_at, concurrency_key,
              concurrency_limit, waiting_for_key
), history AS (
    INSERT INTO cereal_workflow_results
        (workflow_name, instance_name, parameters, result, error, started_at, ended_at,
         instance_id, concurrency_key, concurrency_limit)
    SELECT workflow_name, instance_name, parameters, NULL, %(error)s::text,
           started_at, clock_timestamp(), id, concurrency_key, concurrency_limit
    FROM inst
)
SELECT id, concurrency_key, waiting_for_key FROM inst

-- name: get_workflow_instance
-- The live instance if any, else the newest finished run.
SELECT * FROM (
    SELECT 0 AS rank, workflow_name, instance_name, status, parameters, payload,
           NULL::bytea AS result, NULL::text AS error, started_at,
           NULL::timestamptz AS ended_at, NULL::text AS error_type,
           NULL::text AS error_traceback, concurrency_key, concurrency_limit,
           waiting_for_key
    FROM cereal_workflow_instances
    WHERE workflow_name = %(workflow_name)s AND instance_name = %(instance_name)s
    UNION ALL
    (SELECT 1 AS rank, workflow_name, instance_name, 'completed', parameters, NULL,
            result, error, started_at, ended_at, error_type, error_traceback,
            concurrency_key, concurrency_limit, false
     FROM cereal_workflow_results
     WHERE workflow_name = %(workflow_name)s AND instance_name = %(instance_name)s
     ORDER BY ended_at DESC, id DESC
     LIMIT 1)
) AS found
ORDER BY rank
LIMIT 1

-- name: list_workflow_instances
-- One row per name pair: the live row, else the newest finished run.
WITH live AS (
    SELECT workflow_name, instance_name, status, parameters, payload, started_at
    FROM cereal_workflow_instances
    WHERE (%(workflow_name)s::text IS NULL OR workflow_name = %(workflow_name)s::text)
      AND (%(instance_name)s::text IS NULL OR instance_name = %(instance_name)s::text)
), finished AS (
    SELECT DISTINCT ON (workflow_name, instance_name)
           workflow_name, instance_name, parameters, result, error, started_at, ended_at
    FROM cereal_workflow_results
    WHERE %(is_running)s::boolean IS NOT TRUE
      AND (%(workflow_name)s::text IS NULL OR workflow_name = %(workflow_name)s::text)
      AND (%(instance_name)s::text IS NULL OR instance_name = %(instance_name)s::text)
    ORDER BY workflow_name, instance_name, ended_at DESC, id DESC
)
SELECT workflow_name, instance_name,
       COALESCE(live.status, 'completed') AS status,
       CASE WHEN live.status IS NULL THEN finished.parameters ELSE live.parameters END
           AS parameters,
       live.payload,
       CASE WHEN live.status IS NULL THEN finished.result END AS result,
       CASE WHEN live.status IS NULL THEN finished.error END AS error,
       COALESCE(live.started_at, finished.started_at) AS started_at,
       CASE WHEN live.status IS NULL THEN finished.ended_at END AS ended_at
FROM live FULL OUTER JOIN finished USING (workflow_name, instance_name)
WHERE %(is_running)s::boolean IS NULL
   OR (live.status IS NOT NULL) = %(is_running)s::boolean
-- newest_first: by start time, newest first (the CASE is NULL for every row otherwise)
ORDER BY CASE WHEN %(newest_first)s::boolean
              THEN COALESCE(live.started_at, finished.started_at) END DESC,
         workflow_name, instance_name
LIMIT %(limit)s::bigint OFFSET %(offset)s::bigint

-- name: list_workflow_instances_newest_page
-- One page of list_workflow_instances newest first, read in about offset +
-- limit rows however long the history: live rows by start time, and finished
-- runs walked newest start first (cereal_workflow_results_started), each kept
-- only when its pair has no live row and it is the pair's newest finished run
-- (the same rows and order as list_workflow_instances). %(window)s is offset
-- + limit: each kind needs at most that many.
WITH live AS (
    SELECT workflow_name, instance_name, status, parameters, payload,
           NULL::bytea AS result, NULL::text AS error, started_at,
           NULL::timestamptz AS ended_at
    FROM cereal_workflow_instances
    WHERE %(is_running)s::boolean IS NOT FALSE
      AND (%(workflow_name)s::text IS NULL OR workflow_name = %(workflow_name)s::text)
      AND (%(instance_name)s::text IS NULL OR instance_name = %(instance_name)s::text)
    ORDER BY started_at DESC, workflow_name, instance_name
    LIMIT %(window)s::bigint
), finished AS (
    SELECT r.workflow_name, r.instance_name, 'completed' AS status, r.parameters,
           NULL::bytea AS payload, r.result, r.error, r.started_at, r.ended_at
    FROM cereal_workflow_results AS r
    WHERE %(is_running)s::boolean IS NOT TRUE
      AND (%(workflow_name)s::text IS NULL OR r.workflow_name = %(workflow_name)s::text)
      AND (%(instance_name)s::text IS NULL OR r.instance_name = %(instance_name)s::text)
      AND NOT EXISTS (
          SELECT 1 FROM cereal_workflow_instances AS i
          WHERE i.workflow_name = r.workflow_name AND i.instance_name = r.instance_name)
      AND NOT EXISTS (
          SELECT 1 FROM cereal_workflow_results AS n
          WHERE n.workflow_name = r.workflow_name AND n.instance_name = r.instance_name
            AND (n.ended_at, n.id) > (r.ended_at, r.id))
    ORDER BY r.started_at DESC, r.workflow_name, r.instance_name
    LIMIT %(window)s::bigint
)
SELECT * FROM (SELECT * FROM live UNION ALL SELECT * FROM finished) AS page
ORDER BY started_at DESC, workflow_name, instance_name
LIMIT %(limit)s::bigint OFFSET %(offset)s::bigint

-- name: claim_tasks
-- Claim up to max_tasks ready tasks of one name under the claim's lease token
-- (see the function in migrations 0004, 0007, 0008, 0019-0023), in one statement;
-- a task stored without a retry policy takes the claimer's. Each row carries its
-- ready rank: the claimer orders them by it (cereal_claim_tasks, for workers of
-- earlier releases, returns the same claim without it).
SELECT * FROM cereal_claim_ranked_tasks(%(task_name)s, %(max_tasks)s, %(lease)s,
                                        %(expiry)s, %(retry_policy)s::jsonb)

-- name: unclaim_tasks
-- Give the tasks of one claim (its lease token) back to the queue: their
-- claimer was cancelled before using them. A claim that never committed, or
-- whose leases are gone, matches nothing. It takes no instance lock, so it
-- skips task rows locked meanwhile (a finish or kill deleting them) instead of
-- waiting for them against the lock order.
UPDATE cereal_tasks AS t
SET state = 'queued', lease = NULL, heartbeat_at = NULL, lease_expiry = NULL,
    attempt = t.attempt - 1
FROM (
    SELECT lt.id FROM cereal_tasks AS lt
    WHERE lt.state = 'running' AND lt.lease = %(lease)s
    FOR UPDATE OF lt SKIP LOCKED
) AS mine
WHERE t.id = mine.id

-- name: resume_task_lease
-- Take up one task lease again by its token (its holder lost its completer,
-- not the lease): refresh it like a heartbeat and return what a claim returns.
-- It touches the task row only, so it waits for no instance lock.
UPDATE cereal_tasks AS t SET heartbeat_at = now()
WHERE t.id = %(task_id)s AND t.lease = %(lease)s AND t.state = 'running'
RETURNING t.id, t.lease, t.instance_id, t.task_name, t.parameters, t.workflow_name,
          t.instance_name, t.enqueued_at, t.start_after, t.attempt, t.traceparent,
          t.retry_policy::text AS retry_policy

-- name: heartbeat_tasks
-- Refresh many leases in one statement; returns the ids whose lease still
-- exists. A row locked by a concurrent completion or expiry is skipped, not
-- waited for (it is being finished anyway), and reported as live.
WITH given AS (
    SELECT * FROM unnest(%(task_ids)s::bigint[], %(leases)s::uuid[]) AS g(id, lease)
), refreshed AS (
    UPDATE cereal_tasks AS t SET heartbeat_at = now()
    FROM (
        SELECT lt.id FROM cereal_tasks AS lt
        JOIN given ON lt.id = given.id AND lt.lease = given.lease
        WHERE lt.state = 'running'
        FOR NO KEY UPDATE OF lt SKIP LOCKED
    ) AS mine
    WHERE t.id = mine.id
    RETURNING t.id
)
SELECT given.id FROM given
WHERE given.id IN (SELECT id FROM refreshed)
   OR EXISTS (SELECT 1 FROM cereal_tasks AS lt
              WHERE lt.id = given.id AND lt.lease = given.lease AND lt.state = 'running')

-- name: complete_tasks
-- Turn leased tasks (a group commit of completions) into task results and
-- task_complete events. The instance rows are locked first (the one lock
-- order), in id order, so concurrent groups cannot deadlock, and marked ready
-- on their latest version: a decision in progress is waited for and then sees
-- these events; a kill or finish first makes the completion find nothing.
-- One report per lease: reports on the same lease can share a group (two
-- callers racing on one completer), so only the first of them in the group is
-- applied and the others find nothing, as a report on a stale lease does.
-- Returns the position (1-based, in the arrays) of each report applied; one
-- whose lease or instance is gone is left out. ``note``, when given, is sent
-- with the commit if any completed.
WITH given AS (
    SELECT * FROM unnest(%(task_ids)s::bigint[], %(leases)s::uuid[],
                         %(instance_ids)s::bigint[], %(statuses)s::text[],
                         %(errors)s::text[], %(results)s::bytea[],
                         %(error_types)s::text[], %(error_tracebacks)s::text[],
                         %(traceparents)s::text[]) WITH ORDINALITY
        AS g(task_id, lease, instance_id, status, error, result, error_type, error_traceback,
             traceparent, position)
), report AS (
    SELECT DISTINCT ON (given.task_id, given.lease) given.*
    FROM given
    ORDER BY given.task_id, given.lease, given.position
), owners AS (
    -- the lock returns each row's latest version, so ready_at is its current value
    SELECT i.id, i.ready_at FROM cereal_workflow_instances AS i
    WHERE i.id IN (SELECT report.instance_id FROM report
                   JOIN cereal_tasks AS t
                     ON t.id = report.task_id AND t.lease = report.lease
                    AND t.state = 'running')
    ORDER BY i.id
    FOR NO KEY UPDATE
), marked AS (
    -- only a run not ready yet is written (one already ready keeps its time: a
    -- new row version and its WAL for nothing cost every group). The test is on
    -- the locked version, not the statement's snapshot, which may predate a
    -- decision that cleared ready_at
    UPDATE cereal_workflow_instances AS i SET ready_at = now()
    FROM owners
    WHERE i.id = owners.id AND owners.ready_at IS NULL
    RETURNING i.id
), task AS (
    -- a task row matches at most one report: a row has one lease. The task's run
    -- must be its report's and locked; asked of the report, not of the task row, so
    -- that each task is found by its id: the planner had matched the locked runs to
    -- cereal_tasks_instance, reading every task of a run (1 000 in a fan-out) per group
    DELETE FROM cereal_tasks AS t
    USING report
    WHERE t.id = report.task_id AND t.lease = report.lease AND t.state = 'running'
      AND t.instance_id = report.instance_id
      AND report.instance_id IN (SELECT id FROM owners)
    RETURNING t.id, t.instance_id, t.workflow_name, t.task_name, t.parameters, t.enqueued_at,
              t.attempt, t.traceparent, t.concurrency_key, t.concurrency_limit,
              t.rate_limit_starts, t.rate_limit_seconds, t.priority, report.position
), stored AS (
    -- the result keeps the reporting run's span, else the task's own, and the task's
    -- concurrency key and limits (a dead letter requeued runs under them again)
    INSERT INTO cereal_task_results
        (instance_id, task_id, task_name, parameters, status, error, result, enqueued_at,
         error_type, error_traceback, attempts, traceparent, concurrency_key,
         concurrency_limit, rate_limit_starts, rate_limit_seconds, priority)
    SELECT task.instance_id, task.id, task.task_name, task.parameters, report.status,
           report.error, report.result, task.enqueued_at, report.error_type,
           report.error_traceback, greatest(task.attempt, 1),
           coalesce(report.traceparent, task.traceparent), task.concurrency_key,
           task.concurrency_limit, task.rate_limit_starts, task.rate_limit_seconds,
           task.priority
    FROM task JOIN report ON report.position = task.position
    ORDER BY report.position
    RETURNING id, instance_id, task_id
), event AS (
    INSERT INTO cereal_workflow_events
        (instance_id, workflow_name, event_type, task_result_id)
    SELECT stored.instance_id, task.workflow_name, 'task_complete', stored.id
    FROM stored JOIN task ON task.id = stored.task_id
    ORDER BY stored.id
), announced AS (
    -- the wakeup travels with this commit: no transaction of its own
    SELECT pg_notify('cereal_wakeup', %(note)s::text)
    WHERE %(note)s::text IS NOT NULL AND EXISTS (SELECT 1 FROM task)
)
SELECT id, position FROM task WHERE (SELECT count(*) FROM announced) >= 0

-- name: expired_task_leases
-- Sweep: up to a limit of running tasks past their lease deadline (last heartbeat
-- + the holder's expiry; a lease without a stored expiry, taken by older code, by
-- the sweeper's), oldest heartbeat first (the leases index). A read that locks
-- nothing: the sweep decides each lease under its stored retry policy (never
-- parsed here, so no stored value can make this fail), then settles it
-- (lock_settled_leases, then retry_tasks or lose_tasks, in one transaction).
SELECT t.id, t.lease::text AS lease, t.attempt, t.task_name, t.workflow_name,
       t.instance_name, t.retry_policy::text AS retry_policy
FROM cereal_tasks AS t
WHERE t.state = 'running'
  AND t.heartbeat_at < now() - make_interval(secs => coalesce(t.lease_expiry, %(expiry)s))
ORDER BY t.heartbeat_at, t.id
LIMIT %(limit)s

-- name: lock_settled_leases
-- Sweep: of the given (task id, lease) pairs, the tasks still running under that
-- lease and still past their deadline (as expired_task_leases), locked with their
-- instance rows; a heartbeat, report or new claim since the read makes a pair match
-- nothing. Both rows are skipped when locked: the sweep never waits, so it cannot
-- deadlock with a kill holding the instance (a skipped lease stays expired for the
-- next sweep). The instance row is locked first (rows are locked in clause order):
-- a sweep that skips a task because another holds its instance keeps no lock on
-- the task row, which that other sweep would then skip.
SELECT t.id
FROM cereal_tasks AS t
JOIN cereal_workflow_instances AS i ON i.id = t.instance_id
WHERE (t.id, t.lease) IN (SELECT g.id, g.lease
                          FROM unnest(%(task_ids)s::bigint[], %(leases)s::uuid[]) AS g(id, lease))
  AND t.state = 'running'
  AND t.heartbeat_at < now() - make_interval(secs => coalesce(t.lease_expiry, %(expiry)s))
FOR NO KEY UPDATE OF i SKIP LOCKED
FOR UPDATE OF t SKIP LOCKED

-- name: lose_tasks
-- Sweep: expired tasks locked by lock_settled_leases become LOST results, each
-- with its error text ('' or why its retry policy was refused), and a
-- task_complete event for its workflow.
WITH given AS (
    SELECT * FROM unnest(%(task_ids)s::bigint[], %(errors)s::text[]) AS g(id, error)
), task AS (
    DELETE FROM cereal_tasks AS t
    USING given
    WHERE t.id = given.id AND t.state = 'running'
    RETURNING t.id, t.instance_id, t.workflow_name, t.task_name, t.parameters, t.enqueued_at,
              t.attempt, t.traceparent, t.concurrency_key, t.concurrency_limit,
              t.rate_limit_starts, t.rate_limit_seconds, t.priority, given.error
), marked AS (
    -- the instance rows are locked already: mark them ready
    UPDATE cereal_workflow_instances SET ready_at = coalesce(ready_at, now())
    WHERE id IN (SELECT instance_id FROM task)
), stored AS (
    INSERT INTO cereal_task_results
        (instance_id, task_id, task_name, parameters, status, error, enqueued_at, attempts,
         traceparent, concurrency_key, concurrency_limit, rate_limit_starts,
         rate_limit_seconds, priority)
    SELECT instance_id, id, task_name, parameters, 'lost', error, enqueued_at,
           greatest(attempt, 1), traceparent, concurrency_key, concurrency_limit,
           rate_limit_starts, rate_limit_seconds, priority
    FROM task
    ORDER BY id
    RETURNING id, task_id, instance_id
), event AS (
    INSERT INTO cereal_workflow_events
        (instance_id, workflow_name, event_type, task_result_id)
    SELECT stored.instance_id, task.workflow_name, 'task_complete', stored.id
    FROM stored JOIN task ON task.id = stored.task_id
    ORDER BY stored.id
)
SELECT id, workflow_name FROM task

-- name: retry_tasks
-- Sweep: queue tasks again, each after its own delay in seconds (expired leases
-- locked by lock_settled_leases); their leases end.
UPDATE cereal_tasks AS t
SET state = 'queued', lease = NULL, heartbeat_at = NULL, lease_expiry = NULL,
    start_after = now() + make_interval(secs => d.delay)
FROM unnest(%(task_ids)s::bigint[], %(delays)s::double precision[]) AS d(id, delay)
WHERE t.id = d.id AND t.state = 'running'
RETURNING t.id

-- name: retry_task
-- A failed attempt with attempts left: end the lease, queue the task again
-- after its backoff. Task row only (no instance lock); returns the id when the
-- lease was still held.
UPDATE cereal_tasks
SET state = 'queued', lease = NULL, heartbeat_at = NULL, lease_expiry = NULL,
    start_after = now() + make_interval(secs => %(delay)s::double precision)
WHERE id = %(task_id)s AND lease = %(lease)s AND state = 'running'
RETURNING id

-- name: hand_back_task
-- A stopping worker gives a running task back: queued at once, the attempt not
-- counted, one more hand-back (%(counted)s 1; 0 for a task that never started,
-- which no limit applies to). Matches nothing once the lease is gone or a
-- counted task was handed back max_hand_backs times already (then it is
-- reported LOST).
UPDATE cereal_tasks
SET state = 'queued', lease = NULL, heartbeat_at = NULL, lease_expiry = NULL,
    start_after = now(), attempt = attempt - 1, hand_backs = hand_backs + %(counted)s::integer
WHERE id = %(task_id)s AND lease = %(lease)s AND state = 'running'
  AND (%(counted)s::integer = 0 OR hand_backs < %(max_hand_backs)s::integer)
RETURNING id

-- name: notify
-- Announce new work in its own transaction (after a commit that made it).
SELECT pg_notify('cereal_wakeup', %(note)s::text)::text AS notified

-- name: try_trim_lock
-- Only one process trims history at a time.
SELECT pg_try_advisory_xact_lock(%(key)s::bigint) AS locked

-- name: history_row_at
-- The finished run at a position, newest first (none: fewer rows exist).
SELECT ended_at, id FROM cereal_workflow_results
ORDER BY ended_at DESC, id DESC
OFFSET %(position)s
LIMIT 1

-- name: trim_history_before
-- Delete up to a batch of the oldest finished runs older than a given row (the
-- ended_at index from its start); the history trigger drops their events.
DELETE FROM cereal_workflow_results
WHERE id IN (
    SELECT id FROM cereal_workflow_results
    WHERE (ended_at, id) < (%(ended_at)s::timestamptz, %(id)s::bigint)
    ORDER BY ended_at, id
    LIMIT %(batch)s
)

-- name: trim_history_all
-- Delete up to a batch of the oldest finished runs (retention keeps none).
DELETE FROM cereal_workflow_results
WHERE id IN (
    SELECT id FROM cereal_workflow_results
    ORDER BY ended_at, id
    LIMIT %(batch)s
)

-- name: trim_history_age
-- Delete up to a batch of the oldest finished runs older than max_age seconds.
DELETE FROM cereal_workflow_results
WHERE id IN (
    SELECT id FROM cereal_workflow_results
    WHERE ended_at < now() - make_interval(secs => %(max_age)s)
    ORDER BY ended_at, id
    LIMIT %(batch)s
)

-- name: create_schedule
-- Store a new schedule (a unique violation means the names are taken).
WITH created AS (
    INSERT INTO cereal_workflow_schedules
        (workflow_name, instance_name, parameters, recurrence, enabled, next_due_at,
         overlap, catch_up_window)
    VALUES (%(workflow_name)s, %(instance_name)s, %(parameters)s, %(recurrence)s,
            %(enabled)s, %(next_due_at)s, %(overlap)s, %(catch_up_window)s)
    RETURNING id
)
SELECT id,
       CASE WHEN %(note)s::text IS NULL THEN NULL
            ELSE pg_notify('cereal_wakeup', %(note)s::text)::text END AS notified
FROM created

-- name: list_schedules
-- One page of schedules (by names) with the start and end of each one's newest finished run.
SELECT s.id, s.enabled, s.workflow_name, s.instance_name, s.parameters, s.recurrence,
       s.next_due_at, s.last_enqueued_at, h.started_at AS last_start,
       h.ended_at AS last_end, s.overlap, s.catch_up_window, s.run_pending
FROM cereal_workflow_schedules AS s
LEFT JOIN LATERAL (
    SELECT started_at, ended_at FROM cereal_workflow_results AS r
    WHERE r.workflow_name = s.workflow_name AND r.instance_name = s.instance_name
    ORDER BY ended_at DESC, id DESC
    LIMIT 1
) AS h ON true
ORDER BY s.workflow_name, s.instance_name
LIMIT %(page_limit)s::bigint OFFSET %(page_offset)s::bigint

-- name: get_schedule
-- One schedule with the start and end of its newest finished run.
SELECT s.id, s.enabled, s.workflow_name, s.instance_name, s.parameters, s.recurrence,
       s.next_due_at, s.last_enqueued_at, h.started_at AS last_start,
       h.ended_at AS last_end, s.overlap, s.catch_up_window, s.run_pending
FROM cereal_workflow_schedules AS s
LEFT JOIN LATERAL (
    SELECT started_at, ended_at FROM cereal_workflow_results AS r
    WHERE r.workflow_name = s.workflow_name AND r.instance_name = s.instance_name
    ORDER BY ended_at DESC, id DESC
    LIMIT 1
) AS h ON true
WHERE s.workflow_name = %(workflow_name)s AND s.instance_name = %(instance_name)s

-- name: update_schedule
-- Apply every requested change of a schedule in one statement.
WITH changed AS (
    UPDATE cereal_workflow_schedules
    SET enabled = COALESCE(%(enabled)s::boolean, enabled),
        parameters = CASE WHEN %(set_parameters)s::boolean THEN %(parameters)s::bytea
                          ELSE parameters END,
        recurrence = COALESCE(%(recurrence)s::text, recurrence),
        overlap = COALESCE(%(overlap)s::text, overlap),
        catch_up_window = COALESCE(%(catch_up_window)s::double precision, catch_up_window),
        -- with due_rule, the due time applies only to a disabled schedule with that
        -- rule, judged on the row this statement locked (its latest committed state)
        next_due_at = CASE
            WHEN %(due_rule)s::text IS NULL
                 OR (NOT enabled AND recurrence = %(due_rule)s::text)
            THEN COALESCE(%(next_due_at)s::timestamptz, next_due_at)
            ELSE next_due_at END
    WHERE workflow_name = %(workflow_name)s AND instance_name = %(instance_name)s
    RETURNING id
)
SELECT id,
       CASE WHEN %(note)s::text IS NULL THEN NULL
            ELSE pg_notify('cereal_wakeup', %(note)s::text)::text END AS notified
FROM changed

-- name: delete_schedule
-- Remove a schedule.
WITH removed AS (
    DELETE FROM cereal_workflow_schedules
    WHERE workflow_name = %(workflow_name)s AND instance_name = %(instance_name)s
    RETURNING id
)
SELECT id,
       CASE WHEN %(note)s::text IS NULL THEN NULL
            ELSE pg_notify('cereal_wakeup', %(note)s::text)::text END AS notified
FROM removed

-- name: lock_due_schedule
-- The earliest schedule no other scheduler holds that is either enabled and due
-- (column due) or has a waiting run whose instance has ended.
SELECT s.id, s.enabled, s.workflow_name, s.instance_name, s.parameters, s.recurrence,
       s.next_due_at, s.last_enqueued_at, h.started_at AS last_start,
       h.ended_at AS last_end, s.overlap, s.catch_up_window, s.run_pending,
       (s.enabled AND s.next_due_at <= now()) AS due
FROM cereal_workflow_schedules AS s
LEFT JOIN LATERAL (
    SELECT started_at, ended_at FROM cereal_workflow_results AS r
    WHERE r.workflow_name = s.workflow_name AND r.instance_name = s.instance_name
    ORDER BY ended_at DESC, id DESC
    LIMIT 1
) AS h ON true
WHERE (s.enabled AND s.next_due_at <= now())
   OR (s.run_pending AND NOT EXISTS (
       SELECT 1 FROM cereal_workflow_instances AS i
       WHERE i.workflow_name = s.workflow_name AND i.instance_name = s.instance_name))
ORDER BY s.next_due_at, s.id
LIMIT 1
FOR UPDATE OF s SKIP LOCKED

-- name: next_schedule
-- The enabled schedule due soonest.
SELECT s.id, s.enabled, s.workflow_name, s.instance_name, s.parameters, s.recurrence,
       s.next_due_at, s.last_enqueued_at, h.started_at AS last_start,
       h.ended_at AS last_end, s.overlap, s.catch_up_window, s.run_pending
FROM cereal_workflow_schedules AS s
LEFT JOIN LATERAL (
    SELECT started_at, ended_at FROM cereal_workflow_results AS r
    WHERE r.workflow_name = s.workflow_name AND r.instance_name = s.instance_name
    ORDER BY ended_at DESC, id DESC
    LIMIT 1
) AS h ON true
WHERE s.enabled
ORDER BY s.next_due_at, s.id
LIMIT 1

-- name: schedule_run_state
-- What asking a schedule for a run needs, locking its row (a trigger waits here
-- for a scheduler holding the schedule; the scheduler holds the lock already).
SELECT id, overlap, run_pending,
       EXISTS (SELECT 1 FROM cereal_workflow_instances AS i
               WHERE i.workflow_name = s.workflow_name
                 AND i.instance_name = s.instance_name) AS live
FROM cereal_workflow_schedules AS s
WHERE workflow_name = %(workflow_name)s AND instance_name = %(instance_name)s
FOR UPDATE OF s

-- name: start_scheduled_instance
-- Enqueue a locked schedule's instance with its parameters (no row: one is live).
WITH inst AS (
    INSERT INTO cereal_workflow_instances (workflow_name, instance_name, parameters, ready_at)
    SELECT workflow_name, instance_name, parameters, now()
    FROM cereal_workflow_schedules WHERE id = %(schedule_id)s
    ON CONFLICT (workflow_name, instance_name) DO NOTHING
    RETURNING id, workflow_name
), ev AS (
    INSERT INTO cereal_workflow_events (instance_id, workflow_name, event_type)
    SELECT id, workflow_name, 'start' FROM inst
    RETURNING instance_id
)
SELECT instance_id FROM ev

-- name: record_schedule_run
-- After asking for a run: whether one waits, and when one last started; with
-- notify, announce the change (a new instance, a cancel or a waiting run).
WITH recorded AS (
    UPDATE cereal_workflow_schedules
    SET run_pending = %(run_pending)s,
        last_enqueued_at = CASE WHEN %(started)s THEN now() ELSE last_enqueued_at END
    WHERE id = %(schedule_id)s
    RETURNING id
)
SELECT id,
       CASE WHEN %(note)s::text IS NULL THEN NULL
            ELSE pg_notify('cereal_wakeup', %(note)s::text)::text END AS notified
FROM recorded

-- name: advance_schedule
-- Store a scheduler's new due time and enabled flag (NULL: unchanged).
UPDATE cereal_workflow_schedules
SET next_due_at = COALESCE(%(next_due_at)s::timestamptz, next_due_at),
    enabled = COALESCE(%(enabled)s::boolean, enabled)
WHERE id = %(schedule_id)s

-- name: has_waiting_schedule_run
-- Whether any schedule has a run waiting for its instance to end.
SELECT EXISTS (SELECT 1 FROM cereal_workflow_schedules WHERE run_pending) AS waiting

-- name: disable_schedule
-- Disable a schedule whose rule no longer parses.
UPDATE cereal_workflow_schedules SET enabled = false WHERE id = %(schedule_id)s

-- name: task_queue_depths
-- Metrics: due queued tasks per task name with the oldest one's enqueue time, read
-- from the ready indexes (queued tasks only; they include start_after since 0021):
-- the cost follows the queued tasks, never the history. Read-only, no locks.
-- (Unkeyed and keyed tasks have ready indexes of their own since migration 0019.)
SELECT name, sum(depth)::bigint AS depth, min(oldest_at) AS oldest_at
FROM (
    SELECT task_name AS name, count(*) AS depth, min(enqueued_at) AS oldest_at
    FROM cereal_tasks
    WHERE state = 'queued' AND concurrency_key IS NULL AND start_after <= now()
    GROUP BY task_name
    UNION ALL
    SELECT task_name, count(*), min(enqueued_at)
    FROM cereal_tasks
    WHERE state = 'queued' AND concurrency_key IS NOT NULL AND start_after <= now()
    GROUP BY task_name
) AS by_kind
GROUP BY name
ORDER BY name

-- name: workflow_queue_depths
-- Metrics: ready, unclaimed instances per workflow name with the enqueue time of
-- the oldest pending event (ready_at), from the claimable index of migration 0004.
SELECT workflow_name AS name, count(*) AS depth, min(ready_at) AS oldest_at
FROM cereal_workflow_instances
WHERE ready_at IS NOT NULL AND claim_token IS NULL
GROUP BY workflow_name
ORDER BY workflow_name

-- ---- inspection (read-only, the dashboard) --------------------------------------

-- name: instance_tasks
-- The queued and running tasks of a live instance (by its unique names), in enqueue order.
SELECT t.id, t.task_name, t.state, t.parameters, t.enqueued_at, t.start_after, t.attempt,
       i.workflow_name, i.instance_name, t.concurrency_key, t.concurrency_limit,
       t.rate_limit_starts, t.rate_limit_seconds, t.priority, t.idempotency_key
FROM cereal_workflow_instances AS i
JOIN cereal_tasks AS t ON t.instance_id = i.id
WHERE i.workflow_name = %(workflow_name)s AND i.instance_name = %(instance_name)s
ORDER BY t.id

-- name: instance_event_history
-- The events one run received, oldest first: the live instance's, else the newest
-- finished run's (runs of a pair are sequential, so the highest instance id).
-- Pending while the event row still exists. Both lookups use the names indexes.
SELECT h.event_id AS id, h.event_type, h.enqueued_at, h.task_name,
       h.task_status AS status, h.error_text, h.task_enqueued_at, h.task_attempts,
       EXISTS (SELECT 1 FROM cereal_workflow_events AS e WHERE e.id = h.event_id) AS pending
FROM cereal_event_history AS h
WHERE h.workflow_name = %(workflow_name)s AND h.instance_name = %(instance_name)s
  AND h.instance_id = coalesce(
      (SELECT id FROM cereal_workflow_instances
       WHERE workflow_name = %(workflow_name)s AND instance_name = %(instance_name)s),
      (SELECT max(instance_id) FROM cereal_event_history
       WHERE workflow_name = %(workflow_name)s AND instance_name = %(instance_name)s))
ORDER BY h.event_id

-- name: instance_tasks_page
-- One page of a live instance's tasks, newest first: those enqueued before the
-- task id %(before)s, at most %(page_limit)s (NULL: all). The instance's task ids
-- come from the (instance_id) index first and only they are sorted (MATERIALIZED
-- keeps the planner from walking the whole table's primary key backwards
-- instead), so a page costs that instance's live tasks, never the others'.
WITH ids AS MATERIALIZED (
    SELECT t.id
    FROM cereal_tasks AS t
    WHERE t.instance_id = (SELECT id FROM cereal_workflow_instances
                           WHERE workflow_name = %(workflow_name)s
                             AND instance_name = %(instance_name)s)
      AND t.id < %(before)s
), page AS (
    SELECT id FROM ids ORDER BY id DESC LIMIT %(page_limit)s
)
SELECT t.id, t.task_name, t.state, t.parameters, t.enqueued_at, t.start_after, t.attempt,
       i.workflow_name, i.instance_name, t.concurrency_key, t.concurrency_limit,
       t.rate_limit_starts, t.rate_limit_seconds, t.priority, t.idempotency_key
FROM page
JOIN cereal_tasks AS t ON t.id = page.id
JOIN cereal_workflow_instances AS i ON i.id = t.instance_id
ORDER BY t.id DESC

-- name: tasks_by_name
-- Every live instance's queued and running tasks of one name, in enqueue order
-- (the (task_name, id) index; a task row carries its instance's names).
SELECT t.id, t.task_name, t.state, t.parameters, t.enqueued_at, t.start_after, t.attempt,
       t.workflow_name, t.instance_name, t.concurrency_key, t.concurrency_limit,
       t.rate_limit_starts, t.rate_limit_seconds, t.priority, t.idempotency_key
FROM cereal_tasks AS t
WHERE t.task_name = %(task_name)s
ORDER BY t.id

-- name: tasks_by_name_page
-- One page of them, newest first: the (task_name, id) index walked backwards from
-- the task id %(before)s, cut at %(page_limit)s (NULL: all).
SELECT t.id, t.task_name, t.state, t.parameters, t.enqueued_at, t.start_after, t.attempt,
       t.workflow_name, t.instance_name, t.concurrency_key, t.concurrency_limit,
       t.rate_limit_starts, t.rate_limit_seconds, t.priority, t.idempotency_key
FROM cereal_tasks AS t
WHERE t.task_name = %(task_name)s AND t.id < %(before)s
ORDER BY t.id DESC
LIMIT %(page_limit)s

-- name: instance_event_history_page
-- One page of a run's event history, newest first: the events below %(before)s,
-- read backwards through the (names, instance id, event id) index and cut at
-- %(page_limit)s (NULL: all), so a long history costs one page per call. The page
-- is cut before the pending check, so that check probes the events' primary key
-- once per listed event instead of reading every pending event.
SELECT p.id, p.event_type, p.enqueued_at, p.task_name, p.status, p.error_text,
       p.task_enqueued_at, p.task_attempts,
       EXISTS (SELECT 1 FROM cereal_workflow_events AS e WHERE e.id = p.id) AS pending
FROM (
    SELECT h.event_id AS id, h.event_type, h.enqueued_at, h.task_name,
           h.task_status AS status, h.error_text, h.task_enqueued_at, h.task_attempts
    FROM cereal_event_history AS h
    WHERE h.workflow_name = %(workflow_name)s AND h.instance_name = %(instance_name)s
      AND h.instance_id = coalesce(
          (SELECT id FROM cereal_workflow_instances
           WHERE workflow_name = %(workflow_name)s AND instance_name = %(instance_name)s),
          (SELECT max(instance_id) FROM cereal_event_history
           WHERE workflow_name = %(workflow_name)s AND instance_name = %(instance_name)s))
      AND h.event_id < %(before)s
    ORDER BY h.event_id DESC
    LIMIT %(page_limit)s
) AS p
ORDER BY p.id DESC

-- name: task_queue_stats
-- Per task name: queued and running counts and the oldest queued task's enqueue time.
-- The task table holds only queued and running tasks, so this reads the queues alone.
SELECT s.task_name, s.queued, s.running, t.enqueued_at AS oldest_queued_at
FROM (
    SELECT task_name,
           count(*) FILTER (WHERE state = 'queued') AS queued,
           count(*) FILTER (WHERE state = 'running') AS running,
           min(id) FILTER (WHERE state = 'queued') AS oldest_id
    FROM cereal_tasks
    GROUP BY task_name
) AS s
LEFT JOIN cereal_tasks AS t ON t.id = s.oldest_id
ORDER BY s.task_name

-- ---- dead letters ---------------------------------------------------------------

-- name: dead_tasks_page
-- Dead tasks, newest first: the primary key walked backwards from the task id
-- %(before)s, optionally of one task name and/or workflow name, cut at
-- %(page_limit)s (NULL: all); run_live says whether the run can still receive a
-- requeued task's result.
SELECT d.task_id, d.task_name, d.workflow_name, d.instance_name, d.status, d.parameters,
       d.error, d.error_type, d.error_traceback, d.attempts, d.enqueued_at, d.died_at,
       EXISTS (SELECT 1 FROM cereal_workflow_instances AS i WHERE i.id = d.instance_id)
           AS run_live
FROM cereal_dead_tasks AS d
WHERE d.task_id < %(before)s
  AND (%(task_name)s::text IS NULL OR d.task_name = %(task_name)s::text)
  AND (%(workflow_name)s::text IS NULL OR d.workflow_name = %(workflow_name)s::text)
ORDER BY d.task_id DESC
LIMIT %(page_limit)s

-- name: requeue_dead_tasks
-- Of the given dead tasks (locked, so a racing requeue waits, then finds the row
-- gone), those whose run is live (locked too, so it cannot finish meanwhile)
-- become new queued tasks due now, each counted as one more task the run enqueued,
-- and leave the dead letters. Every dead task found is answered: requeued or not
-- (its run has finished). Lock order: dead rows, then instance rows by id; no
-- other statement locks an existing dead row and then an instance.
WITH dead AS (
    SELECT d.task_id, d.instance_id, d.task_name, d.parameters, d.concurrency_key,
           d.concurrency_limit, d.rate_limit_starts, d.rate_limit_seconds, d.priority
    FROM cereal_dead_tasks AS d
    WHERE d.task_id = ANY(%(task_ids)s::bigint[])
    ORDER BY d.task_id
    FOR UPDATE
), live AS (
    SELECT i.id, i.workflow_name, i.instance_name
    FROM cereal_workflow_instances AS i
    WHERE i.id IN (SELECT dead.instance_id FROM dead)
    ORDER BY i.id
    FOR NO KEY UPDATE
), added AS (
    INSERT INTO cereal_tasks
        (instance_id, workflow_name, instance_name, task_name, parameters, concurrency_key,
         concurrency_limit, rate_limit_starts, rate_limit_seconds, priority, idempotency_key)
    -- a keyed task that an older worker finished was stored without its rate limit:
    -- it goes back under its key at most one at a time, the strictest limit
    SELECT live.id, live.workflow_name, live.instance_name, dead.task_name, dead.parameters,
           dead.concurrency_key,
           CASE WHEN dead.concurrency_key IS NOT NULL AND dead.concurrency_limit IS NULL
                     AND dead.rate_limit_starts IS NULL THEN 1
                ELSE dead.concurrency_limit END,
           dead.rate_limit_starts, dead.rate_limit_seconds, dead.priority,
           (SELECT k.idempotency_key FROM cereal_task_keys AS k
            WHERE k.instance_id = live.id AND k.task_id = dead.task_id)
    FROM dead JOIN live ON live.id = dead.instance_id
    ORDER BY dead.task_id
    RETURNING id, instance_id, idempotency_key
), rekeyed AS (
    -- the new task takes over the dead one's idempotency key (migration 0025)
    UPDATE cereal_task_keys AS k SET task_id = added.id
    FROM added
    WHERE k.instance_id = added.instance_id AND k.idempotency_key = added.idempotency_key
), counted AS (
    UPDATE cereal_workflow_instances AS i
    SET enqueued_tasks = i.enqueued_tasks + n.added, updated_at = now()
    FROM (SELECT instance_id, count(*) AS added FROM added GROUP BY instance_id) AS n
    WHERE i.id = n.instance_id
), removed AS (
    DELETE FROM cereal_dead_tasks AS d
    USING dead JOIN live ON live.id = dead.instance_id
    WHERE d.task_id = dead.task_id
)
SELECT dead.task_id, dead.task_name, live.id IS NOT NULL AS requeued
FROM dead LEFT JOIN live ON live.id = dead.instance_id

-- name: held_task_keys
-- Of %(keys)s, the task idempotency keys the live run of these names holds (0025).
SELECT k.idempotency_key, k.task_id
FROM cereal_workflow_instances AS i
JOIN cereal_task_keys AS k ON k.instance_id = i.id
WHERE i.workflow_name = %(workflow_name)s AND i.instance_name = %(instance_name)s
  AND k.idempotency_key = ANY(%(keys)s::text[])
ORDER BY k.idempotency_key

-- name: failed_runs_page
-- Finished runs that failed and were not requeued, newest first: the failed-runs index walked backwards
-- from the run id %(before)s, optionally of one workflow name, cut at
-- %(page_limit)s (NULL: all).
SELECT r.id, r.workflow_name, r.instance_name, r.parameters, r.error, r.error_type,
       r.error_traceback, r.started_at, r.ended_at
FROM cereal_workflow_results AS r
WHERE r.error IS NOT NULL AND r.requeued_at IS NULL AND r.id < %(before)s
  AND (%(workflow_name)s::text IS NULL OR r.workflow_name = %(workflow_name)s::text)
ORDER BY r.id DESC
LIMIT %(page_limit)s

-- name: requeue_failed_run
-- A failed run, not requeued yet, is stamped requeued and its names start a new
-- run with its parameters and a start event. The stamp is an UPDATE of the run's
-- row: a racing requeue waits for its lock, then finds it stamped and does nothing.
-- started is 0 when a live run holds the names (the caller rolls the stamp back).
-- A run under a workflow concurrency key goes back under it, waiting: the caller
-- then starts the key's waiting runs that fit (start_waiting_runs).
WITH failed AS (
    UPDATE cereal_workflow_results AS r
    SET requeued_at = now(), requeued_under_key = r.concurrency_key IS NOT NULL
    WHERE r.id = %(run_id)s AND r.error IS NOT NULL AND r.requeued_at IS NULL
    RETURNING r.workflow_name, r.instance_name, r.parameters, r.concurrency_key,
              r.concurrency_limit
), inst AS (
    INSERT INTO cereal_workflow_instances
        (workflow_name, instance_name, parameters, ready_at, concurrency_key,
         concurrency_limit, waiting_for_key)
    SELECT workflow_name, instance_name, parameters,
           CASE WHEN concurrency_key IS NULL THEN now() END, concurrency_key,
           concurrency_limit, concurrency_key IS NOT NULL
    FROM failed
    ON CONFLICT (workflow_name, instance_name) DO NOTHING
    RETURNING id, workflow_name
), ev AS (
    INSERT INTO cereal_workflow_events (instance_id, workflow_name, event_type)
    SELECT id, workflow_name, 'start' FROM inst
    RETURNING instance_id
)
SELECT failed.workflow_name, failed.concurrency_key,
       (SELECT count(*) FROM ev) AS started
FROM failed

-- name: take_start_key
-- Record a start key, or take over one past its window; no row when the key
-- started a run within the window (it is then read with find_start_key).
INSERT INTO cereal_start_keys (workflow_name, idempotency_key, instance_name)
VALUES (%(workflow_name)s, %(idempotency_key)s, %(instance_name)s)
ON CONFLICT (workflow_name, idempotency_key) DO UPDATE
    SET instance_name = EXCLUDED.instance_name, created_at = now()
    WHERE cereal_start_keys.created_at <= now() - make_interval(secs => %(window)s)
RETURNING 1 AS taken;

-- name: find_start_key
-- The instance name a start key started (within its window: take_start_key failed).
SELECT instance_name FROM cereal_start_keys
WHERE workflow_name = %(workflow_name)s AND idempotency_key = %(idempotency_key)s;

-- name: trim_start_keys
-- Delete one batch of the oldest expired start keys, skipping rows a start holds.
DELETE FROM cereal_start_keys
WHERE (workflow_name, idempotency_key) IN (
    SELECT workflow_name, idempotency_key FROM cereal_start_keys
    WHERE created_at <= now() - make_interval(secs => %(window)s)
    ORDER BY created_at
    LIMIT %(batch)s
    FOR UPDATE SKIP LOCKED
);

-- name: workflow_row_at
-- One workflow name's finished run at a position, newest first (none: fewer rows).
SELECT ended_at, id FROM cereal_workflow_results
WHERE workflow_name = %(workflow_name)s
ORDER BY ended_at DESC, id DESC
OFFSET %(position)s
LIMIT 1

-- name: trim_workflow_before
-- Delete up to a batch of one workflow name's oldest finished runs older than a
-- given row of that name.
DELETE FROM cereal_workflow_results
WHERE id IN (
    SELECT id FROM cereal_workflow_results
    WHERE workflow_name = %(workflow_name)s
      AND (ended_at, id) < (%(ended_at)s::timestamptz, %(id)s::bigint)
    ORDER BY ended_at, id
    LIMIT %(batch)s
)

-- name: trim_workflow_all
-- Delete up to a batch of one workflow name's oldest finished runs (its rule keeps none).
DELETE FROM cereal_workflow_results
WHERE id IN (
    SELECT id FROM cereal_workflow_results
    WHERE workflow_name = %(workflow_name)s
    ORDER BY ended_at, id
    LIMIT %(batch)s
)

-- name: trim_workflow_age
-- Delete up to a batch of one workflow name's oldest finished runs older than max_age seconds.
DELETE FROM cereal_workflow_results
WHERE id IN (
    SELECT id FROM cereal_workflow_results
    WHERE workflow_name = %(workflow_name)s
      AND ended_at < now() - make_interval(secs => %(max_age)s)
    ORDER BY ended_at, id
    LIMIT %(batch)s
)

-- name: run_throughput_all
-- Finished runs per bucket of %(bucket_seconds)s from %(window_start)s to
-- %(window_end)s: an index-only range scan of cereal_workflow_results_ended.
SELECT floor(extract(epoch FROM ended_at - %(window_start)s::timestamptz)
             / %(bucket_seconds)s::bigint)::bigint AS slot,
       count(*) AS runs
FROM cereal_workflow_results
WHERE ended_at >= %(window_start)s::timestamptz AND ended_at < %(window_end)s::timestamptz
GROUP BY slot

-- name: run_throughput_failed
-- Failed runs per bucket, as run_throughput_all: an index-only range scan of
-- the partial index cereal_workflow_results_failed_end.
SELECT floor(extract(epoch FROM ended_at - %(window_start)s::timestamptz)
             / %(bucket_seconds)s::bigint)::bigint AS slot,
       count(*) AS runs
FROM cereal_workflow_results
WHERE error IS NOT NULL
  AND ended_at >= %(window_start)s::timestamptz AND ended_at < %(window_end)s::timestamptz
GROUP BY slot

-- name: trim_key_starts
-- Delete one batch of rate-limit starts that have left their windows (claims that
-- record starts delete a few; this takes the rest, and any after traffic stopped).
DELETE FROM cereal_key_starts
WHERE id IN (
    SELECT id FROM cereal_key_starts
    WHERE leaves_at <= clock_timestamp()
    ORDER BY leaves_at
    LIMIT %(batch)s
    FOR UPDATE SKIP LOCKED
)

-- name: trim_key_windows
-- Delete one batch of full-window markers that have expired.
DELETE FROM cereal_key_windows
WHERE concurrency_key IN (
    SELECT concurrency_key FROM cereal_key_windows
    WHERE full_until <= clock_timestamp()
    LIMIT %(batch)s
    FOR UPDATE SKIP LOCKED
)

-- name: instance_start_keys
-- The kept idempotency keys that started runs of these names, newest first.
SELECT idempotency_key, created_at FROM cereal_start_keys
WHERE workflow_name = %(workflow_name)s AND instance_name = %(instance_name)s
ORDER BY created_at DESC, idempotency_key DESC

-- name: retention_rules
-- The history retention the sweeps last applied: the store-wide rule ('') first, then
-- by name in code point order (as rules_of sorts them, whatever the collation).
SELECT workflow_name, max_rows, margin_rows, max_runs, max_age, applied_at
FROM cereal_retention_rules
ORDER BY workflow_name COLLATE "C"

-- name: replace_retention_rules
-- Record a sweep's retention as the one applied: its rules upserted, all others
-- deleted (rows apart, so one statement does both).
WITH gone AS (
    DELETE FROM cereal_retention_rules
    WHERE workflow_name <> ALL(%(workflow_names)s::text[])
)
INSERT INTO cereal_retention_rules AS k
    (workflow_name, max_rows, margin_rows, max_runs, max_age, applied_at)
SELECT r.workflow_name, r.max_rows, r.margin_rows, r.max_runs, r.max_age, now()
FROM unnest(%(workflow_names)s::text[], %(max_rows)s::bigint[], %(margin_rows)s::bigint[],
            %(max_runs)s::bigint[], %(max_ages)s::double precision[])
     AS r(workflow_name, max_rows, margin_rows, max_runs, max_age)
ON CONFLICT (workflow_name) DO UPDATE
SET max_rows = EXCLUDED.max_rows, margin_rows = EXCLUDED.margin_rows,
    max_runs = EXCLUDED.max_runs, max_age = EXCLUDED.max_age,
    applied_at = EXCLUDED.applied_at
