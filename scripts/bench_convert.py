#!/usr/bin/env python3
"""Time the hot path's written-out codecs against the generic walk of the same records.

Run with the project's environment:

    .venv/bin/python scripts/bench_convert.py            # 100k conversions each
    .venv/bin/python scripts/bench_convert.py --number 20000

The records a worker claims and decides many times a second (a claimed
event with its instance and task result, a new task of a decision) are
converted by functions written out in ``cereal/wire/convert.py``; the rest go
through ``RecordCodec``. This prints, for each hot record, the best of five
interleaved runs of both and their ratio: the reason those few stay written out.
"""

from __future__ import annotations

import argparse
import timeit
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any

from cereal.models import (
    NewTask,
    TaskResultData,
    TaskStatus,
    WorkflowEvent,
    WorkflowEventType,
    WorkflowInstanceData,
    WorkflowInstanceStatus,
)
from cereal.wire import convert
from cereal.wire.codec import Codec, RecordCodec
from cereal.wire.proto import cereal_v1_pb2 as pb

T0 = datetime(2026, 3, 4, 5, 6, 7, 123456, tzinfo=UTC)
RUN = WorkflowInstanceData(
    "wf", "inst-1", WorkflowInstanceStatus.RUNNING, b'{"a": 1}', b"{}", started_at=T0
)
DONE = TaskResultData("t", TaskStatus.SUCCESS, b'{"x": 1}', "", b'{"y": 2}', attempts=1)
TASK_DONE = WorkflowEvent(WorkflowEventType.TASK_COMPLETE, RUN, 1, 1, T0, DONE)
START = WorkflowEvent(WorkflowEventType.START, RUN, 0, 0, T0)
NEW = NewTask("t", b'{"x": 1}')

INSTANCE = RecordCodec(WorkflowInstanceData, pb.Instance)
EVENT = RecordCodec(
    WorkflowEvent,
    pb.Event,
    nested={"instance": INSTANCE, "task_result": RecordCodec(TaskResultData, pb.TaskResult)},
)
NEW_TASK = RecordCodec(NewTask, pb.NewTask)

Case = tuple[str, Callable[[], Any], Callable[[], Any]]


def cases() -> list[Case]:
    """(name, the written-out conversion, the generic one) of each hot record, both ways."""
    found: list[Case] = []
    hot: list[tuple[str, Codec[Any, Any], Codec[Any, Any], object]] = [
        ("event (task done)", convert.EVENT, EVENT, TASK_DONE),
        ("event (start)", convert.EVENT, EVENT, START),
        ("new task", convert.NEW_TASK, NEW_TASK, NEW),
    ]
    for name, written, generic, record in hot:
        message = written.to_pb(record)
        to_pb = (partial(written.to_pb, record), partial(generic.to_pb, record))
        from_pb = (partial(written.from_pb, message), partial(generic.from_pb, message))
        found += [(f"{name} to_pb", *to_pb), (f"{name} from_pb", *from_pb)]
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=100_000, help="conversions per timing")
    number = parser.parse_args().number
    print(f"{number} conversions, best of 5   written out    generic   ratio")
    for name, written, generic in cases():
        best_written = best_generic = float("inf")
        for _ in range(5):  # interleaved, so a busy machine slows both alike
            best_written = min(best_written, timeit.timeit(written, number=number))
            best_generic = min(best_generic, timeit.timeit(generic, number=number))
        ratio = best_generic / best_written
        print(f"{name:30s} {best_written:9.3f} s {best_generic:9.3f} s  {ratio:5.2f}")


if __name__ == "__main__":
    main()
