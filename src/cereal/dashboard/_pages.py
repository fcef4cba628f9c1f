"""The read-only pages: instances, one instance, task queues, schedules, workers, dead letters.

Three carry a chart drawn on the server as inline SVG (:mod:`._charts`): the
instances page the finished runs per minute, hour or six hours
(``?window=hour|day|week``), the task queues page each name's queued and
running tasks, and an instance page its run's timeline.

Every page is served whole on a normal request and as its live fragment alone
when htmx polls it (``HX-Request`` header): the page template wraps the
fragment in an element that re-fetches the same URL every two seconds. An
instance page shows one page of its tasks and events (the newest
:data:`INSTANCE_PAGE_SIZE`, or older ones through ``?tasks_before=`` /
``?events_before=``), so a poll never re-sends a whole long history.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from cereal import errors
from cereal.checks.times import utcnow
from cereal.dashboard._charts import queue_chart, throughput_chart, timeline_chart
from cereal.dashboard._paths import names_after
from cereal.dashboard._render import Renderer
from cereal.manager import Manager
from cereal.models import key_that_started

T = TypeVar("T")

logger = logging.getLogger(__name__)

PAGE_SIZE = 50
"""Instances per page of the listing (``?limit=`` may ask for 1 to :data:`MAX_PAGE_SIZE`)."""

MAX_PAGE_SIZE = 500

INSTANCE_PAGE_SIZE = 50
"""Newest events and tasks an instance page shows; older ones are a link away (``?..._before=``)."""

DEAD_LETTER_PAGE_SIZE = 50
"""Newest dead tasks and failed runs the dead-letters page shows; older ones are a link away."""

STATUSES = {"": None, "running": True, "finished": False}
"""The status filter's choices and the ``is_running`` each stands for."""

WINDOWS = {
    "hour": (60, 60, "last hour"),
    "day": (3600, 24, "last 24 hours"),
    "week": (6 * 3600, 28, "last 7 days"),
}
"""The throughput chart's windows (``?window=``): bucket seconds, bucket count, words."""


