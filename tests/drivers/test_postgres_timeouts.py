"""PostgreSQL waits are bounded: a pool wait fails at ``pool_timeout`` from the URL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest

from cereal import errors
from cereal.drivers import open_driver
from cereal.models import ListWorkflowFilter


def with_query(dsn: str, **options: str) -> str:
    parts = urlsplit(dsn)
    if parts.scheme not in ("postgresql", "postgres"):
        pytest.skip("the test server's DSN is not a URL")
    query = urlencode([*parse_qsl(parts.query), *options.items()])
    return urlunsplit(parts._replace(query=query))


async def test_a_pool_wait_fails_at_the_pool_timeout_given_in_the_url(postgres_dsn: str) -> None:
    driver = open_driver(with_query(postgres_dsn, max_size="1", pool_timeout="0.5", notify="0"))
    await driver.init()
    try:
        due = datetime.now(UTC) - timedelta(minutes=1)
        await driver.create_workflow_schedule("wf", "s", None, True, "FREQ=DAILY", due)
        # Given the pool's only connection held by an open schedule completer
        _, completer = await driver.get_due_scheduled_workflow()
        try:
            # Then another operation gives up waiting for a connection
            with pytest.raises(errors.DriverError, match="list_workflow_instances failed"):
                await driver.list_workflow_instances(ListWorkflowFilter())
        finally:
            await completer.close()
        # And once the connection is back, operations work again
        assert await driver.list_workflow_instances(ListWorkflowFilter()) == []
    finally:
        await driver.close()
