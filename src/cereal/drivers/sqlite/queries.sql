-- Runtime SQL of the SQLite driver, one named block per query.
-- Parameters are always bound (:name); table and column names are fixed.
-- Instants are REAL epoch seconds from the host clock, passed in as :now.

-- ---- workflow instances and events ----------------------------------------------

-- name: insert_instance
-- Create a live instance unless one with these names exists (no row returned then).
INSERT INTO cereal_workflow_instances
    (workflow_name, instance_name, parameters, started_at, traceparent)
VALUES (:workflow_name, :instance_name, :parameters, :now, :traceparent)
ON CONFLICT (workflow_name, instance_name) DO NOTHING
RETURNING id;

-- name: insert_keyed_instance
-- Create a live instance under a workflow concurrency key (migration 0024),
-- waiting: start_waiting_run then starts the key's oldest waiting runs that fit,
-- in enqueue order. No row when the names are live.
INSERT INTO cereal_workflow_instances
    (workflow_name, instance_name, parameters, started_at, traceparent, concurrency_key,
     concurrency_limit, waiting_for_key)
VALUES (:workflow_name, :instance_name, :parameters, :now, :traceparent, :concurrency_key,
        :concurrency_limit, 1)
ON CONFLICT (workflow_name, instance_name) DO NOTHING
RETURNING id;

-- name: start_waiting_run
-- Start the oldest waiting run of a key if fewer than its limit of the key's runs
-- are started: it becomes ready at its oldest event. No row: none was started.
UPDATE cereal_workflow_instances
SET waiting_for_key = 0,
    ready_seq = (SELECT min(e.id) FROM cereal_workflow_events AS e
                 WHERE e.instance_id = cereal_workflow_instances.id)
WHERE id = (SELECT w.id FROM cereal_workflow_instances AS w
            WHERE w.concurrency_key = :concurrency_key AND w.waiting_for_key = 1
            ORDER BY w.id LIMIT 1)
  AND (SELECT count(*) FROM cereal_workflow_instances AS s
       WHERE s.concurrency_key = :concurrency_key AND s.waiting_for_key = 0)
      < concurrency_limit
RETURNING workflow_name;

-- name: keys_with_waiting_runs
-- Sweep: the next :limit keys after :after that have a waiting run, in key order
-- (the waiting index), so sweeps go round every key.
SELECT DISTINCT concurrency_key FROM cereal_workflow_instances
WHERE waiting_for_key = 1 AND concurrency_key > :after
ORDER BY concurrency_key
LIMIT :limit;

-- name: has_waiting_run
-- Sweep, before taking the write lock: whether any run waits for its key.
SELECT 1 FROM cereal_workflow_instances WHERE waiting_for_key = 1 LIMIT 1;

-- name: insert_event
-- Append an event to an instance's queue.
INSERT INTO cereal_workflow_events (instance_id, workflow_name, event_type, task_result_id, enqueued_at)
VALUES (:instance_id, :workflow_name, :event_type, :task_result_id, :now);

-- name: insert_cancel_event
-- Append a cancel event to the live instance with these names (no row: none is live).
INSERT INTO cereal_workflow_events (instance_id, workflow_name, event_type, enqueued_at)
SELECT id, workflow_name, 'cancel', :now
FROM cereal_workflow_instances
WHERE workflow_name = :workflow_name AND instance_name = :instance_name;

-- name: has_claimable_instance
-- Whether an unclaimed instance of the named workflows has a pending event
-- (a read before taking the write lock; one probe of the ready index per name).
SELECT 1
FROM json_each(:workflow_names) AS n
WHERE EXISTS (
    SELECT 1 FROM cereal_workflow_instances AS i
    WHERE i.workflow_name = n.value AND i.ready_seq IS NOT NULL AND i.claim_token IS NULL
)
LIMIT 1;

-- name: claim_instances
-- Claim up to :max_instances unclaimed instances of the named workflows whose oldest
-- pending event is oldest, each with its own random token and the claimer's expiry
-- (the claim is stale once claim_heartbeat_at + claim_expiry has passed). Per name
-- it reads at most :max_instances entries of the ready index (ready and unclaimed
-- instances only), then keeps the oldest of those: no event is visited.
UPDATE cereal_workflow_instances
SET claim_token = lower(hex(randomblob(16))), claim_heartbeat_at = :now, claim_expiry = :expiry
WHERE id IN (
    SELECT i.id
    FROM json_each(:workflow_names) AS n
    JOIN cereal_workflow_instances AS i ON i.id IN (
        SELECT r.id FROM cereal_workflow_instances AS r
        WHERE r.workflow_name = n.value AND r.ready_seq IS NOT NULL AND r.claim_token IS NULL
        ORDER BY r.ready_seq
        LIMIT :max_instances
    )
    ORDER BY i.ready_seq
    LIMIT :max_instances
)
RETURNING id, workflow_name, instance_name, status, parameters, payload, started_at,
          enqueued_tasks, completed_tasks, claim_token, ready_seq, traceparent;

-- name: instance_events
-- The oldest :max_events pending events of one instance, in sequence order.
SELECT id, event_type, task_result_id, enqueued_at
FROM cereal_workflow_events
WHERE instance_id = :instance_id
ORDER BY id
LIMIT :max_events;

-- name: get_task_results
-- The task results these task_complete events refer to (deleted only by the decision).
SELECT id, task_name, status, parameters, error_text, result, error_type, error_traceback,
       attempts, traceparent
FROM cereal_task_results
WHERE id IN (SELECT value FROM json_each(:task_result_ids));

-- name: check_claim
-- Whether the instance is still live and claimed with this token.
SELECT 1 FROM cereal_workflow_instances WHERE id = :instance_id AND claim_token = :token;

-- name: heartbeat_claim
-- Refresh a workflow claim.
UPDATE cereal_workflow_instances
SET claim_heartbeat_at = :now
WHERE id = :instance_id AND claim_token = :token;

-- name: release_claim
-- Drop a workflow claim without a decision (the event is redelivered).
UPDATE cereal_workflow_instances
SET claim_token = NULL, claim_heartbeat_at = NULL
WHERE id = :instance_id AND claim_token = :token;

-- name: continue_instance
-- Store a continue decision on the claimed instance and drop the claim; run after the
-- claimed events are consumed, so ready_seq becomes the oldest event left (one that
-- arrived during the callback), NULL when none is.
UPDATE cereal_workflow_instances
SET payload = :payload,
    status = 'running',
    enqueued_tasks = enqueued_tasks + :added_tasks,
    completed_tasks = :completed_tasks,
    claim_token = NULL,
    claim_heartbeat_at = NULL,
    ready_seq = (
        SELECT min(e.id) FROM cereal_workflow_events AS e WHERE e.instance_id = :instance_id
    )
