-- cereal SQLite schema, version 3: claimable instances are found from the
-- instance table, not by walking events.
--
-- ready_seq is the id (the sequence) of the instance's oldest pending event,
-- NULL when it has none. A claim takes the unclaimed instances with the lowest
-- ready_seq from a partial index that holds only ready, unclaimed instances,
-- so its cost does not grow with the events queued on instances claimed
-- elsewhere, nor with history. Priorities or per-key limits can later become
-- further columns of this index and conditions of the claim statement.
ALTER TABLE cereal_workflow_instances ADD COLUMN ready_seq INTEGER;

-- Live instances with pending events get their oldest event's id.
UPDATE cereal_workflow_instances
SET ready_seq = (
    SELECT min(e.id) FROM cereal_workflow_events AS e
    WHERE e.instance_id = cereal_workflow_instances.id
);

-- claim: per workflow name, the ready unclaimed instances oldest event first
CREATE INDEX cereal_workflow_instances_ready
    ON cereal_workflow_instances (workflow_name, ready_seq)
    WHERE ready_seq IS NOT NULL AND claim_token IS NULL;

-- Every event insert (enqueue, cancel, task completion, lease expiry, a
-- schedule's enqueue) marks its instance ready unless an older event already
-- did; ids only grow, so an existing ready_seq stays the oldest. A decision
-- that consumes events recomputes ready_seq itself (see continue_instance).
CREATE TRIGGER cereal_workflow_events_mark_ready
AFTER INSERT ON cereal_workflow_events
BEGIN
    UPDATE cereal_workflow_instances
    SET ready_seq = NEW.id
    WHERE id = NEW.instance_id AND ready_seq IS NULL;
END;

-- The claim no longer walks events by workflow name: that index only cost writes.
DROP INDEX cereal_workflow_events_by_name;
