-- The SQLite driver's queries on live workers (table cereal_workers).
-- Instants are REAL epoch seconds from the host clock, passed in as :now.

-- name: register_worker
-- Insert this Manager's row, or renew it (keeping its start time).
INSERT INTO cereal_workers
    (id, host, pid, version, workflow_names, task_names, expiry, started_at, last_seen_at)
VALUES (:id, :host, :pid, :version, :workflow_names, :task_names, :expiry, :now, :now)
ON CONFLICT (id) DO UPDATE SET
    host = excluded.host, pid = excluded.pid, version = excluded.version,
    workflow_names = excluded.workflow_names, task_names = excluded.task_names,
    expiry = excluded.expiry, last_seen_at = excluded.last_seen_at;

-- name: refresh_worker
-- A heartbeat: no row when it was dropped (the Manager then registers again).
UPDATE cereal_workers SET last_seen_at = :now WHERE id = :id
RETURNING id;

-- name: drop_dead_workers
-- Rows not refreshed within their own expiry: their Manager died.
DELETE FROM cereal_workers WHERE last_seen_at + expiry < :now;

-- name: unregister_worker
DELETE FROM cereal_workers WHERE id = :id;

-- name: list_workers
SELECT id, host, pid, version, workflow_names, task_names, started_at, last_seen_at
FROM cereal_workers
WHERE last_seen_at + expiry >= :now
ORDER BY started_at, id;