WHERE id = :instance_id AND claim_token = :token
RETURNING ready_seq;

-- name: delete_events
-- Consume the claimed events.
DELETE FROM cereal_workflow_events
WHERE instance_id = :instance_id AND id IN (SELECT value FROM json_each(:event_ids));

-- name: delete_task_results
-- Consume the task results of the claimed task_complete events.
DELETE FROM cereal_task_results
WHERE instance_id = :instance_id AND id IN (SELECT value FROM json_each(:task_result_ids));

-- name: insert_task
-- Queue one task of an instance.
INSERT INTO cereal_tasks
    (instance_id, workflow_name, instance_name, task_name, parameters, enqueued_at, start_after,
     traceparent, retry_policy, concurrency_key, concurrency_limit, rate_limit_starts,
     rate_limit_seconds, priority, idempotency_key)
VALUES
    (:instance_id, :workflow_name, :instance_name, :task_name, :parameters, :now, :start_after,
     :traceparent, :retry_policy, :concurrency_key, :concurrency_limit, :rate_limit_starts,
     :rate_limit_seconds, :priority, :idempotency_key);

-- name: task_key_taken
-- Whether the run already has a task with this idempotency key (migration 0023).
SELECT 1 FROM cereal_task_keys
WHERE instance_id = :instance_id AND idempotency_key = :idempotency_key;

-- name: record_task_key
-- The run's task with this idempotency key.
INSERT INTO cereal_task_keys (instance_id, idempotency_key, task_id)
VALUES (:instance_id, :idempotency_key, :task_id);

-- name: held_task_keys
-- Of the JSON list :keys, the idempotency keys the live run of these names holds.
SELECT k.idempotency_key, k.task_id
FROM cereal_workflow_instances AS i
JOIN cereal_task_keys AS k ON k.instance_id = i.id
WHERE i.workflow_name = :workflow_name AND i.instance_name = :instance_name
  AND k.idempotency_key IN (SELECT value FROM json_each(:keys))
ORDER BY k.idempotency_key;

-- name: rekey_task
-- A requeued dead task takes over its key from the task it replaces.
UPDATE cereal_task_keys SET task_id = :task_id
WHERE instance_id = :instance_id AND idempotency_key = :idempotency_key;

-- name: find_live_instance
-- The id of the live instance with these names.
SELECT id FROM cereal_workflow_instances
WHERE workflow_name = :workflow_name AND instance_name = :instance_name;

-- name: record_history
-- Write the finished run of an instance to the history.
INSERT INTO cereal_workflow_results
    (workflow_name, instance_name, parameters, result, error, started_at, ended_at,
     error_type, error_traceback, instance_id, concurrency_key, concurrency_limit)
SELECT workflow_name, instance_name, parameters, :result, :error, started_at, :now,
       :error_type, :error_traceback, id, concurrency_key, concurrency_limit
FROM cereal_workflow_instances
WHERE id = :instance_id
RETURNING concurrency_key;

-- name: delete_instance_events
-- Finalisation: the instance's pending events.
DELETE FROM cereal_workflow_events WHERE instance_id = :instance_id;

-- name: delete_instance_tasks
-- Finalisation: the instance's queued and running tasks.
DELETE FROM cereal_tasks WHERE instance_id = :instance_id;

-- name: delete_instance_task_results
-- Finalisation: the instance's unconsumed task results.
DELETE FROM cereal_task_results WHERE instance_id = :instance_id;

-- name: delete_instance_task_keys
-- Finalisation: the idempotency keys of the instance's tasks.
DELETE FROM cereal_task_keys WHERE instance_id = :instance_id;

-- name: delete_instance
-- Finalisation: the live instance row itself.
DELETE FROM cereal_workflow_instances WHERE id = :instance_id;

-- name: get_instance
-- The live instance with these names, else its newest finished run.
SELECT * FROM (
    SELECT 1 AS live, workflow_name, instance_name, status, parameters, payload,
           NULL AS result, NULL AS error, started_at, NULL AS ended_at,
           NULL AS error_type, NULL AS error_traceback, concurrency_key, concurrency_limit,
           waiting_for_key
    FROM cereal_workflow_instances
    WHERE workflow_name = :workflow_name AND instance_name = :instance_name
    UNION ALL
    SELECT * FROM (
        SELECT 0 AS live, workflow_name, instance_name, 'completed' AS status, parameters,
               NULL AS payload, result, error, started_at, ended_at,
               error_type, error_traceback, concurrency_key, concurrency_limit,
               0 AS waiting_for_key
        FROM cereal_workflow_results
        WHERE workflow_name = :workflow_name AND instance_name = :instance_name
        ORDER BY id DESC
        LIMIT 1
    )
)
ORDER BY live DESC
LIMIT 1;

-- name: list_live_instances
-- Live instances, optionally filtered by either name.
SELECT 1 AS live, workflow_name, instance_name, status, parameters, payload,
       NULL AS result, NULL AS error, started_at, NULL AS ended_at
FROM cereal_workflow_instances
WHERE (:workflow_name IS NULL OR workflow_name = :workflow_name)
  AND (:instance_name IS NULL OR instance_name = :instance_name);

-- name: list_history_of_workflow
-- The newest finished run of every pair of one workflow without a live instance.
SELECT 0 AS live, r.workflow_name, r.instance_name, 'completed' AS status, r.parameters,
       NULL AS payload, r.result, r.error, r.started_at, r.ended_at
FROM (
    SELECT max(id) AS id
    FROM cereal_workflow_results
    WHERE workflow_name = :workflow_name
      AND (:instance_name IS NULL OR instance_name = :instance_name)
    GROUP BY workflow_name, instance_name
) AS newest
JOIN cereal_workflow_results AS r ON r.id = newest.id
WHERE NOT EXISTS (
    SELECT 1 FROM cereal_workflow_instances AS i
    WHERE i.workflow_name = r.workflow_name AND i.instance_name = r.instance_name
);

-- name: list_history_of_any_workflow
-- The newest finished run of every pair (optionally of one instance name) without a live instance.
SELECT 0 AS live, r.workflow_name, r.instance_name, 'completed' AS status, r.parameters,
       NULL AS payload, r.result, r.error, r.started_at, r.ended_at
FROM (
    SELECT max(id) AS id
    FROM cereal_workflow_results
    WHERE :instance_name IS NULL OR instance_name = :instance_name
    GROUP BY workflow_name, instance_name
) AS newest
JOIN cereal_workflow_results AS r ON r.id = newest.id
WHERE NOT EXISTS (
    SELECT 1 FROM cereal_workflow_instances AS i
    WHERE i.workflow_name = r.workflow_name AND i.instance_name = r.instance_name
);

