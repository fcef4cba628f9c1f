-- cereal schema, version 1.
-- Live instances with their event queue, tasks and unconsumed task results;
-- finished runs in a history table; recurring schedules.
-- All instants are timestamptz; events are ordered by their identity column.

CREATE TABLE cereal_workflow_instances (
    id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workflow_name   text        NOT NULL,
    instance_name   text        NOT NULL,
    status          text        NOT NULL DEFAULT 'starting'
                    CONSTRAINT cereal_workflow_instances_status
                    CHECK (status IN ('starting', 'running')),
    parameters      bytea,
    payload         bytea,
    enqueued_tasks  bigint      NOT NULL DEFAULT 0,
    completed_tasks bigint      NOT NULL DEFAULT 0,
    started_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    -- one live instance per name pair; also the lookup path by names
    CONSTRAINT cereal_workflow_instances_name UNIQUE (workflow_name, instance_name)
);

CREATE INDEX cereal_workflow_instances_instance_name
    ON cereal_workflow_instances (instance_name);

CREATE TABLE cereal_workflow_events (
    id             bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    instance_id    bigint      NOT NULL,
    workflow_name  text        NOT NULL,
    event_type     text        NOT NULL
                   CONSTRAINT cereal_workflow_events_type
                   CHECK (event_type IN ('start', 'task_complete', 'cancel')),
    task_result_id bigint,
    enqueued_at    timestamptz NOT NULL DEFAULT now()
);

-- the events of one instance in sequence (purge on finish)
CREATE INDEX cereal_workflow_events_instance
    ON cereal_workflow_events (instance_id, id);
-- the dequeue path: events of the requested workflow names, oldest first
CREATE INDEX cereal_workflow_events_workflow
    ON cereal_workflow_events (workflow_name, id);

CREATE TABLE cereal_tasks (
    id            bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    instance_id   bigint      NOT NULL,
    workflow_name text        NOT NULL,
    instance_name text        NOT NULL,
    task_name     text        NOT NULL,
    parameters    bytea,
    state         text        NOT NULL DEFAULT 'queued'
                  CONSTRAINT cereal_tasks_state CHECK (state IN ('queued', 'running')),
    start_after   timestamptz NOT NULL DEFAULT now(),
    enqueued_at   timestamptz NOT NULL DEFAULT now(),
    attempt       integer     NOT NULL DEFAULT 0,
    lease         uuid,
    heartbeat_at  timestamptz
);

-- the claim path: ready tasks of one name, oldest start_after first
CREATE INDEX cereal_tasks_ready
    ON cereal_tasks (task_name, start_after, id) WHERE state = 'queued';
-- the expiry sweep: running tasks by lease heartbeat
CREATE INDEX cereal_tasks_leases
    ON cereal_tasks (heartbeat_at) WHERE state = 'running';
-- the tasks of one instance (deleted when it finishes)
CREATE INDEX cereal_tasks_instance
    ON cereal_tasks (instance_id);

CREATE TABLE cereal_task_results (
    id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    instance_id  bigint      NOT NULL,
    task_id      bigint      NOT NULL,
    task_name    text        NOT NULL,
    parameters   bytea,
    status       text        NOT NULL
                 CONSTRAINT cereal_task_results_status
                 CHECK (status IN ('success', 'failed', 'lost')),
    error        text        NOT NULL DEFAULT '',
    result       bytea,
    enqueued_at  timestamptz NOT NULL,
    completed_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX cereal_task_results_instance
    ON cereal_task_results (instance_id);

CREATE TABLE cereal_workflow_results (
    id            bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workflow_name text        NOT NULL,
    instance_name text        NOT NULL,
    parameters    bytea,
    result        bytea,
    error         text,
    started_at    timestamptz NOT NULL,
    ended_at      timestamptz NOT NULL DEFAULT now()
);

-- the newest finished run of a name pair
CREATE INDEX cereal_workflow_results_name
    ON cereal_workflow_results (workflow_name, instance_name, ended_at DESC, id DESC);
-- listing filtered by instance name only
CREATE INDEX cereal_workflow_results_instance_name
    ON cereal_workflow_results (instance_name);
-- retention: oldest runs first
CREATE INDEX cereal_workflow_results_ended
    ON cereal_workflow_results (ended_at, id);

CREATE TABLE cereal_workflow_schedules (
    id               bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workflow_name    text        NOT NULL,
    instance_name    text        NOT NULL,
    parameters       bytea,
    recurrence       text        NOT NULL,
    enabled          boolean     NOT NULL,
    next_due_at      timestamptz NOT NULL,
    last_enqueued_at timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT cereal_workflow_schedules_name UNIQUE (workflow_name, instance_name)
);

-- the scheduler's path: enabled schedules by due time
CREATE INDEX cereal_workflow_schedules_due
    ON cereal_workflow_schedules (next_due_at, id) WHERE enabled;
