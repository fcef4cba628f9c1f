-- Live workers: every started Manager keeps one row, refreshed with its
-- heartbeat and removed at stop. A row whose last_seen_at is older than its
-- own expiry (the Manager's task_expiry, in seconds) belongs to a Manager that
-- died: it is never listed and is deleted. Times are the database's now().
CREATE TABLE cereal_workers (
    id             text             PRIMARY KEY,
    host           text             NOT NULL,
    pid            integer          NOT NULL,
    version        text             NOT NULL,
    workflow_names text[]           NOT NULL,
    task_names     text[]           NOT NULL,
    expiry         double precision NOT NULL,
    started_at     timestamptz      NOT NULL DEFAULT now(),
    last_seen_at   timestamptz      NOT NULL DEFAULT now()
);
