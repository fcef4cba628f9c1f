-- Observability: a failed task keeps its story, and a task carries its trace.
--   cereal_task_results.error_type       the qualified name of the executor's exception
--   cereal_task_results.error_traceback  its traceback (bounded by the writer)
--   cereal_tasks.traceparent             the W3C traceparent of the enqueuing callback's
--                                        span, restored when the task runs
--   cereal_workflow_results.error_type / error_traceback
--                                        what failed a failed run (an exception's
--                                        qualified type name and traceback)
-- All are NULL for rows written by older code.

ALTER TABLE cereal_task_results ADD COLUMN error_type TEXT;
ALTER TABLE cereal_task_results ADD COLUMN error_traceback TEXT;
ALTER TABLE cereal_tasks ADD COLUMN traceparent TEXT;
ALTER TABLE cereal_workflow_results ADD COLUMN error_type TEXT;
ALTER TABLE cereal_workflow_results ADD COLUMN error_traceback TEXT;