-- name: list_history_newest_first
-- The newest finished runs that stand for their pair (the pair's newest run,
-- no live row), newest start first, at most :window of them: a walk of the
-- start-time index that stops early, for one page of a newest-first listing.
-- Used only without name filters (a filter matching few recent runs would walk
-- most of the index; the per-name queries serve those).
SELECT 0 AS live, r.workflow_name, r.instance_name, 'completed' AS status, r.parameters,
       NULL AS payload, r.result, r.error, r.started_at, r.ended_at
FROM cereal_workflow_results AS r INDEXED BY cereal_workflow_results_started
WHERE NOT EXISTS (
      SELECT 1 FROM cereal_workflow_results AS n
      WHERE n.workflow_name = r.workflow_name AND n.instance_name = r.instance_name
        AND n.id > r.id)
  AND NOT EXISTS (
      SELECT 1 FROM cereal_workflow_instances AS i
      WHERE i.workflow_name = r.workflow_name AND i.instance_name = r.instance_name)
ORDER BY r.started_at DESC, r.workflow_name, r.instance_name
LIMIT :window;

-- ---- tasks ----------------------------------------------------------------------

-- name: has_ready_task
-- Whether a task of this name is ready (a read before taking the write lock): an
-- unkeyed one, or a keyed one (whose key may be full: the claim then finds none
-- and the claimer waits for a wakeup or its poll, it does not spin).
SELECT 1
WHERE EXISTS (
    SELECT 1 FROM cereal_tasks INDEXED BY cereal_tasks_due
    WHERE task_name = :task_name AND state = 'queued'
      AND start_after - 60.0 * priority <= :now AND start_after <= :now
      AND concurrency_key IS NULL
) OR EXISTS (
    SELECT 1 FROM cereal_tasks INDEXED BY cereal_tasks_due_keyed
    WHERE task_name = :task_name AND state = 'queued' AND concurrency_key IS NOT NULL
      AND start_after <= :now
);

-- name: claim_unkeyed_tasks
-- Lease up to :max_tasks ready tasks of one name without a concurrency key, lowest
-- ready rank first (due time less a minute per priority level; for a task of priority
-- 0 enqueued without delay, its enqueue time), each with a random token and the
-- claimer's expiry (the deadline is lease_heartbeat_at + lease_expiry). The ready
-- index (task_name, rank, id, start_after; unkeyed queued tasks only: migrations
-- 0009, 0018 and 0020) yields due tasks in that order: a task of priority 0 not yet
-- due sorts after now and is never visited; one of priority p is passed over from
-- the index while it is due within p minutes.
UPDATE cereal_tasks
SET state = 'running',
    lease_token = lower(hex(randomblob(16))),
    lease_heartbeat_at = :now,
    lease_expiry = :expiry,
    attempt = attempt + 1,
    retry_policy = coalesce(retry_policy, :retry_policy)
WHERE id IN (
    SELECT id FROM cereal_tasks INDEXED BY cereal_tasks_due
    WHERE task_name = :task_name AND state = 'queued'
      AND start_after - 60.0 * priority <= :now AND start_after <= :now
      AND concurrency_key IS NULL
    ORDER BY start_after - 60.0 * priority, id
    LIMIT :max_tasks
)
RETURNING id, workflow_name, instance_name, task_name, parameters, enqueued_at,
          start_after, lease_token, attempt, traceparent, retry_policy, concurrency_key,
          start_after - 60.0 * priority AS ready_rank;

-- name: has_queued_keyed_task
-- Whether this name has a queued task with a concurrency key (one index probe).
SELECT 1 FROM cereal_tasks INDEXED BY cereal_tasks_due_keyed
WHERE task_name = :task_name AND state = 'queued' AND concurrency_key IS NOT NULL
LIMIT 1;

-- name: keys_after
-- Up to :count keys of this name's queued keyed tasks after :after (NULL: from the
-- first), in key order: a skip scan of the keyed ready index, one probe per key.
WITH RECURSIVE walk(k) AS (
    SELECT (SELECT min(concurrency_key)
            FROM cereal_tasks INDEXED BY cereal_tasks_due_keyed
            WHERE task_name = :task_name AND state = 'queued'
              AND concurrency_key IS NOT NULL
              AND (:after IS NULL OR concurrency_key > :after))
    UNION ALL
    SELECT (SELECT min(concurrency_key)
            FROM cereal_tasks INDEXED BY cereal_tasks_due_keyed
            WHERE task_name = :task_name AND state = 'queued'
              AND concurrency_key > walk.k)
    FROM walk WHERE walk.k IS NOT NULL
)
SELECT k FROM walk WHERE k IS NOT NULL LIMIT :count;

-- name: key_heads
-- For each of the given keys (a JSON array) with a due queued task of this name:
-- its first due task's ready rank, id and limits, the key's running tasks, and
-- whether a claim found its rate window full until later than now.
SELECT keys.value AS concurrency_key, h.start_after - 60.0 * h.priority AS ready_rank, h.id,
       h.concurrency_limit,
       h.rate_limit_starts,
       (SELECT count(*) FROM cereal_tasks AS r INDEXED BY cereal_tasks_running_keys
        WHERE r.state = 'running' AND r.concurrency_key IS NOT NULL
          AND r.concurrency_key = keys.value) AS running,
       EXISTS (SELECT 1 FROM cereal_key_windows AS m
               WHERE m.concurrency_key = keys.value AND m.full_until > :now) AS window_full
FROM json_each(:keys) AS keys
JOIN cereal_tasks AS h ON h.id = (
    SELECT q.id FROM cereal_tasks AS q INDEXED BY cereal_tasks_due_keyed
    WHERE q.task_name = :task_name AND q.state = 'queued'
      AND q.concurrency_key = keys.value
      AND q.start_after - 60.0 * q.priority <= :now AND q.start_after <= :now
    ORDER BY q.start_after - 60.0 * q.priority, q.id LIMIT 1);

-- name: key_cursor
-- Where this name's walk of its keys goes on from (no row: from the first key).
SELECT after_key FROM cereal_key_cursors WHERE task_name = :task_name;

-- name: set_key_cursor
INSERT INTO cereal_key_cursors (task_name, after_key) VALUES (:task_name, :after_key)
ON CONFLICT (task_name) DO UPDATE SET after_key = excluded.after_key;

-- name: clear_key_cursor
DELETE FROM cereal_key_cursors WHERE task_name = :task_name;

-- name: keyed_candidates
-- One key's due queued tasks of this name, lowest ready rank first, at most :max_tasks.
SELECT id, start_after - 60.0 * priority AS ready_rank, concurrency_limit, rate_limit_starts,
       rate_limit_seconds
FROM cereal_tasks INDEXED BY cereal_tasks_due_keyed
WHERE task_name = :task_name AND state = 'queued' AND concurrency_key = :key
  AND start_after - 60.0 * priority <= :now AND start_after <= :now
