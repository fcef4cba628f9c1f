-- Throughput charts: the failed runs per time bucket are counted from this
-- partial index alone (every run per bucket from cereal_workflow_results_ended),
-- so a window's count is an index-only range scan, never a read of the table.

CREATE INDEX cereal_workflow_results_failed_end
    ON cereal_workflow_results (ended_at) WHERE error IS NOT NULL;
