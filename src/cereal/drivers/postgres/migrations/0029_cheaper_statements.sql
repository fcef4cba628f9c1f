-- Two per-statement costs of the hot path, found with perf on a backend running
-- decisions (pgbench, one continue adding one task per call).
--
-- The ready rank's function was LANGUAGE sql. Every statement that inserts a task
-- builds the generated column's expression afresh, and the planner then parses the
-- function's body to try to inline it; it gives up (the body's timestamp minus
-- interval is STABLE in an IMMUTABLE function), so each row then runs the body as a
-- query of its own, parsed and planned again once per statement. In plpgsql the body
-- is compiled once per session and each row is one simple expression. Same
-- arithmetic, same results, so the stored ranks and the indexes on them stay valid.
-- A one-row task insert: 0.285 -> 0.230 ms; fifty rows in one statement: 1.19 ->
-- 1.06 ms.
--
-- The decision function's statements were planned afresh on most calls (the
-- instance lock on every one, the deletes of consumed events and results on four
-- calls in five): under the default plan cache mode a generic plan whose estimate
-- for an unknown array never beats the custom one is never kept. Their generic plans
-- are the custom ones (key look-ups through the primary keys and the run indexes),
-- so the function keeps them, as migration 0027 did for the instance claim. One
-- continue adding one task, with the instance's update and commit: 0.683 -> 0.586
-- ms a transaction. The older overloads are left as they were, for older workers.

CREATE OR REPLACE FUNCTION cereal_ready_rank(p_start_after timestamp with time zone, p_priority integer)
 RETURNS timestamp with time zone
 LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $function$
BEGIN
    RETURN p_start_after - make_interval(secs => p_priority * 60.0);
END
$function$;

ALTER FUNCTION cereal_apply_decisions(bigint[], uuid[], boolean[], bytea[], bigint[], bytea[], text[], bigint[], bigint[], integer[], text[], bytea[], timestamp with time zone[], text, text[], text[], text[], jsonb[], text[], integer[], integer[], double precision[], integer[], text[])
    SET plan_cache_mode = force_generic_plan;
