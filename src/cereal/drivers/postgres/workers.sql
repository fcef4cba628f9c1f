-- The PostgreSQL driver's queries on live workers (table cereal_workers).
-- Every value is bound (%(name)s); the database's now() is the clock.

-- name: register_worker
-- Insert this Manager's row, or renew it (keeping its start time).
INSERT INTO cereal_workers (id, host, pid, version, workflow_names, task_names, expiry)
VALUES (%(id)s, %(host)s, %(pid)s, %(version)s, %(workflow_names)s, %(task_names)s, %(expiry)s)
ON CONFLICT (id) DO UPDATE SET
    host = excluded.host, pid = excluded.pid, version = excluded.version,
    workflow_names = excluded.workflow_names, task_names = excluded.task_names,
    expiry = excluded.expiry, last_seen_at = now()

-- name: refresh_worker
-- A heartbeat: no row when it was dropped (the Manager then registers again).
UPDATE cereal_workers SET last_seen_at = now() WHERE id = %(id)s
RETURNING id

-- name: drop_dead_workers
-- Rows not refreshed within their own expiry: their Manager died. Rows another
-- Manager is deleting or refreshing right now are skipped, so no two wait.
DELETE FROM cereal_workers
WHERE id IN (
    SELECT id FROM cereal_workers
    WHERE last_seen_at < now() - make_interval(secs => expiry)
    FOR UPDATE SKIP LOCKED
)

-- name: unregister_worker
DELETE FROM cereal_workers WHERE id = %(id)s

-- name: list_workers
SELECT id, host, pid, version, workflow_names, task_names, started_at, last_seen_at
FROM cereal_workers
WHERE last_seen_at >= now() - make_interval(secs => expiry)
ORDER BY started_at, id
