-- Throughput charts: the failed runs per time bucket are counted from this
-- partial index alone (every run per bucket from cereal_workflow_results_by_end),
-- so a window's count reads only the index entries inside it, never the table.

CREATE INDEX cereal_workflow_results_failed_end
    ON cereal_workflow_results (ended_at) WHERE error IS NOT NULL;
