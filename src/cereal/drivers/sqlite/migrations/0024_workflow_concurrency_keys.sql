-- Workflow concurrency keys: of the live runs carrying a key, at most its limit
-- are started at once; the others wait (waiting_for_key = 1) and are never
-- ready, whatever events they receive, until a started run of the key ends and
-- its finalisation starts the oldest waiting one. The sweep also starts waiting
-- runs whose key has room (a run finished by a process of an older release
-- started none). A finished run keeps its key and limit, so a requeued failed
-- run goes back under them.
ALTER TABLE cereal_workflow_instances ADD COLUMN concurrency_key TEXT;
ALTER TABLE cereal_workflow_instances ADD COLUMN concurrency_limit INTEGER;
ALTER TABLE cereal_workflow_instances ADD COLUMN waiting_for_key INTEGER NOT NULL DEFAULT 0;
ALTER TABLE cereal_workflow_results ADD COLUMN concurrency_key TEXT;
ALTER TABLE cereal_workflow_results ADD COLUMN concurrency_limit INTEGER;

-- A failed run under a key is requeued only by a release that puts it back
-- under its key (and says so in the stamp): an earlier release's requeue, which
-- would start it unkeyed, fails instead.
ALTER TABLE cereal_workflow_results ADD COLUMN requeued_under_key INTEGER;
CREATE TRIGGER cereal_workflow_results_keyed_requeue
BEFORE UPDATE OF requeued_at ON cereal_workflow_results
FOR EACH ROW
WHEN OLD.concurrency_key IS NOT NULL AND OLD.requeued_at IS NULL
     AND NEW.requeued_at IS NOT NULL AND NEW.requeued_under_key IS NOT 1
BEGIN
    SELECT RAISE(ABORT, 'a failed run under a workflow concurrency key needs a cereal release that keeps the key to requeue it');
END;

-- a key's started runs counted; its waiting runs in enqueue order (and any at all,
-- for the sweep)
CREATE INDEX cereal_workflow_instances_started_by_key
ON cereal_workflow_instances (concurrency_key)
WHERE concurrency_key IS NOT NULL AND waiting_for_key = 0;
CREATE INDEX cereal_workflow_instances_waiting_by_key
ON cereal_workflow_instances (concurrency_key, id)
WHERE waiting_for_key = 1;

-- an event makes its instance ready unless it waits for its key (every process,
-- of any release, goes through this trigger)
DROP TRIGGER cereal_workflow_events_mark_ready;
CREATE TRIGGER cereal_workflow_events_mark_ready
AFTER INSERT ON cereal_workflow_events
BEGIN
    UPDATE cereal_workflow_instances
    SET ready_seq = NEW.id
    WHERE id = NEW.instance_id AND ready_seq IS NULL AND waiting_for_key = 0;
END;
