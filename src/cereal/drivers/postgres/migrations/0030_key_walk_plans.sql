-- The walk over a task name's concurrency keys (cereal_keys_after, migration 0019),
-- run by every claim of a name that has keyed tasks, in plpgsql. As LANGUAGE sql,
-- called in a target list, it was planned afresh on every call (pg_stat_statements
-- over the keyed drain: 2 362 plans in 2 362 calls, 0.2 ms each). In plpgsql each
-- branch's plan is kept for the session. The walk from the start and the walk after
-- a cursor are two statements, so that neither plan carries the other's condition
-- (one plan for both would test "no cursor, or after it" on every index entry
-- rather than start the scan at the cursor). Same keys, same order.

CREATE OR REPLACE FUNCTION cereal_keys_after(p_task_name text, p_after text, p_count integer)
 RETURNS SETOF text
 LANGUAGE plpgsql
 STABLE
AS $function$
BEGIN
    IF p_after IS NULL THEN
        RETURN QUERY
            WITH RECURSIVE walk(k) AS (
                (SELECT q.concurrency_key FROM cereal_tasks AS q
                 WHERE q.task_name = p_task_name AND q.state = 'queued'
                   AND q.concurrency_key IS NOT NULL
                 ORDER BY q.concurrency_key LIMIT 1)
                UNION ALL
                SELECT (SELECT q.concurrency_key FROM cereal_tasks AS q
                        WHERE q.task_name = p_task_name AND q.state = 'queued'
                          AND q.concurrency_key > walk.k
                        ORDER BY q.concurrency_key LIMIT 1)
                FROM walk WHERE walk.k IS NOT NULL
            )
            SELECT walk.k FROM walk WHERE walk.k IS NOT NULL LIMIT p_count;
    ELSE
        RETURN QUERY
            WITH RECURSIVE walk(k) AS (
                (SELECT q.concurrency_key FROM cereal_tasks AS q
                 WHERE q.task_name = p_task_name AND q.state = 'queued'
                   AND q.concurrency_key > p_after
                 ORDER BY q.concurrency_key LIMIT 1)
                UNION ALL
                SELECT (SELECT q.concurrency_key FROM cereal_tasks AS q
                        WHERE q.task_name = p_task_name AND q.state = 'queued'
                          AND q.concurrency_key > walk.k
                        ORDER BY q.concurrency_key LIMIT 1)
                FROM walk WHERE walk.k IS NOT NULL
            )
            SELECT walk.k FROM walk WHERE walk.k IS NOT NULL LIMIT p_count;
    END IF;
END
$function$;
