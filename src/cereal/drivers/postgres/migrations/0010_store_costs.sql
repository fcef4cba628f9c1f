-- History trimming keyed by run. Migration 0009's statement trigger found the
-- history to drop by ranking every finished run of each trimmed name pair and
-- joining back on the pair alone: a schedule reuses one pair for every run, and
-- on tables without statistics the planner chose a nested loop that compared
-- each trimmed run with the pair's whole history (2 001 runs of an 11 001-run
-- schedule: 16 s). A finished run now records its instance's id (instance_id),
-- and the trigger deletes the history of exactly the deleted runs by
-- (workflow_name, instance_name, instance_id), the history index's prefix; its
-- cost follows the runs deleted, never the pair's history. The sweep deletes
-- runs in batches, one transaction each (_maintenance.py).
--
-- Existing runs get their id by the rule the old trigger kept: per pair, the
-- newest finished runs with history match the newest results, one to one (runs
-- of one pair are sequential; instance ids and result ids both grow). A result
-- left unmatched (stored before 0009) has no history: NULL. History no result
-- matches (none is expected) is dropped, as the old trigger's next trim would.
--
-- cereal_apply_decisions is that of migration 0008 with instance_id written
-- (same signature, replaced in place); kill_instance (queries.sql) writes it too.

ALTER TABLE cereal_workflow_results ADD COLUMN instance_id bigint;

-- One row per pair on each side (arrays, newest first), unnested side by side:
-- a join of the ranked rows on (pair, rank) was planned as a join on the pair
-- alone, comparing every run of a pair with every other.
UPDATE cereal_workflow_results AS r
SET instance_id = links.instance_id
FROM (
    SELECT results.workflow_name, results.instance_name,
           array_agg(results.id ORDER BY results.id DESC) AS result_ids
    FROM cereal_workflow_results AS results
    GROUP BY results.workflow_name, results.instance_name
) AS kept
JOIN (
    SELECT runs.workflow_name, runs.instance_name,
           array_agg(runs.instance_id ORDER BY runs.instance_id DESC) AS instance_ids
    FROM (
        SELECT DISTINCT h.workflow_name, h.instance_name, h.instance_id
        FROM cereal_event_history AS h
        WHERE NOT EXISTS (
            SELECT 1 FROM cereal_workflow_instances AS i WHERE i.id = h.instance_id)
    ) AS runs
    GROUP BY runs.workflow_name, runs.instance_name
) AS finished
  ON finished.workflow_name = kept.workflow_name
 AND finished.instance_name = kept.instance_name
CROSS JOIN LATERAL unnest(kept.result_ids, finished.instance_ids)
    AS links(result_id, instance_id)
WHERE r.id = links.result_id AND links.instance_id IS NOT NULL;

-- (instance ids are unique across pairs; NOT IN runs as one hashed set)
DELETE FROM cereal_event_history AS h
WHERE NOT EXISTS (SELECT 1 FROM cereal_workflow_instances AS i WHERE i.id = h.instance_id)
  AND h.instance_id NOT IN (
      SELECT r.instance_id FROM cereal_workflow_results AS r
      WHERE r.instance_id IS NOT NULL);

