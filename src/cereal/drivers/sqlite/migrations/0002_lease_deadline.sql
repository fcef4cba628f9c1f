-- cereal SQLite schema, version 2: each task lease and workflow claim carries its
-- holder's expiry.
--
-- A lease's deadline is lease_heartbeat_at + lease_expiry: the claimer stores
-- its own task_expiry (seconds) with the lease, every heartbeat moves
-- lease_heartbeat_at, and the sweep expires a lease only once that deadline
-- has passed, whatever expiry the sweeping process uses itself.
ALTER TABLE cereal_tasks ADD COLUMN lease_expiry REAL;

-- Leases held when this runs, and leases taken later by a process still on
-- older code, stay NULL: they are judged by the sweeper's own expiry, as
-- before this migration. Giving them a fixed expiry would declare LOST the
-- healthy tasks of a holder that heartbeats less often than that, mid-upgrade.

-- A workflow claim likewise stores its claimer's expiry: it is stale once
-- claim_heartbeat_at + claim_expiry has passed. Claims held now, and claims
-- taken by older code, stay NULL and are judged by the sweeper's expiry.
ALTER TABLE cereal_workflow_instances ADD COLUMN claim_expiry REAL;
