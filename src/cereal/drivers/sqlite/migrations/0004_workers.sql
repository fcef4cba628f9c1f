-- cereal SQLite schema: live workers. Every started Manager keeps one row,
-- refreshed with its heartbeat and removed at stop. A row whose last_seen_at
-- is older than its own expiry (the Manager's task_expiry, in seconds)
-- belongs to a Manager that died: it is never listed and is deleted.
-- workflow_names and task_names are JSON arrays of strings.
CREATE TABLE cereal_workers (
    id             TEXT PRIMARY KEY,
    host           TEXT NOT NULL,
    pid            INTEGER NOT NULL,
    version        TEXT NOT NULL,
    workflow_names TEXT NOT NULL,
    task_names     TEXT NOT NULL,
    expiry         REAL NOT NULL,
    started_at     REAL NOT NULL,
    last_seen_at   REAL NOT NULL
);
