"""The saga's scrape-time gauges, read from a running saga process over `/metrics`."""

from __future__ import annotations

import asyncio
import re
import time
import uuid

import asyncpg
import pytest

pytestmark = pytest.mark.slow


def sample(metrics: str, name: str) -> float:
    """The value of the one sample `name` (with its labels, if any) in a Prometheus text page."""
    found = re.search(rf"^{re.escape(name)} (\S+)$", metrics, re.MULTILINE)
    assert found is not None, f"{name} not in /metrics:\n{metrics}"
    return float(found.group(1))


async def test_parked_sagas_and_an_overdue_timer_show_in_the_metrics(start_suite, tokens) -> None:
    # Commands refused with 403 park the saga (see test_recovery). The timer loop polls once an
    # hour, so a timer written as due an hour ago stays pending and overdue while we scrape.
    customer_token = tokens("saga", ["customer"])
    async with start_suite(saga={"SAGA_SERVICE_TOKEN": customer_token, "SAGA_TIMER_POLL": "3600"}) as suite:
        metrics = (await suite.saga.get("/metrics")).text
        assert sample(metrics, 'saga_sagas{status="parked"}') == 0
        assert sample(metrics, 'saga_sagas{status="stuck"}') == 0
        assert sample(metrics, "saga_timer_overdue_seconds") == 0

        await suite.stock("MUG", 5)
        order_id = await suite.place("ivy", ("MUG", 1))
        await suite.wait_for_saga(order_id, lambda view: view["parked"] is not None)
        connection = await asyncpg.connect(suite.saga_env["SAGA_DATABASE_URL"])
        try:
            await connection.execute(
                "INSERT INTO saga.timers (saga_id, kind, due_at)"
                " VALUES ($1, 'payment', now() - interval '1 hour')",
                uuid.uuid4(),
            )
        finally:
            await connection.close()

        deadline = time.monotonic() + 10
        while True:
            metrics = (await suite.saga.get("/metrics")).text
            if sample(metrics, 'saga_sagas{status="parked"}') == 1 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        assert sample(metrics, 'saga_sagas{status="parked"}') == 1
        # Parked sagas are not counted as stuck: they wait for a person on purpose.
        assert sample(metrics, 'saga_sagas{status="stuck"}') == 0
        assert 3600 <= sample(metrics, "saga_timer_overdue_seconds") < 3700
