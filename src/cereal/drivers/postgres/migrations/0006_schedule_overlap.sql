-- Schedules gain an overlap policy, a catch-up window and a waiting run.
--
-- overlap: what a due run does while the schedule's instance is live (skip,
-- buffer_one, cancel_other, terminate_other). catch_up_window: seconds; a due
-- time missed while no Manager ran is run once if it lies this close to now.
-- run_pending: true while a run waits for the live instance to end; the
-- scheduler starts it once no live instance has the schedule's names.
-- Constant defaults: PostgreSQL adds these columns without rewriting the table.
ALTER TABLE cereal_workflow_schedules
    ADD COLUMN overlap text NOT NULL DEFAULT 'skip'
        CONSTRAINT cereal_workflow_schedules_overlap
        CHECK (overlap IN ('skip', 'buffer_one', 'cancel_other', 'terminate_other')),
    ADD COLUMN catch_up_window double precision NOT NULL DEFAULT 0
        CONSTRAINT cereal_workflow_schedules_catch_up_window CHECK (catch_up_window >= 0),
    ADD COLUMN run_pending boolean NOT NULL DEFAULT false;

-- the scheduler asks after every pass whether any run waits
CREATE INDEX cereal_workflow_schedules_waiting
    ON cereal_workflow_schedules (id) WHERE run_pending;
