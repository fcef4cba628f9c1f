-- Workflow claims move from session advisory locks to columns of the instance
-- row, so that no session state outlives a transaction (transaction-pooling
-- proxies such as PgBouncer hand each transaction to any server connection).
--   ready_at     the enqueue time of the instance's oldest pending event; NULL
--                when it has none. Every statement that adds an event sets it
--                when NULL; a decision recomputes it from the events left.
--   claim_token  the claimer's token while a callback runs; NULL when free.
--   claimed_at   the claim's last heartbeat; the claim lapses claim_expiry
--                seconds later (the claimer's own expiry, stored with it).
-- Claimable instances are found through one small partial index, whatever the
-- number of queued events, and the event walk's index goes.
--
-- Upgrade note: stop workers running older cereal before applying this; they
-- claim by advisory lock and would not see claims made here.

LOCK TABLE cereal_workflow_instances, cereal_workflow_events IN SHARE ROW EXCLUSIVE MODE;

ALTER TABLE cereal_workflow_instances
    ADD COLUMN ready_at timestamptz,
    ADD COLUMN claim_token uuid,
    ADD COLUMN claimed_at timestamptz,
    ADD COLUMN claim_expiry double precision;

UPDATE cereal_workflow_instances AS i
SET ready_at = pending.oldest
FROM (SELECT instance_id, min(enqueued_at) AS oldest
      FROM cereal_workflow_events GROUP BY instance_id) AS pending
WHERE pending.instance_id = i.id;

-- the claim path: unclaimed instances with events, per workflow name, oldest first
CREATE INDEX cereal_workflow_instances_claimable
    ON cereal_workflow_instances (workflow_name, ready_at, id)
    WHERE ready_at IS NOT NULL AND claim_token IS NULL;
-- a claimer loading what it claimed, and the sweep of lapsed claims
CREATE INDEX cereal_workflow_instances_claims
    ON cereal_workflow_instances (claim_token)
    WHERE claim_token IS NOT NULL;

DROP INDEX cereal_workflow_events_workflow;
