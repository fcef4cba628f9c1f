"""Domains: the same names in two domains never meet; malformed domains are refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import grpc
from cereal import errors
from cereal.drivers import open_driver
from cereal.drivers.grpc import GrpcDriver
from cereal.models import ListWorkflowFilter, NewTask, TaskStatus
from cereal.wire.proto import cereal_v1_pb2 as pb
from cereal.wire.proto import cereal_v1_pb2_grpc as pb_grpc

WF, INST, TASK = "wf", "inst", "work"


async def test_same_names_in_two_domains_never_meet(
    served_url: str, grpc_server_factory: Any, open_client: Any
) -> None:
    server = grpc_server_factory(served_url, maintenance=False)
    alpha = await open_client(server.url(domain="alpha"))
    beta = await open_client(server.url(domain="beta"))

    # the same instance, schedule and task names in both domains
    await alpha.enqueue_workflow(WF, INST, b'"a"')
    await beta.enqueue_workflow(WF, INST, b'"b"')
    due = datetime.now(UTC) + timedelta(hours=1)
    await alpha.create_workflow_schedule(WF, INST, b'"a"', True, "FREQ=DAILY", due)
    await beta.create_workflow_schedule(WF, INST, b'"b"', True, "FREQ=DAILY", due)

    assert (await alpha.get_workflow_instance(WF, INST)).parameters == b'"a"'
    assert (await beta.get_workflow_instance(WF, INST)).parameters == b'"b"'
    assert [s.parameters for s in await alpha.list_workflow_schedules()] == [b'"a"']
    assert [s.parameters for s in await beta.list_workflow_schedules()] == [b'"b"']

    # alpha's step enqueues a task: beta sees no task of that name
    [(events, completer)] = await alpha.claim_workflows([WF])
    assert events[0].instance.parameters == b'"a"'
    await completer.continue_(b"1", [NewTask(TASK, b'"t"')])
    await completer.close()
    assert await beta.dequeue_tasks(TASK, 10) == []
    [(task, lease)] = await alpha.dequeue_tasks(TASK, 10)
    assert task.parameters == b'"t"'
    await lease.succeed(b'"done"')

    # alpha finishes: beta's instance of the same names still runs, its history is its own
    [(events, completer)] = await alpha.claim_workflows([WF])
    assert events[0].task_result is not None
    assert events[0].task_result.status is TaskStatus.SUCCESS
    await completer.done(b'"alpha result"')
    await completer.close()
    finished = await alpha.get_workflow_instance(WF, INST)
    assert not finished.is_running() and finished.result == b'"alpha result"'
    assert (await beta.get_workflow_instance(WF, INST)).is_running()
    assert [i.is_running() for i in await beta.list_workflow_instances(ListWorkflowFilter())] == [
        True
    ]

    # deleting in one domain leaves the other's schedule
    await alpha.delete_workflow_schedule(WF, INST)
    assert len(await beta.list_workflow_schedules()) == 1
    with pytest.raises(errors.WorkflowScheduleNotFoundError):
        await alpha.get_workflow_schedule(WF, INST)


async def test_default_domain_is_named_default(
    served_url: str, grpc_server_factory: Any, open_client: Any
) -> None:
    server = grpc_server_factory(served_url, maintenance=False)
    unnamed = await open_client(server.url())
    named = await open_client(server.url(domain="default"))
    await unnamed.enqueue_workflow(WF, INST, None)
    assert (await named.get_workflow_instance(WF, INST)).instance_name == INST


@pytest.mark.parametrize("domain", ["", "a/b", "../up", ".hidden", "x" * 49, "sp ace", "é"])
def test_a_malformed_domain_is_refused_by_the_client(domain: str) -> None:
    with pytest.raises(ValueError, match="domain"):
        GrpcDriver("127.0.0.1:1", domain=domain)


def test_open_driver_refuses_unknown_options() -> None:
    with pytest.raises(ValueError, match="unknown option 'colour'"):
        open_driver("grpc://127.0.0.1:1?colour=red")


def test_a_malformed_domain_is_refused_by_the_server(
    tmp_path: Any, grpc_server_factory: Any
) -> None:
    server = grpc_server_factory(f"sqlite:///{tmp_path / 'served.db'}", maintenance=False)
    with grpc.insecure_channel(server.target) as channel:
        stub = pb_grpc.CerealStub(channel)
        with pytest.raises(grpc.RpcError) as refused:
            stub.GetWorkflowInstance(
                pb.InstanceKey(workflow_name=WF, instance_name=INST),
                metadata=(("cereal-domain", "../etc"),),
            )
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "malformed domain '../etc'" in refused.value.details()
    # and nothing was created for it
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".db") == ["served.db"]


async def test_each_postgres_domain_is_a_schema_of_its_own(
    postgres_dsn: str, grpc_server_factory: Any, open_client: Any
) -> None:
    import psycopg

    server = grpc_server_factory(postgres_dsn, maintenance=False)
    alpha = await open_client(server.url(domain="alpha"))
    await alpha.enqueue_workflow(WF, INST, None)
    with psycopg.connect(postgres_dsn) as conn:
        rows = conn.execute(
            "SELECT table_schema, count(*) FROM information_schema.tables"
            " WHERE table_name = 'cereal_workflow_instances' GROUP BY table_schema ORDER BY 1"
        ).fetchall()
        in_alpha = conn.execute(
            'SELECT count(*) FROM "cereal_alpha".cereal_workflow_instances'
        ).fetchone()
        in_default = conn.execute(
            "SELECT count(*) FROM public.cereal_workflow_instances"
        ).fetchone()
    assert [schema for schema, _ in rows] == ["cereal_alpha", "public"]
    assert (in_alpha, in_default) == ((1,), (0,))
