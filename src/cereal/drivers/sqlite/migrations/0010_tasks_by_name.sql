-- Listing the tasks of one name (Driver.list_tasks): queued and running tasks of
-- a name, newest first by id, one page at a time. The ready index covers queued
-- tasks only and is ordered by start time, so a page would read every queued task
-- of the name; this one walks (task_name, id) backwards from the cursor and stops
-- at the page's limit, whatever the backlog.
CREATE INDEX cereal_tasks_by_name ON cereal_tasks (task_name, id);
