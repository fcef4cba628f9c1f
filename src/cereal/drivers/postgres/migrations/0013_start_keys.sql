-- Start keys: the idempotency key a workflow start was made with, per
-- workflow name, kept for the start-key window (24 h) after the run was
-- created. The key row is written first in the transaction that creates the
-- run, so two racing starts with one key serialise on its primary key: the
-- second sees the first's row once it commits (and starts nothing), or takes
-- the key if the first rolled back. Expired keys are deleted by the history
-- trim in bounded batches through the created_at index.

CREATE TABLE cereal_start_keys (
    workflow_name   text        NOT NULL,
    idempotency_key text        NOT NULL,
    instance_name   text        NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workflow_name, idempotency_key)
);

CREATE INDEX cereal_start_keys_created ON cereal_start_keys (created_at);
