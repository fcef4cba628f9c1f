-- Rate limits, cheaper and safer (review of 0019 and 0020).
--
-- The ready indexes get new names: a process of an older release that still has
-- the store open names the old ones in its claims (INDEXED BY), so its claims now
-- fail with "no such index" instead of leasing tasks past their rate limits and
-- priorities, which it does not know. Restart every process on the new release.
--
-- A claim that finds or leaves a key's rate window full records until when it
-- stays full (until its first start leaves it): later claims pass the key over
-- without counting its window.

DROP INDEX cereal_tasks_ready;

CREATE INDEX cereal_tasks_due
ON cereal_tasks (task_name, start_after - 60.0 * priority, id, start_after)
WHERE state = 'queued' AND concurrency_key IS NULL;

DROP INDEX cereal_tasks_ready_keys;

CREATE INDEX cereal_tasks_due_keyed
ON cereal_tasks (task_name, concurrency_key, start_after - 60.0 * priority, id, start_after)
WHERE state = 'queued' AND concurrency_key IS NOT NULL;

CREATE TABLE cereal_key_windows (
    concurrency_key TEXT PRIMARY KEY,
    full_until      REAL NOT NULL
) WITHOUT ROWID;