@dataclass(frozen=True)
class Pages:
    """Handlers of the read-only pages, over one storage-only Manager."""

    manager: Manager
    render: Renderer

    async def instances(self, request: Request) -> Response:
        """Instances filtered by workflow name, instance name and status, newest first, paged."""
        query = request.query_params
        workflow = query.get("workflow", "").strip() or None
        instance = query.get("instance", "").strip() or None
        status = query.get("status", "")
        if status not in STATUSES:
            raise HTTPException(400, f"unknown status {status!r}: use running or finished")
        limit = _int_param(request, "limit", PAGE_SIZE, low=1, high=MAX_PAGE_SIZE)
        offset = _int_param(request, "offset", 0, low=0, high=None)
        try:
            # one extra row tells whether a next page exists
            found = await self.manager.list_workflow_instances(
                workflow_name=workflow,
                instance_name=instance,
                is_running=STATUSES[status],
                limit=limit + 1,
                offset=offset,
                newest_first=True,  # the runs people look for are the recent ones
            )
        except (ValueError, TypeError) as exc:
            raise HTTPException(400, str(exc)) from exc
        window = query.get("window", "hour")
        if window not in WINDOWS:
            raise HTTPException(400, f"unknown window {window!r}: use hour, day or week")
        bucket_seconds, buckets, window_text = WINDOWS[window]
        throughput = await self.manager.run_throughput(bucket_seconds, buckets)
        retention = await _optional_read(self.manager.applied_retention())
        filters = {"workflow": workflow or "", "instance": instance or "", "status": status}
        return self.render.page(
            request,
            "instances",
            title="Workflow instances",
            chart=throughput_chart(throughput, window_text=window_text),
            retention=retention,
            window=window,
            windows=list(WINDOWS),
            instances=found[:limit],
            filters=filters,
            limit=limit,
            offset=offset,
            previous_offset=max(0, offset - limit) if offset else None,
            next_offset=offset + limit if len(found) > limit else None,
        )

    async def instance(self, request: Request) -> Response:
        """One instance: parameters, payload, result or error, tasks, event history."""
        names = names_after(request, "/instances/", 2)
        if names is None:
            raise HTTPException(404, "expected /instances/WORKFLOW/INSTANCE")
        workflow, instance = names
        tasks_before = request.query_params.get("tasks_before", "").strip() or None
        events_before = _optional_int_param(request, "events_before")
        # one extra row each tells whether an older page exists
        try:
            data = (await self.manager.get_workflow_instance(workflow, instance)).data
            tasks = await self.manager.list_instance_tasks(
                workflow, instance, limit=INSTANCE_PAGE_SIZE + 1, before=tasks_before
            )
            events = await self.manager.list_instance_events(
                workflow, instance, limit=INSTANCE_PAGE_SIZE + 1, before=events_before
            )
            start_keys = await _optional_read(self.manager.list_start_keys(workflow, instance))
        except errors.WorkflowInstanceNotFoundError as exc:
            raise HTTPException(404, f"no instance {workflow}/{instance}") from exc
        except (ValueError, TypeError) as exc:
            raise HTTPException(400, str(exc)) from exc
        now = utcnow()
        page_tasks, page_events = tasks[:INSTANCE_PAGE_SIZE], events[:INSTANCE_PAGE_SIZE]
        return self.render.page(
            request,
            "instance",
            title=f"{workflow} / {instance}",
            chart=timeline_chart(data, page_events, page_tasks, now),
            data=data,
            start_key=key_that_started(start_keys or [], data.started_at),
            tasks=page_tasks,
            events=page_events,
            older_tasks=_older(tasks, INSTANCE_PAGE_SIZE, lambda task: task.task_id),
            older_events=_older(events, INSTANCE_PAGE_SIZE, lambda event: str(event.seq)),
            paging={"tasks_before": tasks_before or "", "events_before": events_before or ""},
            now=now,
        )

    async def tasks(self, request: Request) -> Response:
        """Per task name: queue depth, running count and the age of the oldest queued task."""
        queues = await self.manager.task_queue_stats()
        return self.render.page(
            request,
            "tasks",
            title="Task queues",
            chart=queue_chart(queues),
            queues=queues,
            now=utcnow(),
        )

    async def schedules(self, request: Request) -> Response:
        """Every schedule: enabled state, rule, next and last runs."""
        return self.render.page(
            request,
            "schedules",
            title="Schedules",
            schedules=await self.manager.list_workflow_schedules(),
        )

    async def dead_letters(self, request: Request) -> Response:
        """Dead tasks and failed runs, newest first, filtered by task and workflow name.

        Not live: its boxes are ticked for a requeue, which a poll would reset.
        """
        query = request.query_params
        task = query.get("task", "").strip() or None
        workflow = query.get("workflow", "").strip() or None
        tasks_before = query.get("tasks_before", "").strip() or None
        runs_before = query.get("runs_before", "").strip() or None
        try:
            # one extra row each tells whether an older page exists
            dead = await self.manager.list_dead_tasks(
                task_name=task,
                workflow_name=workflow,
                limit=DEAD_LETTER_PAGE_SIZE + 1,
                before=tasks_before,
            )
            failed = await self.manager.list_failed_runs(
                workflow_name=workflow, limit=DEAD_LETTER_PAGE_SIZE + 1, before=runs_before
            )
        except (ValueError, TypeError) as exc:
            raise HTTPException(400, str(exc)) from exc
        return self.render.page(
            request,
            "dead_letters",
            title="Dead letters",
            dead_tasks=dead[:DEAD_LETTER_PAGE_SIZE],
            failed_runs=failed[:DEAD_LETTER_PAGE_SIZE],
            older_tasks=_older(dead, DEAD_LETTER_PAGE_SIZE, lambda d: d.task_id),
            older_runs=_older(failed, DEAD_LETTER_PAGE_SIZE, lambda r: r.run_id),
            filters={"task": task or "", "workflow": workflow or ""},
        )

    async def workers(self, request: Request) -> Response:
        """The live workers: started Managers on this store, here or elsewhere."""
        workers = await self.manager.list_workers()
        return self.render.page(request, "workers", title="Workers", workers=workers, now=utcnow())


async def _optional_read(read: Awaitable[list[T]]) -> list[T] | None:
    """A read a store may not offer (a ``cereal serve`` of an earlier release): None then."""
    try:
        return await read
    except errors.DriverError:
        logger.debug("an optional read failed; the page goes without it", exc_info=True)
        return None


def _older(found: Sequence[T], size: int, cursor: Callable[[T], str]) -> str | None:
    """The cursor of the page after ``found`` (fetched one longer than ``size``), if any."""
    return cursor(found[size - 1]) if len(found) > size else None


def _optional_int_param(request: Request, name: str) -> int | None:
    if not request.query_params.get(name, "").strip():
        return None
    return _int_param(request, name, 0, low=0, high=None)


def _int_param(request: Request, name: str, default: int, *, low: int, high: int | None) -> int:
    text = request.query_params.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise HTTPException(400, f"{name} must be a whole number, got {text!r}") from None
    if value < low or (high is not None and value > high):
        bounds = f"at least {low}" if high is None else f"from {low} to {high}"
        raise HTTPException(400, f"{name} must be {bounds}, got {value}")
    return value
