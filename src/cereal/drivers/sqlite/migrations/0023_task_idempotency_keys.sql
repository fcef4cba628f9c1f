-- Task idempotency keys: a run gets at most one task per key while it lives.
--
-- cereal_task_keys holds the keys of each live run with the task each made (its
-- id changes when a dead task is requeued in its place); a decision stores a
-- keyed task only when its key is not here, in its write transaction. The rows
-- of a run go when it finishes (with its tasks, in the finalisation). The task
-- row carries its key too, so listings show it.
ALTER TABLE cereal_tasks ADD COLUMN idempotency_key TEXT;

CREATE TABLE cereal_task_keys (
    instance_id     INTEGER NOT NULL,
    idempotency_key TEXT NOT NULL,
    task_id         INTEGER NOT NULL,
    PRIMARY KEY (instance_id, idempotency_key)
) WITHOUT ROWID;
