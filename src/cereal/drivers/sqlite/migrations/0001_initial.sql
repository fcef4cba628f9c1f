-- cereal SQLite schema, version 1.
--
-- Instants are REAL seconds since the Unix epoch (UTC), taken from the host
-- clock. Values are BLOBs of JSON bytes, NULL meaning "no value". No foreign
-- keys: the driver deletes an instance's rows itself when the run ends.

-- Live (starting/running) instances. A claim (token + heartbeat time) marks
-- the instance whose event a workflow completer currently holds.
CREATE TABLE cereal_workflow_instances (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    workflow_name      TEXT    NOT NULL,
    instance_name      TEXT    NOT NULL,
    parameters         BLOB,
    payload            BLOB,
    status             TEXT    NOT NULL DEFAULT 'starting'
                               CHECK (status IN ('starting', 'running')),
    started_at         REAL    NOT NULL,
    enqueued_tasks     INTEGER NOT NULL DEFAULT 0,
    completed_tasks    INTEGER NOT NULL DEFAULT 0,
    claim_token        TEXT,
    claim_heartbeat_at REAL,
    UNIQUE (workflow_name, instance_name)
);

-- sweep: stale claims
CREATE INDEX cereal_workflow_instances_claims
    ON cereal_workflow_instances (claim_heartbeat_at)
    WHERE claim_token IS NOT NULL;

-- Pending events; the AUTOINCREMENT id is the monotonic sequence that orders them.
CREATE TABLE cereal_workflow_events (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    instance_id    INTEGER NOT NULL,
    workflow_name  TEXT    NOT NULL,
    event_type     TEXT    NOT NULL CHECK (event_type IN ('start', 'task_complete', 'cancel')),
    task_result_id INTEGER,
    enqueued_at    REAL    NOT NULL
);

-- dequeue: oldest event per workflow name; finalisation: events of an instance
CREATE INDEX cereal_workflow_events_by_name ON cereal_workflow_events (workflow_name, id);
CREATE INDEX cereal_workflow_events_by_instance ON cereal_workflow_events (instance_id, id);

-- Queued and running tasks. A running task holds a lease (token + heartbeat time).
CREATE TABLE cereal_tasks (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    instance_id        INTEGER NOT NULL,
    workflow_name      TEXT    NOT NULL,
    instance_name      TEXT    NOT NULL,
    task_name          TEXT    NOT NULL,
    parameters         BLOB,
    state              TEXT    NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'running')),
    enqueued_at        REAL    NOT NULL,
    start_after        REAL    NOT NULL,
    lease_token        TEXT,
    lease_heartbeat_at REAL,
    attempt            INTEGER NOT NULL DEFAULT 0
);

-- dequeue: queued tasks of one name in enqueue order, start_after covered
CREATE INDEX cereal_tasks_ready
    ON cereal_tasks (task_name, id, start_after)
    WHERE state = 'queued';
-- sweep: running tasks by lease heartbeat
CREATE INDEX cereal_tasks_leases
    ON cereal_tasks (lease_heartbeat_at)
    WHERE state = 'running';
-- finalisation: tasks of an instance
CREATE INDEX cereal_tasks_by_instance ON cereal_tasks (instance_id);

-- How finished tasks ended, until their task_complete event is consumed.
CREATE TABLE cereal_task_results (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id       INTEGER NOT NULL,
    instance_id   INTEGER NOT NULL,
    task_name     TEXT    NOT NULL,
    parameters    BLOB,
    status        TEXT    NOT NULL CHECK (status IN ('success', 'failed', 'lost')),
    error_text    TEXT    NOT NULL DEFAULT '',
    result        BLOB,
    enqueued_at   REAL    NOT NULL,
    completed_at  REAL    NOT NULL
);

CREATE INDEX cereal_task_results_by_instance ON cereal_task_results (instance_id);

-- Finished runs (history), trimmed by the sweep's retention policy.
CREATE TABLE cereal_workflow_results (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    workflow_name TEXT NOT NULL,
    instance_name TEXT NOT NULL,
    parameters    BLOB,
    result        BLOB,
    error         TEXT,
    started_at    REAL NOT NULL,
    ended_at      REAL NOT NULL
);

-- lookups: newest run of a pair (highest id); listing by workflow name
CREATE INDEX cereal_workflow_results_by_names
    ON cereal_workflow_results (workflow_name, instance_name, id);
-- retention: rows older than max_age
CREATE INDEX cereal_workflow_results_by_end ON cereal_workflow_results (ended_at);

-- Recurring schedules. A scheduler claims a due one (token + time) while it
-- enqueues; updates made meanwhile are kept in the override_* columns so they
-- win over the scheduler's own change, as if they had waited for its lock.
CREATE TABLE cereal_workflow_schedules (
    id                   INTEGER PRIMARY KEY AUTOINCREMENT,
    workflow_name        TEXT    NOT NULL,
    instance_name        TEXT    NOT NULL,
    parameters           BLOB,
    recurrence           TEXT    NOT NULL,
    enabled              INTEGER NOT NULL CHECK (enabled IN (0, 1)),
    next_due_at          REAL    NOT NULL,
    last_enqueued_at     REAL,
    created_at           REAL    NOT NULL,
    claim_token          TEXT,
    claimed_at           REAL,
    override_enabled     INTEGER,
    override_next_due_at REAL,
    UNIQUE (workflow_name, instance_name)
);

-- scheduler: enabled schedules by due time
CREATE INDEX cereal_workflow_schedules_due
    ON cereal_workflow_schedules (enabled, next_due_at);
