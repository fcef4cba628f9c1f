-- Observability: a failed task keeps its story, and a task carries its trace.
--   cereal_task_results.error_type       the qualified name of the executor's exception
--   cereal_task_results.error_traceback  its traceback (bounded by the writer)
--   cereal_tasks.traceparent             the W3C traceparent of the enqueuing callback's
--                                        span, restored when the task runs
-- All three are NULL for rows written by older code.

ALTER TABLE cereal_task_results ADD COLUMN error_type TEXT;
ALTER TABLE cereal_task_results ADD COLUMN error_traceback TEXT;
ALTER TABLE cereal_tasks ADD COLUMN traceparent TEXT;
