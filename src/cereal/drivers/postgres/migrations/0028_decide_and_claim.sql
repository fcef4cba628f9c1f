-- A group of decisions and, in the same transaction, the claim of an idle local
-- runner's tasks: a decision that adds tasks an idle runner of the deciding
-- process promised to take no longer commits, wakes that runner and waits for
-- its own claim statement (one round trip and one commit more before the task
-- starts). The claim is cereal_claim_ranked_tasks itself, so concurrency keys,
-- rate limits, priorities and leases are exactly a dequeue's; it runs after the
-- decisions, so it sees the tasks they added.
--
-- Lock order: the decisions lock their instance rows (id order), then any
-- workflow-key locks, then the claim takes the task-key locks of one task name
-- (lock-number order); nothing takes these the other way round, and one call
-- claims one name only, so two such calls cannot deadlock.
--
-- The claim sets synchronous_commit off for its transaction (a lost claim only
-- returns tasks to the queue); here the transaction holds decisions, which must
-- outlive a crash, so the setting found on entry is put back after the claim
-- (unless the claim recorded a rate-limited start, which sets it on, and the
-- setting found was weaker than on).
--
-- Rows: first each applied decision (claimed_id NULL), then each claimed task.
CREATE FUNCTION cereal_apply_decisions_and_claim(p_instance_ids bigint[], p_tokens uuid[], p_finishes boolean[], p_payloads bytea[], p_completed bigint[], p_results bytea[], p_errors text[], p_event_ids bigint[], p_result_ids bigint[], p_task_owners integer[], p_task_names text[], p_task_parameters bytea[], p_task_start_after timestamp with time zone[], p_note text, p_task_traceparents text[], p_error_types text[], p_error_tracebacks text[], p_task_retry_policies jsonb[], p_task_concurrency_keys text[], p_task_concurrency_limits integer[], p_task_rate_limit_starts integer[], p_task_rate_limit_seconds double precision[], p_task_priorities integer[], p_task_idempotency_keys text[], p_claim_task_name text, p_claim_max_tasks integer, p_claim_lease uuid, p_claim_expiry double precision, p_claim_retry_policy jsonb)
RETURNS TABLE (applied_instance_id bigint, applied_position bigint, started_workflow text, claimed_id bigint, claimed_lease uuid, claimed_instance_id bigint, claimed_task_name text, claimed_parameters bytea, claimed_workflow_name text, claimed_instance_name text, claimed_enqueued_at timestamp with time zone, claimed_attempt integer, claimed_traceparent text, claimed_retry_policy text, claimed_ready_rank timestamp with time zone)
LANGUAGE plpgsql
AS $function$
DECLARE
    v_synchronous text := current_setting('synchronous_commit');
BEGIN
    RETURN QUERY
        SELECT d.applied_instance_id, d.applied_position, d.started_workflow,
               NULL::bigint, NULL::uuid, NULL::bigint, NULL::text, NULL::bytea, NULL::text,
               NULL::text, NULL::timestamptz, NULL::integer, NULL::text, NULL::text,
               NULL::timestamptz
        FROM cereal_apply_decisions(
            p_instance_ids, p_tokens, p_finishes, p_payloads, p_completed, p_results,
            p_errors, p_event_ids, p_result_ids, p_task_owners, p_task_names,
            p_task_parameters, p_task_start_after, p_note, p_task_traceparents,
            p_error_types, p_error_tracebacks, p_task_retry_policies,
            p_task_concurrency_keys, p_task_concurrency_limits, p_task_rate_limit_starts,
            p_task_rate_limit_seconds, p_task_priorities, p_task_idempotency_keys) AS d;
    IF p_claim_max_tasks > 0 THEN
        RETURN QUERY
            SELECT NULL::bigint, NULL::bigint, NULL::text,
                   c.id, c.lease, c.instance_id, c.task_name, c.parameters, c.workflow_name,
                   c.instance_name, c.enqueued_at, c.attempt, c.traceparent, c.retry_policy,
                   c.ready_rank
            FROM cereal_claim_ranked_tasks(p_claim_task_name, p_claim_max_tasks, p_claim_lease,
                                           p_claim_expiry, p_claim_retry_policy) AS c;
        IF current_setting('synchronous_commit') = 'off'
           OR v_synchronous NOT IN ('off', 'local') THEN
            PERFORM set_config('synchronous_commit', v_synchronous, true);
        END IF;
    END IF;
END
$function$;
