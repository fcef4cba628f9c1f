-- Listings newest first page through finished runs by start time: this index
-- lets a page walk the newest starts and stop after offset + limit rows that
-- stand for their pair, instead of grouping the whole history per request.

CREATE INDEX cereal_workflow_results_started ON cereal_workflow_results (started_at);
