-- Retention per workflow name: a name's rule trims its own finished runs,
-- oldest first, by age or beyond its newest N. This index serves both walks
-- (and the position of a name's Nth newest run) without touching other
-- names' rows. The history trigger drops each trimmed run's events as before.

CREATE INDEX cereal_workflow_results_name_end
    ON cereal_workflow_results (workflow_name, ended_at, id);
