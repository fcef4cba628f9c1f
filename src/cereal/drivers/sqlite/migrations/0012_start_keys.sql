-- Start keys: the idempotency key a workflow start was made with, per
-- workflow name, kept for the start-key window (24 h) after the run was
-- created. A start that finds its key here within the window starts nothing
-- and is told the instance name recorded; the key is written in the
-- transaction that creates the run. Expired keys are deleted by the history
-- trim in bounded batches, oldest first through the created_at index.

CREATE TABLE cereal_start_keys (
    workflow_name   TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    instance_name   TEXT NOT NULL,
    created_at      REAL NOT NULL,
    PRIMARY KEY (workflow_name, idempotency_key)
) WITHOUT ROWID;

CREATE INDEX cereal_start_keys_created ON cereal_start_keys (created_at);
