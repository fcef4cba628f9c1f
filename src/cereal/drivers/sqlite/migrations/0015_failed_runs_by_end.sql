-- Throughput charts: the failed runs per time bucket are found through this
-- partial index (every run per bucket through cereal_workflow_results_by_end),
-- so a window's count walks only the index entries inside it.

CREATE INDEX cereal_workflow_results_failed_end
    ON cereal_workflow_results (ended_at) WHERE error IS NOT NULL;