ORDER BY start_after - 60.0 * priority, id
LIMIT :max_tasks;

-- name: due_unkeyed_tasks
-- The first :max_tasks due unkeyed tasks of this name (due time and id), the ones
-- a claim could take: a keyed task is taken only while it and the unkeyed ones
-- due before it fit, so neither kind starves the other.
SELECT start_after - 60.0 * priority AS ready_rank, id
FROM cereal_tasks INDEXED BY cereal_tasks_due
WHERE task_name = :task_name AND state = 'queued'
  AND start_after - 60.0 * priority <= :now AND start_after <= :now
  AND concurrency_key IS NULL
ORDER BY start_after - 60.0 * priority, id
LIMIT :max_tasks;

-- name: record_key_start
-- A start of a rate-limited key: inside its window until :leaves_at.
INSERT INTO cereal_key_starts (concurrency_key, leaves_at) VALUES (:key, :leaves_at);

-- name: key_window_starts
-- How many starts of this key are still inside their rate window.
SELECT count(*) AS started FROM cereal_key_starts INDEXED BY cereal_key_starts_by_key
WHERE concurrency_key = :key AND leaves_at > :now;

-- name: mark_key_window_full
-- This key's window is full until its first start inside leaves it: claims before
-- then pass the key over without counting its window.
INSERT INTO cereal_key_windows (concurrency_key, full_until)
VALUES (:key, coalesce((SELECT min(leaves_at) FROM cereal_key_starts
                        WHERE concurrency_key = :key AND leaves_at > :now), :now))
ON CONFLICT (concurrency_key) DO UPDATE SET full_until = excluded.full_until;

-- name: has_expired_key_start
-- Whether a rate-limit start has left its window, or a full-window marker expired.
SELECT 1
WHERE EXISTS (SELECT 1 FROM cereal_key_starts INDEXED BY cereal_key_starts_by_time
              WHERE leaves_at <= :now)
   OR EXISTS (SELECT 1 FROM cereal_key_windows WHERE full_until <= :now);

-- name: trim_key_starts
-- Delete one batch of starts that left their windows (the claims delete a few as
-- they go; this takes the rest, and any left after rate-limited work stopped).
DELETE FROM cereal_key_starts
WHERE id IN (SELECT id FROM cereal_key_starts INDEXED BY cereal_key_starts_by_time
             WHERE leaves_at <= :now LIMIT :batch);

-- name: trim_key_windows
-- Delete one batch of expired full-window markers.
DELETE FROM cereal_key_windows
WHERE concurrency_key IN (SELECT concurrency_key FROM cereal_key_windows
                          WHERE full_until <= :now LIMIT :batch);

-- name: prune_key_starts
-- Delete up to 64 starts that have left their window (the claim runs this when it
-- records starts, so the table holds little more than the windows' live starts).
DELETE FROM cereal_key_starts
WHERE id IN (SELECT id FROM cereal_key_starts INDEXED BY cereal_key_starts_by_time
             WHERE leaves_at <= :now LIMIT 64);

-- name: lease_tasks
-- Lease the given queued tasks (chosen in this write transaction), as
-- claim_unkeyed_tasks does.
UPDATE cereal_tasks
SET state = 'running',
    lease_token = lower(hex(randomblob(16))),
    lease_heartbeat_at = :now,
    lease_expiry = :expiry,
    attempt = attempt + 1,
    retry_policy = coalesce(retry_policy, :retry_policy)
WHERE id IN (SELECT value FROM json_each(:task_ids)) AND state = 'queued'
RETURNING id, workflow_name, instance_name, task_name, parameters, enqueued_at,
          start_after, lease_token, attempt, traceparent, retry_policy, concurrency_key,
          start_after - 60.0 * priority AS ready_rank;

-- name: unclaim_task
-- Give a leased task back to the queue (its claimer was cancelled before using it).
UPDATE cereal_tasks
SET state = 'queued', lease_token = NULL, lease_heartbeat_at = NULL, lease_expiry = NULL,
    attempt = attempt - 1
WHERE id = :task_id AND lease_token = :token AND state = 'running';

-- name: heartbeat_task
-- Refresh a task lease.
UPDATE cereal_tasks
SET lease_heartbeat_at = :now
WHERE id = :task_id AND lease_token = :token AND state = 'running';

-- name: resume_task_lease
-- Take up a task lease again by its token (its holder lost its completer, not
-- the lease): refresh it like a heartbeat and return what a claim returns.
UPDATE cereal_tasks
SET lease_heartbeat_at = :now
WHERE id = :task_id AND lease_token = :token AND state = 'running'
RETURNING id, workflow_name, instance_name, task_name, parameters, enqueued_at,
          lease_token, attempt, traceparent, retry_policy, concurrency_key;

-- name: leased_task
-- The running task held under this lease token.
SELECT id, instance_id, workflow_name, task_name, parameters, enqueued_at, attempt,
       hand_backs, traceparent, concurrency_key, concurrency_limit, rate_limit_starts,
       rate_limit_seconds, priority
FROM cereal_tasks
WHERE id = :task_id AND lease_token = :token AND state = 'running';

-- name: insert_task_result
-- Record how a task ended (with the reporting run's span, else the task's own).
INSERT INTO cereal_task_results
    (task_id, instance_id, task_name, parameters, status, error_text, result,
     enqueued_at, completed_at, error_type, error_traceback, attempts, traceparent,
     concurrency_key, concurrency_limit, rate_limit_starts, rate_limit_seconds, priority)
VALUES
    (:task_id, :instance_id, :task_name, :parameters, :status, :error_text, :result,
     :enqueued_at, :now, :error_type, :error_traceback, :attempts, :traceparent,
     :concurrency_key, :concurrency_limit, :rate_limit_starts, :rate_limit_seconds, :priority);

-- name: requeue_task
-- End a task's lease and queue it again from :start_after (a retry after a
-- failed attempt, or a hand-back at stop, which also gives the attempt back
-- and, unless the task never started, counts the hand-back).
UPDATE cereal_tasks
SET state = 'queued', lease_token = NULL, lease_heartbeat_at = NULL, lease_expiry = NULL,
    start_after = :start_after, attempt = attempt - :refund,
    hand_backs = hand_backs + :counted
WHERE id = :task_id;

-- name: delete_task
-- Remove a finished task.
DELETE FROM cereal_tasks WHERE id = :task_id;

