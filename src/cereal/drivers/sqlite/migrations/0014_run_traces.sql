-- One trace per workflow run: the enqueue's W3C traceparent is kept with the
-- live instance and the reporting task run's with each task result, so every
-- callback's span (in whichever process claims the run) has its parent.
-- Both are NULL when nothing is traced.

ALTER TABLE cereal_workflow_instances ADD COLUMN traceparent TEXT;

ALTER TABLE cereal_task_results ADD COLUMN traceparent TEXT;
