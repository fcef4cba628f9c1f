"""PostgreSQL's task claim behind 200 000 tasks not yet due, on a table without statistics.

The ready index is ``(task_name, start_after, id) WHERE state = 'queued'`` and
the claim takes the earliest due first, so tasks whose ``start_after`` is
still ahead (delayed, or waiting out a retry backoff) sort after now and are
never read. ``auto_explain`` logs the plan of the claim function's statement
with buffer counts (deterministic, no timing).
"""

from __future__ import annotations

import psycopg

from tests.drivers._postgres_schema import log_every_plan, plan_nodes

DELAYED = 200_000


async def test_a_claim_reads_only_due_tasks_without_statistics(postgres_dsn: str) -> None:
    # Given 200 000 tasks due in an hour queued before one due task, no statistics
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute("ALTER TABLE cereal_tasks SET (autovacuum_enabled = false)")
        (instance_id,) = conn.execute(
            "INSERT INTO cereal_workflow_instances (workflow_name, instance_name, status)"
            " VALUES ('wf', 'i', 'running') RETURNING id"
        ).fetchone() or (None,)
        conn.execute(
            "INSERT INTO cereal_tasks (instance_id, workflow_name, instance_name, task_name,"
            " start_after) SELECT %s, 'wf', 'i', 't', now() + interval '1 hour'"
            " FROM generate_series(1, %s)",
            (instance_id, DELAYED),
        )
        conn.execute(
            "INSERT INTO cereal_tasks (instance_id, workflow_name, instance_name, task_name,"
            " parameters) VALUES (%s, 'wf', 'i', 't', 'due')",
            (instance_id,),
        )

    # When a claim runs, with every plan logged
    async with await psycopg.AsyncConnection.connect(postgres_dsn, autocommit=True) as conn:
        plans = await log_every_plan(conn)
        claimed = await conn.execute(
            "SELECT parameters FROM cereal_claim_tasks('t', 4, gen_random_uuid(), 60, NULL)"
        )
        rows = await claimed.fetchall()
        await conn.execute("RESET client_min_messages")

    # Then it claimed the due task, reading the ready index and a handful of buffers
    # (stepping over the delayed tasks would read over a thousand)
    assert rows == [(b"due",)]
    [claim] = [plan for plan in plans if "UPDATE cereal_tasks" in plan["Query Text"]]
    nodes = plan_nodes(claim["Plan"])
    assert any(node.get("Index Name") == "cereal_tasks_ready" for node in nodes), claim
    assert not any(node["Node Type"] == "Seq Scan" for node in nodes), claim
    buffers = claim["Plan"]["Shared Hit Blocks"] + claim["Plan"]["Shared Read Blocks"]
    assert buffers <= 50, buffers
