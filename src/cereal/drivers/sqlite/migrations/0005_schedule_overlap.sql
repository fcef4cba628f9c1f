-- Schedules gain an overlap policy, a catch-up window and a waiting run.
--
-- overlap: what a due run does while the schedule's instance is live (skip,
-- buffer_one, cancel_other, terminate_other). catch_up_window: seconds; a due
-- time missed while no Manager ran is run once if it lies this close to now.
-- run_pending: 1 while a run waits for the live instance to end; the
-- scheduler starts it once no live instance has the schedule's names.
ALTER TABLE cereal_workflow_schedules ADD COLUMN overlap TEXT NOT NULL DEFAULT 'skip'
    CHECK (overlap IN ('skip', 'buffer_one', 'cancel_other', 'terminate_other'));
ALTER TABLE cereal_workflow_schedules ADD COLUMN catch_up_window REAL NOT NULL DEFAULT 0
    CHECK (catch_up_window >= 0);
ALTER TABLE cereal_workflow_schedules ADD COLUMN run_pending INTEGER NOT NULL DEFAULT 0
    CHECK (run_pending IN (0, 1));
