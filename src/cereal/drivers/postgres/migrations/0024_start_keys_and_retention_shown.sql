-- What the CLI and the dashboard show of idempotent starts and history retention.
--
-- An instance's page lists the kept idempotency keys that started runs of its
-- names: they are found by the instance's names, newest first.
CREATE INDEX cereal_start_keys_by_instance
    ON cereal_start_keys (workflow_name, instance_name, created_at);

-- The history retention the sweeps last applied, as its rules: the store-wide
-- one (workflow_name '', a name no workflow can have) and one per workflow name;
-- applied_at is when a sweep first applied this retention. A sweep whose
-- retention differs replaces them all.
CREATE TABLE cereal_retention_rules (
    workflow_name text PRIMARY KEY,
    max_rows bigint,
    margin_rows bigint,
    max_runs bigint,
    max_age double precision,
    applied_at timestamp with time zone NOT NULL
);