-- name: expired_task_leases
-- Up to :limit running tasks whose lease deadline (last heartbeat + the holder's
-- expiry) has passed, oldest heartbeat first (the leases index); a lease without a
-- stored expiry (taken by older code) by the sweeper's cutoff. A read: the sweep
-- decides each, then settles it through expired_lease.
SELECT id, lease_token, attempt, task_name, workflow_name, instance_name, retry_policy
FROM cereal_tasks
WHERE state = 'running'
  AND CASE WHEN lease_expiry IS NULL THEN lease_heartbeat_at < :cutoff
           ELSE lease_heartbeat_at + lease_expiry < :now END
ORDER BY lease_heartbeat_at, id
LIMIT :limit;

-- name: expired_lease
-- The running task held under this lease token, if its deadline has still passed
-- (as expired_task_leases): the only task a sweep's settlement may change.
SELECT id, instance_id, workflow_name, task_name, parameters, enqueued_at, attempt,
       traceparent, concurrency_key, concurrency_limit, rate_limit_starts, rate_limit_seconds,
       priority
FROM cereal_tasks
WHERE id = :task_id AND lease_token = :token AND state = 'running'
  AND CASE WHEN lease_expiry IS NULL THEN lease_heartbeat_at < :cutoff
           ELSE lease_heartbeat_at + lease_expiry < :now END;

-- name: has_stale_claim
-- Whether any workflow claim is past its claimer's expiry (a claim stored
-- without one, by older code, is judged by the sweeper's cutoff).
SELECT 1 FROM cereal_workflow_instances
WHERE claim_token IS NOT NULL
  AND CASE WHEN claim_expiry IS NULL THEN claim_heartbeat_at < :cutoff
           ELSE claim_heartbeat_at + claim_expiry < :now END
LIMIT 1;

-- name: release_stale_claims
-- Release workflow claims past their claimer's expiry (as has_stale_claim).
UPDATE cereal_workflow_instances
SET claim_token = NULL, claim_heartbeat_at = NULL, claim_expiry = NULL
WHERE claim_token IS NOT NULL
  AND CASE WHEN claim_expiry IS NULL THEN claim_heartbeat_at < :cutoff
           ELSE claim_heartbeat_at + claim_expiry < :now END;

-- name: history_row_at_offset
-- The (ended_at, id) of the history row at this offset, newest first (none: fewer
-- rows); walks at most :offset entries of the ended_at index, never the table.
SELECT ended_at, id FROM cereal_workflow_results
ORDER BY ended_at DESC, id DESC
LIMIT 1 OFFSET :offset;

-- name: trim_history_through
-- Delete up to :batch of the history rows at or before this (ended_at, id), oldest
-- first (a walk of the ended_at index from its start), returning each run's
-- instance so its event history goes too.
DELETE FROM cereal_workflow_results
WHERE id IN (
    SELECT id FROM cereal_workflow_results INDEXED BY cereal_workflow_results_by_end
    WHERE ended_at < :ended_at OR (ended_at = :ended_at AND id <= :last_id)
    ORDER BY ended_at, id
    LIMIT :batch
)
RETURNING workflow_name, instance_name, instance_id;

-- name: has_history_before
-- Whether a history row ended before the cutoff.
SELECT 1 FROM cereal_workflow_results WHERE ended_at < :cutoff LIMIT 1;

-- name: trim_history_before
-- Delete up to :batch of the history rows that ended before the cutoff, oldest first,
-- returning each run's instance so its event history goes too.
DELETE FROM cereal_workflow_results
WHERE id IN (
    SELECT id FROM cereal_workflow_results
    WHERE ended_at < :cutoff
    ORDER BY ended_at, id
    LIMIT :batch
)
RETURNING workflow_name, instance_name, instance_id;

