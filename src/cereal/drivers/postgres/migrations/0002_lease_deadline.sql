-- cereal PostgreSQL schema, version 2: each task lease carries its holder's expiry.
--
-- A lease's deadline is heartbeat_at + lease_expiry seconds: the claimer stores
-- its own task_expiry with the lease, every heartbeat moves heartbeat_at, and
-- the sweep expires a lease only once that deadline has passed by the
-- database's now(), whatever expiry the sweeping process uses itself.
-- Adding a nullable column without a default rewrites nothing.
ALTER TABLE cereal_tasks ADD COLUMN lease_expiry double precision;

-- Leases held when this runs, and leases taken later by a process still on
-- older code, stay NULL: they are judged by the sweeper's own expiry, as
-- before this migration. Giving them a fixed expiry would declare LOST the
-- healthy tasks of a holder that heartbeats less often than that, mid-upgrade.
