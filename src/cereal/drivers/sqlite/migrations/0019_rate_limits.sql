-- Rate limits: a task with a concurrency key may carry a rate limit (at most
-- rate_limit_starts starts of its key per rate_limit_seconds), beside or
-- instead of its concurrency limit. A key now needs one limit or both, so the
-- task table is rebuilt without the old column check (SQLite cannot drop one):
-- rows, ids and the id sequence are carried over, then the indexes are made again.

CREATE TABLE cereal_tasks_next (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    instance_id        INTEGER NOT NULL,
    workflow_name      TEXT NOT NULL,
    instance_name      TEXT NOT NULL,
    task_name          TEXT NOT NULL,
    parameters         BLOB,
    state              TEXT NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'running')),
    enqueued_at        REAL NOT NULL,
    start_after        REAL NOT NULL,
    lease_token        TEXT,
    lease_heartbeat_at REAL,
    attempt            INTEGER NOT NULL DEFAULT 0,
    lease_expiry       REAL,
    traceparent        TEXT,
    retry_policy       TEXT,
    hand_backs         INTEGER NOT NULL DEFAULT 0,
    concurrency_key    TEXT,
    concurrency_limit  INTEGER,
    rate_limit_starts  INTEGER,
    rate_limit_seconds REAL,
    CHECK ((rate_limit_starts IS NULL) = (rate_limit_seconds IS NULL)),
    CHECK ((concurrency_key IS NULL) = (concurrency_limit IS NULL AND rate_limit_starts IS NULL))
);

INSERT INTO cereal_tasks_next
    (id, instance_id, workflow_name, instance_name, task_name, parameters, state, enqueued_at,
     start_after, lease_token, lease_heartbeat_at, attempt, lease_expiry, traceparent,
     retry_policy, hand_backs, concurrency_key, concurrency_limit)
SELECT id, instance_id, workflow_name, instance_name, task_name, parameters, state, enqueued_at,
       start_after, lease_token, lease_heartbeat_at, attempt, lease_expiry, traceparent,
       retry_policy, hand_backs, concurrency_key, concurrency_limit
FROM cereal_tasks;

-- results and dead letters name tasks by id: a new task must never reuse the id
-- of a finished one, so the sequence goes on from the old table's
DELETE FROM sqlite_sequence WHERE name = 'cereal_tasks_next';

INSERT INTO sqlite_sequence (name, seq)
SELECT 'cereal_tasks_next', seq FROM sqlite_sequence WHERE name = 'cereal_tasks';

DROP TABLE cereal_tasks;

ALTER TABLE cereal_tasks_next RENAME TO cereal_tasks;

CREATE INDEX cereal_tasks_by_instance ON cereal_tasks (instance_id);

CREATE INDEX cereal_tasks_by_name ON cereal_tasks (task_name, id);

CREATE INDEX cereal_tasks_leases ON cereal_tasks (lease_heartbeat_at) WHERE state = 'running';

CREATE INDEX cereal_tasks_ready ON cereal_tasks (task_name, start_after, id)
WHERE state = 'queued' AND concurrency_key IS NULL;

CREATE INDEX cereal_tasks_ready_keys ON cereal_tasks (task_name, concurrency_key, start_after, id)
WHERE state = 'queued' AND concurrency_key IS NOT NULL;

CREATE INDEX cereal_tasks_running_keys ON cereal_tasks (concurrency_key)
WHERE state = 'running' AND concurrency_key IS NOT NULL;

-- One row per start of a rate-limited key while it is inside its window
-- (leaves_at: the start's time plus its task's period). The claim counts a
-- key's rows still inside, and deletes rows that have left in small batches.
CREATE TABLE cereal_key_starts (
    id              INTEGER PRIMARY KEY,
    concurrency_key TEXT NOT NULL,
    leaves_at       REAL NOT NULL
);

CREATE INDEX cereal_key_starts_by_key ON cereal_key_starts (concurrency_key, leaves_at);

CREATE INDEX cereal_key_starts_by_time ON cereal_key_starts (leaves_at);

-- A result and a dead letter keep the rate limit too, so a requeued dead task
-- runs under it again; the dead-letter trigger copies it.
ALTER TABLE cereal_task_results ADD COLUMN rate_limit_starts INTEGER;
ALTER TABLE cereal_task_results ADD COLUMN rate_limit_seconds REAL;
ALTER TABLE cereal_dead_tasks ADD COLUMN rate_limit_starts INTEGER;
ALTER TABLE cereal_dead_tasks ADD COLUMN rate_limit_seconds REAL;

DROP TRIGGER cereal_task_results_dead;

CREATE TRIGGER cereal_task_results_dead
AFTER INSERT ON cereal_task_results
FOR EACH ROW WHEN NEW.status <> 'success'
BEGIN
    INSERT OR IGNORE INTO cereal_dead_tasks
        (task_id, instance_id, workflow_name, instance_name, task_name, parameters, status,
         error_text, error_type, error_traceback, attempts, enqueued_at, died_at,
         concurrency_key, concurrency_limit, rate_limit_starts, rate_limit_seconds)
    SELECT NEW.task_id, NEW.instance_id, i.workflow_name, i.instance_name, NEW.task_name,
           NEW.parameters, NEW.status, NEW.error_text, NEW.error_type, NEW.error_traceback,
           NEW.attempts, NEW.enqueued_at, NEW.completed_at, NEW.concurrency_key,
           NEW.concurrency_limit, NEW.rate_limit_starts, NEW.rate_limit_seconds
    FROM cereal_workflow_instances AS i
    WHERE i.id = NEW.instance_id;
END;