-- name: trim_run_events
-- Delete the event history of one trimmed run (the history index's prefix).
DELETE FROM cereal_event_history
WHERE workflow_name = :workflow_name AND instance_name = :instance_name
  AND instance_id = :instance_id;

-- ---- schedules ------------------------------------------------------------------

-- name: insert_schedule
-- Store a new schedule unless one with these names exists (no row returned then).
INSERT INTO cereal_workflow_schedules
    (workflow_name, instance_name, parameters, recurrence, enabled, next_due_at, created_at,
     overlap, catch_up_window)
VALUES
    (:workflow_name, :instance_name, :parameters, :recurrence, :enabled, :next_due_at, :now,
     :overlap, :catch_up_window)
ON CONFLICT (workflow_name, instance_name) DO NOTHING
RETURNING id;

-- name: list_schedules
-- One page of schedules (by names) with the start and end of each one's newest finished run.
SELECT s.id, s.enabled, s.workflow_name, s.instance_name, s.parameters, s.recurrence,
       s.next_due_at, s.last_enqueued_at, r.started_at AS last_start, r.ended_at AS last_end,
       s.overlap, s.catch_up_window, s.run_pending
FROM cereal_workflow_schedules AS s
LEFT JOIN cereal_workflow_results AS r ON r.id = (
    SELECT max(h.id) FROM cereal_workflow_results AS h
    WHERE h.workflow_name = s.workflow_name AND h.instance_name = s.instance_name
)
ORDER BY s.workflow_name, s.instance_name
LIMIT coalesce(:page_limit, -1) OFFSET :page_offset;

-- name: get_schedule
-- One schedule with the start and end of its newest finished run.
SELECT s.id, s.enabled, s.workflow_name, s.instance_name, s.parameters, s.recurrence,
       s.next_due_at, s.last_enqueued_at, r.started_at AS last_start, r.ended_at AS last_end,
       s.overlap, s.catch_up_window, s.run_pending
FROM cereal_workflow_schedules AS s
LEFT JOIN cereal_workflow_results AS r ON r.id = (
    SELECT max(h.id) FROM cereal_workflow_results AS h
    WHERE h.workflow_name = s.workflow_name AND h.instance_name = s.instance_name
)
WHERE s.workflow_name = :workflow_name AND s.instance_name = :instance_name;

-- name: update_schedule
-- Apply a schedule update; while a scheduler holds the schedule, remember what
-- it set so the scheduler's own change does not overwrite it.
UPDATE cereal_workflow_schedules
SET enabled = coalesce(:enabled, enabled),
    parameters = CASE WHEN :set_parameters THEN :parameters ELSE parameters END,
    recurrence = coalesce(:recurrence, recurrence),
    overlap = coalesce(:overlap, overlap),
    catch_up_window = coalesce(:catch_up_window, catch_up_window),
    -- with :due_rule, the due time applies only to a disabled schedule with that rule
    -- (SET expressions see the row as it was before this statement)
    next_due_at = CASE WHEN :due_rule IS NULL OR (enabled = 0 AND recurrence = :due_rule)
                       THEN coalesce(:next_due_at, next_due_at) ELSE next_due_at END,
    override_enabled = CASE WHEN claim_token IS NULL THEN NULL
                            ELSE coalesce(:enabled, override_enabled) END,
    override_next_due_at = CASE
        WHEN claim_token IS NULL THEN NULL
        WHEN :due_rule IS NULL OR (enabled = 0 AND recurrence = :due_rule)
            THEN coalesce(:next_due_at, override_next_due_at)
        ELSE override_next_due_at END
WHERE workflow_name = :workflow_name AND instance_name = :instance_name;

-- name: delete_schedule
-- Remove a schedule.
DELETE FROM cereal_workflow_schedules
WHERE workflow_name = :workflow_name AND instance_name = :instance_name;

-- name: next_due_schedule
-- The earliest schedule that no live scheduler claim holds and that is either
-- enabled and due (column due = 1) or has a waiting run whose instance has ended.
SELECT s.id, s.enabled, s.workflow_name, s.instance_name, s.parameters, s.recurrence,
       s.next_due_at, s.last_enqueued_at, r.started_at AS last_start, r.ended_at AS last_end,
       s.overlap, s.catch_up_window, s.run_pending,
       (s.enabled = 1 AND s.next_due_at <= :now) AS due
FROM cereal_workflow_schedules AS s
LEFT JOIN cereal_workflow_results AS r ON r.id = (
    SELECT max(h.id) FROM cereal_workflow_results AS h
    WHERE h.workflow_name = s.workflow_name AND h.instance_name = s.instance_name
)
WHERE ((s.enabled = 1 AND s.next_due_at <= :now)
       OR (s.run_pending = 1 AND NOT EXISTS (
           SELECT 1 FROM cereal_workflow_instances AS i
           WHERE i.workflow_name = s.workflow_name AND i.instance_name = s.instance_name)))
  AND (s.claim_token IS NULL OR s.claimed_at < :stale_before)
ORDER BY s.next_due_at, s.id
LIMIT 1;

-- name: claim_schedule
-- Take a scheduler claim on a due schedule.
UPDATE cereal_workflow_schedules
SET claim_token = :token, claimed_at = :now, override_enabled = NULL, override_next_due_at = NULL
WHERE id = :schedule_id;

-- name: check_schedule_claim
-- Whether the schedule still exists and is claimed with this token.
SELECT 1 FROM cereal_workflow_schedules WHERE id = :schedule_id AND claim_token = :token;

-- name: advance_schedule
-- Store the scheduler's change, if any (updates made meanwhile win), and drop the claim.
UPDATE cereal_workflow_schedules
SET next_due_at = coalesce(override_next_due_at, :next_due_at, next_due_at),
    enabled = coalesce(override_enabled, :enabled, enabled),
    claim_token = NULL, claimed_at = NULL,
    override_enabled = NULL, override_next_due_at = NULL
WHERE id = :schedule_id AND claim_token = :token;

-- name: disable_schedule
-- Disable a claimed schedule (an update made meanwhile wins) and drop the claim.
UPDATE cereal_workflow_schedules
SET enabled = coalesce(override_enabled, 0),
    claim_token = NULL, claimed_at = NULL,
    override_enabled = NULL, override_next_due_at = NULL
WHERE id = :schedule_id AND claim_token = :token;

-- name: release_schedule
-- Drop a scheduler claim without a change.
UPDATE cereal_workflow_schedules
SET claim_token = NULL, claimed_at = NULL, override_enabled = NULL, override_next_due_at = NULL
WHERE id = :schedule_id AND claim_token = :token;

-- name: next_scheduled
-- The enabled schedule due soonest.
SELECT s.id, s.enabled, s.workflow_name, s.instance_name, s.parameters, s.recurrence,
       s.next_due_at, s.last_enqueued_at, r.started_at AS last_start, r.ended_at AS last_end,
       s.overlap, s.catch_up_window, s.run_pending
FROM cereal_workflow_schedules AS s
LEFT JOIN cereal_workflow_results AS r ON r.id = (
    SELECT max(h.id) FROM cereal_workflow_results AS h
    WHERE h.workflow_name = s.workflow_name AND h.instance_name = s.instance_name
)
WHERE s.enabled = 1
ORDER BY s.next_due_at, s.id
LIMIT 1;

-- name: task_queue_depths
-- Metrics: due queued tasks per task name with the oldest one's enqueue time. The
-- ready indexes (queued tasks only; start_after is their last column since
-- migration 0020) cover the due filter: the cost follows the queued tasks, never
-- the history. (Unkeyed and keyed tasks have ready indexes of their own since 0018.)
SELECT name, sum(depth) AS depth, min(oldest_at) AS oldest_at
FROM (
    SELECT task_name AS name, count(*) AS depth, min(enqueued_at) AS oldest_at
    FROM cereal_tasks INDEXED BY cereal_tasks_due
    WHERE state = 'queued' AND start_after <= :now AND concurrency_key IS NULL
    GROUP BY task_name
    UNION ALL
    SELECT task_name, count(*), min(enqueued_at)
    FROM cereal_tasks INDEXED BY cereal_tasks_due_keyed
    WHERE state = 'queued' AND concurrency_key IS NOT NULL AND start_after <= :now
    GROUP BY task_name
)
GROUP BY name
ORDER BY name;

-- name: workflow_queue_depths
-- Metrics: ready, unclaimed instances per workflow name with the enqueue time of the
-- oldest pending event, from the ready index (migration 0003) and one event row each.
SELECT i.workflow_name AS name, count(*) AS depth, min(e.enqueued_at) AS oldest_at
FROM cereal_workflow_instances AS i INDEXED BY cereal_workflow_instances_ready
JOIN cereal_workflow_events AS e ON e.id = i.ready_seq
WHERE i.ready_seq IS NOT NULL AND i.claim_token IS NULL
GROUP BY i.workflow_name
ORDER BY i.workflow_name;

-- ---- inspection (read-only, the dashboard) --------------------------------------

-- name: instance_tasks
-- The queued and running tasks of a live instance (by its unique names), in enqueue order.
SELECT t.id, t.task_name, t.state, t.parameters, t.enqueued_at, t.start_after, t.attempt,
       i.workflow_name, i.instance_name, t.concurrency_key, t.concurrency_limit,
       t.rate_limit_starts, t.rate_limit_seconds, t.priority, t.idempotency_key
FROM cereal_workflow_instances AS i
JOIN cereal_tasks AS t ON t.instance_id = i.id
WHERE i.workflow_name = :workflow_name AND i.instance_name = :instance_name
ORDER BY t.id;

-- name: instance_event_history
-- The events one run received, oldest first: the live instance's, else the newest
-- finished run's (runs of a pair are sequential, so the highest instance id).
-- Pending while the event row still exists. Both lookups use the names indexes.
SELECT h.event_id AS id, h.event_type, h.enqueued_at, h.task_name,
       h.task_status AS status, h.error_text, h.task_enqueued_at, h.task_attempts,
       EXISTS (SELECT 1 FROM cereal_workflow_events AS e WHERE e.id = h.event_id) AS pending
FROM cereal_event_history AS h
WHERE h.workflow_name = :workflow_name AND h.instance_name = :instance_name
  AND h.instance_id = coalesce(
      (SELECT id FROM cereal_workflow_instances
       WHERE workflow_name = :workflow_name AND instance_name = :instance_name),
      (SELECT max(instance_id) FROM cereal_event_history
       WHERE workflow_name = :workflow_name AND instance_name = :instance_name))
ORDER BY h.event_id;

-- name: instance_tasks_page
-- One page of a live instance's tasks, newest first: those enqueued before the
-- task id :before. The (instance_id) index holds the rowid as its last key, so
-- this walks the instance's entries backwards from :before and stops at the limit.
SELECT t.id, t.task_name, t.state, t.parameters, t.enqueued_at, t.start_after, t.attempt,
       i.workflow_name, i.instance_name, t.concurrency_key, t.concurrency_limit,
       t.rate_limit_starts, t.rate_limit_seconds, t.priority, t.idempotency_key
FROM cereal_workflow_instances AS i
JOIN cereal_tasks AS t ON t.instance_id = i.id
WHERE i.workflow_name = :workflow_name AND i.instance_name = :instance_name
  AND t.id < :before
ORDER BY t.id DESC
LIMIT coalesce(:page_limit, -1);

-- name: tasks_by_name
-- Every live instance's queued and running tasks of one name, in enqueue order
-- (the (task_name, id) index; a task row carries its instance's names).
SELECT t.id, t.task_name, t.state, t.parameters, t.enqueued_at, t.start_after, t.attempt,
       t.workflow_name, t.instance_name, t.concurrency_key, t.concurrency_limit,
       t.rate_limit_starts, t.rate_limit_seconds, t.priority, t.idempotency_key
FROM cereal_tasks AS t
WHERE t.task_name = :task_name
ORDER BY t.id;

-- name: tasks_by_name_page
-- One page of them, newest first: the (task_name, id) index walked backwards from
-- the task id :before, cut at :page_limit (NULL: all).
SELECT t.id, t.task_name, t.state, t.parameters, t.enqueued_at, t.start_after, t.attempt,
       t.workflow_name, t.instance_name, t.concurrency_key, t.concurrency_limit,
       t.rate_limit_starts, t.rate_limit_seconds, t.priority, t.idempotency_key
FROM cereal_tasks AS t
WHERE t.task_name = :task_name AND t.id < :before
ORDER BY t.id DESC
LIMIT coalesce(:page_limit, -1);

-- name: instance_event_history_page
-- One page of a run's event history, newest first: the events below :before,
-- read backwards through the (names, instance id, event id) index and cut at
-- :page_limit (NULL: all), so a long history costs one page per call. The page
-- is cut before the pending check, so that check probes the events' primary key
-- once per listed event instead of reading every pending event.
SELECT p.id, p.event_type, p.enqueued_at, p.task_name, p.status, p.error_text,
       p.task_enqueued_at, p.task_attempts,
       EXISTS (SELECT 1 FROM cereal_workflow_events AS e WHERE e.id = p.id) AS pending
FROM (
    SELECT h.event_id AS id, h.event_type, h.enqueued_at, h.task_name,
           h.task_status AS status, h.error_text, h.task_enqueued_at, h.task_attempts
    FROM cereal_event_history AS h
    WHERE h.workflow_name = :workflow_name AND h.instance_name = :instance_name
      AND h.instance_id = coalesce(
          (SELECT id FROM cereal_workflow_instances
           WHERE workflow_name = :workflow_name AND instance_name = :instance_name),
          (SELECT max(instance_id) FROM cereal_event_history
           WHERE workflow_name = :workflow_name AND instance_name = :instance_name))
      AND h.event_id < :before
    ORDER BY h.event_id DESC
    LIMIT coalesce(:page_limit, -1)
) AS p
ORDER BY p.id DESC;
-- name: task_queue_stats
-- Per task name: queued and running counts and the oldest queued task's enqueue time.
-- The task table holds only queued and running tasks, so this reads the queues alone.
SELECT s.task_name, s.queued, s.running, t.enqueued_at AS oldest_queued_at
FROM (
    SELECT task_name,
           sum(state = 'queued') AS queued,
           sum(state = 'running') AS running,
           min(CASE WHEN state = 'queued' THEN id END) AS oldest_id
    FROM cereal_tasks
    GROUP BY task_name
) AS s
LEFT JOIN cereal_tasks AS t ON t.id = s.oldest_id
ORDER BY s.task_name;
-- name: schedule_run_state
-- What asking a schedule for a run needs: its policy, waiting run, current parameters.
SELECT id, overlap, run_pending, parameters
FROM cereal_workflow_schedules
WHERE workflow_name = :workflow_name AND instance_name = :instance_name;

-- name: record_schedule_run
-- After asking for a run: whether one waits, and when one last started.
UPDATE cereal_workflow_schedules
SET run_pending = :run_pending,
    last_enqueued_at = CASE WHEN :started THEN :now ELSE last_enqueued_at END
WHERE id = :schedule_id;

-- name: has_waiting_schedule_run
-- Whether any schedule has a run waiting for its instance to end.
SELECT 1 FROM cereal_workflow_schedules WHERE run_pending = 1 LIMIT 1;

-- ---- dead letters ---------------------------------------------------------------

-- name: dead_tasks_page
-- Dead tasks, newest first: the primary key walked backwards from the task id
-- :before, optionally of one task name and/or workflow name, cut at :page_limit
-- (NULL: all); run_live says whether the run can still receive a requeued result.
SELECT d.task_id, d.task_name, d.workflow_name, d.instance_name, d.status, d.parameters,
       d.error_text, d.error_type, d.error_traceback, d.attempts, d.enqueued_at, d.died_at,
       EXISTS (SELECT 1 FROM cereal_workflow_instances AS i WHERE i.id = d.instance_id)
           AS run_live
FROM cereal_dead_tasks AS d
WHERE d.task_id < :before
  AND (:task_name IS NULL OR d.task_name = :task_name)
  AND (:workflow_name IS NULL OR d.workflow_name = :workflow_name)
ORDER BY d.task_id DESC
LIMIT coalesce(:page_limit, -1);

-- name: dead_task_to_requeue
-- One dead task with its live run (no row: no such dead task; NULL live_id: its
-- run has finished).
SELECT d.task_id, d.task_name, d.parameters, d.instance_id, i.id AS live_id,
       i.workflow_name, i.instance_name, d.concurrency_key, d.concurrency_limit,
       d.rate_limit_starts, d.rate_limit_seconds, d.priority, k.idempotency_key
FROM cereal_dead_tasks AS d
LEFT JOIN cereal_workflow_instances AS i ON i.id = d.instance_id
LEFT JOIN cereal_task_keys AS k ON k.instance_id = i.id AND k.task_id = d.task_id
WHERE d.task_id = :task_id;

-- name: count_requeued_task
-- A requeued task is one more task the run enqueued.
UPDATE cereal_workflow_instances SET enqueued_tasks = enqueued_tasks + 1
WHERE id = :instance_id;

-- name: delete_dead_task
-- A requeued dead task leaves the dead letters.
DELETE FROM cereal_dead_tasks WHERE task_id = :task_id;

-- name: trim_run_dead_tasks
-- Delete the dead tasks of one trimmed run.
DELETE FROM cereal_dead_tasks WHERE instance_id = :instance_id;

-- name: failed_runs_page
-- Finished runs that failed and were not requeued, newest first: the failed-runs index walked backwards
-- from the run id :before, optionally of one workflow name, cut at :page_limit
-- (NULL: all).
SELECT r.id, r.workflow_name, r.instance_name, r.parameters, r.error, r.error_type,
       r.error_traceback, r.started_at, r.ended_at
FROM cereal_workflow_results AS r
WHERE r.error IS NOT NULL AND r.requeued_at IS NULL AND r.id < :before
  AND (:workflow_name IS NULL OR r.workflow_name = :workflow_name)
ORDER BY r.id DESC
LIMIT coalesce(:page_limit, -1);

-- name: failed_run_to_requeue
-- A failed run not requeued yet (no row: none with this id).
SELECT id, workflow_name, instance_name, parameters, concurrency_key, concurrency_limit
FROM cereal_workflow_results
WHERE id = :run_id AND error IS NOT NULL AND requeued_at IS NULL;

-- name: mark_run_requeued
-- A requeued failed run leaves the failed-runs listing (one under a workflow
-- concurrency key says it went back under it: migration 0024's trigger).
UPDATE cereal_workflow_results
SET requeued_at = :now, requeued_under_key = concurrency_key IS NOT NULL
WHERE id = :run_id;

-- name: find_start_key
-- The instance name a start key started within the window, if any.
SELECT instance_name FROM cereal_start_keys
WHERE workflow_name = :workflow_name AND idempotency_key = :idempotency_key
  AND created_at > :cutoff;

-- name: record_start_key
-- Record (or renew, once expired) the key of the run just created.
INSERT OR REPLACE INTO cereal_start_keys
    (workflow_name, idempotency_key, instance_name, created_at)
VALUES (:workflow_name, :idempotency_key, :instance_name, :now);

-- name: trim_start_keys
-- Delete one batch of the oldest expired start keys.
DELETE FROM cereal_start_keys
WHERE (workflow_name, idempotency_key) IN (
    SELECT workflow_name, idempotency_key FROM cereal_start_keys
    WHERE created_at <= :cutoff ORDER BY created_at LIMIT :batch
);

-- name: has_expired_start_key
-- Whether any start key is past its window (autocommit read).
SELECT 1 FROM cereal_start_keys WHERE created_at <= :cutoff LIMIT 1;

-- name: trim_workflow_before
-- Delete up to :batch of one workflow name's history rows that ended before the
-- cutoff, oldest first, returning each run's instance so its event history goes too.
DELETE FROM cereal_workflow_results
WHERE id IN (
    SELECT id FROM cereal_workflow_results INDEXED BY cereal_workflow_results_name_end
    WHERE workflow_name = :workflow_name AND ended_at < :cutoff
    ORDER BY ended_at, id
    LIMIT :batch
)
RETURNING workflow_name, instance_name, instance_id;

-- name: workflow_row_at_offset
-- The (ended_at, id) of one workflow name's history row at this offset, newest first.
SELECT ended_at, id FROM cereal_workflow_results INDEXED BY cereal_workflow_results_name_end
WHERE workflow_name = :workflow_name
ORDER BY ended_at DESC, id DESC
LIMIT 1 OFFSET :offset;

-- name: trim_workflow_through
-- Delete up to :batch of one workflow name's history rows at or before this
-- (ended_at, id), oldest first.
DELETE FROM cereal_workflow_results
WHERE id IN (
    SELECT id FROM cereal_workflow_results INDEXED BY cereal_workflow_results_name_end
    WHERE workflow_name = :workflow_name
      AND (ended_at < :ended_at OR (ended_at = :ended_at AND id <= :last_id))
    ORDER BY ended_at, id
    LIMIT :batch
)
RETURNING workflow_name, instance_name, instance_id;

-- name: has_workflow_history_before
-- Whether one workflow name has a history row that ended before the cutoff.
SELECT 1 FROM cereal_workflow_results INDEXED BY cereal_workflow_results_name_end
WHERE workflow_name = :workflow_name AND ended_at < :cutoff LIMIT 1;

-- name: run_throughput_all
-- Finished runs per bucket of :bucket_seconds from :window_start to :window_end:
-- a range scan of the end-time index alone (cereal_workflow_results_by_end).
SELECT CAST((ended_at - :window_start) / :bucket_seconds AS INTEGER) AS slot, count(*) AS runs
FROM cereal_workflow_results INDEXED BY cereal_workflow_results_by_end
WHERE ended_at >= :window_start AND ended_at < :window_end
GROUP BY slot;

-- name: run_throughput_failed
-- Failed runs per bucket, as run_throughput_all: the partial index of failed runs' end times
-- (each found run's row is read to confirm the index's condition: SQLite 3.40 does not
-- treat a partial index as covering).
SELECT CAST((ended_at - :window_start) / :bucket_seconds AS INTEGER) AS slot, count(*) AS runs
FROM cereal_workflow_results INDEXED BY cereal_workflow_results_failed_end
WHERE error IS NOT NULL AND ended_at >= :window_start AND ended_at < :window_end
GROUP BY slot;

-- name: instance_start_keys
-- The kept idempotency keys that started runs of these names, newest first.
SELECT idempotency_key, created_at FROM cereal_start_keys
WHERE workflow_name = :workflow_name AND instance_name = :instance_name
ORDER BY created_at DESC, idempotency_key DESC;

-- name: retention_rules
-- The history retention the sweeps last applied: the store-wide rule ('') first.
SELECT workflow_name, max_rows, margin_rows, max_runs, max_age, applied_at
FROM cereal_retention_rules
ORDER BY workflow_name;

-- name: clear_retention_rules
DELETE FROM cereal_retention_rules;

-- name: insert_retention_rule
INSERT INTO cereal_retention_rules
    (workflow_name, max_rows, margin_rows, max_runs, max_age, applied_at)
VALUES (:workflow_name, :max_rows, :margin_rows, :max_runs, :max_age, :applied_at);
