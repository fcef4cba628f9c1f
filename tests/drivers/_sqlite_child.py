"""A separate process for the SQLite multi-process tests: ``python -m tests.drivers._sqlite_child``.

Commands (each prints ``ready`` first, then waits for the go file if one is given):

- ``migrate DB GO``: migrate, print the JSON list of migrations applied here.
- ``claim DB TASK GO STEADY``: claim and succeed a first batch (1-5 tasks),
  print ``first``, wait for the STEADY file, then claim batches and succeed
  them until a claim comes back empty (every task was queued before GO, so
  empty means drained); print the JSON list of claimed task ids.
- ``hold DB WORKFLOW``: dequeue one workflow event, print ``claimed``, sleep forever.
- ``hold-task DB TASK``: claim one task with a 0.1 s lease expiry, print ``claimed``,
  sleep forever (never heartbeating).
- ``enqueue DB WORKFLOW INSTANCE``: enqueue one instance, print ``done``.
- ``hammer DB GO STOP``: enqueue instances back to back, print ``busy`` after the
  first 50, stop when the STOP file appears, print how many.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
import time

from cereal.drivers.sqlite import SQLiteDriver


def say(line: str) -> None:
    print(line, flush=True)


def wait_for(go: str) -> None:
    deadline = time.monotonic() + 120  # the parent waits up to 60 s for each sibling to be ready
    while not os.path.exists(go):
        if time.monotonic() > deadline:
            raise SystemExit("go file never appeared")
        time.sleep(0.002)


async def migrate(db: str, go: str) -> None:
    driver = SQLiteDriver(db)
    say("ready")
    wait_for(go)
    say(json.dumps(await driver.migrate()))


async def claim(db: str, task_name: str, go: str, steady: str) -> None:
    driver = SQLiteDriver(db, busy_timeout=10)
    await driver.init()
    say("ready")
    wait_for(go)
    claimed: list[str] = []
    first = True
    while True:
        batch = await driver.dequeue_tasks(task_name, random.randint(1, 5))
        if not batch:
            break
        for task, completer in batch:
            claimed.append(task.metadata.task_id)
            await completer.succeed(None)
        if first:
            # every process wins a batch before any drains the queue: a gate, not luck
            say("first")
            wait_for(steady)
            first = False
    await driver.close()
    say(json.dumps(claimed))


async def hold(db: str, workflow_name: str) -> None:
    driver = SQLiteDriver(db)
    await driver.init()
    say("ready")
    await driver.dequeue_workflow([workflow_name], claim_expiry=0.1)
    say("claimed")
    await asyncio.sleep(3600)


async def hold_task(db: str, task_name: str) -> None:
    driver = SQLiteDriver(db)
    await driver.init()
    say("ready")
    await driver.dequeue_task(task_name, task_expiry=0.1)
    say("claimed")
    await asyncio.sleep(3600)


async def enqueue(db: str, workflow_name: str, instance_name: str) -> None:
    driver = SQLiteDriver(db)
    await driver.init()
    say("ready")
    await driver.enqueue_workflow(workflow_name, instance_name, None)
    await driver.close()
    say("done")


async def hammer(db: str, go: str, stop: str) -> None:
    driver = SQLiteDriver(db)
    await driver.init()
    say("ready")
    wait_for(go)
    count = 0
    while not os.path.exists(stop):
        await driver.enqueue_workflow("hammer", f"{os.getpid()}-{count}", None)
        count += 1
        if count == 50:
            say("busy")
    await driver.close()
    say(str(count))


def main(argv: list[str]) -> None:
    command, *args = argv
    commands = {
        "migrate": migrate,
        "claim": claim,
        "hold": hold,
        "hold-task": hold_task,
        "enqueue": enqueue,
        "hammer": hammer,
    }
    asyncio.run(commands[command](*args))


if __name__ == "__main__":
    main(sys.argv[1:])
