-- cereal SQLite schema: task retries and hand-back at stop.
--
--   cereal_tasks.retry_policy         the task's RetryPolicy as JSON (NULL: one
--                                     attempt); set at enqueue, or at the first
--                                     claim from the claimer's executor policy
--   cereal_tasks.hand_backs           times a stopping worker gave the task back
--   cereal_task_results.attempts      how many attempts the task took
-- The backoff of a retry is the task's start_after; attempt counts claims.
ALTER TABLE cereal_tasks ADD COLUMN retry_policy TEXT;
ALTER TABLE cereal_tasks ADD COLUMN hand_backs INTEGER NOT NULL DEFAULT 0;
ALTER TABLE cereal_task_results ADD COLUMN attempts INTEGER NOT NULL DEFAULT 1;