-- One DELETE per trimmed run, by equality on the history index's first three
-- columns: served from the index with or without statistics. (A join with the
-- transition table can be planned as a sort of the whole history; a list of ids
-- per pair as a filter over the pair's whole history.)
CREATE OR REPLACE FUNCTION cereal_trim_event_history() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_run record;
BEGIN
    FOR v_run IN
        SELECT t.workflow_name, t.instance_name, t.instance_id
        FROM cereal_trimmed_runs AS t
        WHERE t.instance_id IS NOT NULL
    LOOP
        DELETE FROM cereal_event_history AS h
        WHERE h.workflow_name = v_run.workflow_name
          AND h.instance_name = v_run.instance_name
          AND h.instance_id = v_run.instance_id;
    END LOOP;
    RETURN NULL;
END
$$;

-- As in migration 0008, and a finished run records its instance id.
CREATE OR REPLACE FUNCTION cereal_apply_decisions(
    p_instance_ids bigint[], p_tokens uuid[], p_finishes boolean[], p_payloads bytea[],
    p_completed bigint[], p_results bytea[], p_errors text[],
    p_event_ids bigint[], p_result_ids bigint[],
    p_task_owners integer[], p_task_names text[], p_task_parameters bytea[],
    p_task_start_after timestamptz[], p_note text, p_task_traceparents text[],
    p_error_types text[], p_error_tracebacks text[], p_task_retry_policies jsonb[]
) RETURNS SETOF bigint LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_continued bigint[];
    v_finished bigint[];
BEGIN
    PERFORM 1 FROM cereal_workflow_instances
    WHERE id = ANY(p_instance_ids)
    ORDER BY id
    FOR UPDATE;

    WITH decided AS (
        SELECT d.instance_id, d.token, d.payload, d.completed, d.position
        FROM unnest(p_instance_ids, p_tokens, p_finishes, p_payloads, p_completed)
             WITH ORDINALITY AS d(instance_id, token, finish, payload, completed, position)
        WHERE NOT d.finish
    ), added AS (
        SELECT t.owner, count(*) AS n
        FROM unnest(p_task_owners) AS t(owner)
        GROUP BY t.owner
    ), updated AS (
        UPDATE cereal_workflow_instances AS i
        SET payload = decided.payload,
            status = 'running',
            enqueued_tasks = i.enqueued_tasks + coalesce(added.n, 0),
            completed_tasks = decided.completed,
            updated_at = now(),
            ready_at = (SELECT min(e.enqueued_at) FROM cereal_workflow_events AS e
                        WHERE e.instance_id = i.id AND e.id <> ALL(p_event_ids)),
            claim_token = NULL, claimed_at = NULL, claim_expiry = NULL
        FROM decided
        LEFT JOIN added ON added.owner = decided.position
        WHERE i.id = decided.instance_id AND i.claim_token = decided.token
        RETURNING i.id
    )
    SELECT coalesce(array_agg(id), '{}') INTO v_continued FROM updated;

    DELETE FROM cereal_workflow_events
    WHERE id = ANY(p_event_ids) AND instance_id = ANY(v_continued);
    DELETE FROM cereal_task_results
    WHERE id = ANY(p_result_ids) AND instance_id = ANY(v_continued);

    INSERT INTO cereal_tasks
        (instance_id, workflow_name, instance_name, task_name, parameters, start_after,
         traceparent, retry_policy)
    SELECT i.id, i.workflow_name, i.instance_name, t.task_name, t.parameters,
           coalesce(t.start_after, now()), t.traceparent, t.retry_policy
    FROM unnest(p_task_owners, p_task_names, p_task_parameters, p_task_start_after,
                p_task_traceparents, p_task_retry_policies)
             WITH ORDINALITY AS t(owner, task_name, parameters, start_after, traceparent,
                                  retry_policy, position)
    JOIN cereal_workflow_instances AS i ON i.id = p_instance_ids[t.owner]
    WHERE i.id = ANY(v_continued)
    ORDER BY t.position;

    WITH finishing AS (
        SELECT d.instance_id, d.token, d.result, d.error, d.error_type, d.error_traceback
        FROM unnest(p_instance_ids, p_tokens, p_finishes, p_results, p_errors,
                    p_error_types, p_error_tracebacks)
             AS d(instance_id, token, finish, result, error, error_type, error_traceback)
        WHERE d.finish
    ), gone AS (
        DELETE FROM cereal_workflow_instances AS i
        USING finishing
        WHERE i.id = finishing.instance_id AND i.claim_token = finishing.token
        RETURNING i.id, i.workflow_name, i.instance_name, i.parameters, i.started_at,
                  finishing.result, finishing.error, finishing.error_type,
                  finishing.error_traceback
    ), history AS (
        INSERT INTO cereal_workflow_results
            (workflow_name, instance_name, parameters, result, error, started_at, ended_at,
             error_type, error_traceback, instance_id)
        SELECT workflow_name, instance_name, parameters, result, error, started_at,
               clock_timestamp(), error_type, error_traceback, id
        FROM gone
        ORDER BY id
    )
    SELECT coalesce(array_agg(id), '{}') INTO v_finished FROM gone;

    IF p_note IS NOT NULL AND cardinality(v_continued) > 0 THEN
        PERFORM pg_notify('cereal_wakeup', p_note);
    END IF;
    RETURN QUERY SELECT unnest(v_continued || v_finished);
END
$$;
