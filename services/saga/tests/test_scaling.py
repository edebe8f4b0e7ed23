"""Two saga processes in one consumer group, both alive: replicas that share the orders and the timers.

The group splits the order topic's partitions, so each order's events reach one
instance; the timers are rows both claim with `FOR UPDATE SKIP LOCKED`, so each
deadline fires on one. Half the provider's answers never come: those sagas wait
for their payment deadline. Every saga starts once, ends once, and its deadline,
when it fires, fires once; the domain streams show each command took effect once.
(`test_recovery.py` kills one of two instances; this is the steady state.)
"""

from __future__ import annotations

import re
import uuid

import pytest
from fulfilment import order_stream, payment_stream, stock_stream
from testkit.harness import ServiceProcess, running_service

from services.saga.tests.conftest import Suite

pytestmark = pytest.mark.slow

CONSUMED = re.compile(r'^saga_events_consumed_total\{[^}]*type="OrderPlaced"[^}]*\} ([0-9.e+]+)$', re.M)


async def orders_consumed(instance: ServiceProcess) -> float:
    """How many OrderPlaced events this instance consumed, from its metrics."""
    text = (await instance.get("/metrics")).text
    return sum(float(value) for value in CONSUMED.findall(text))


async def check_once(suite: Suite, order_id: uuid.UUID, view: dict) -> None:
    kinds = [entry["type"] for entry in view["history"]]
    assert kinds.count("SagaStarted") == 1, kinds
    assert kinds.count("SagaCompleted") == 1, kinds
    assert kinds.count("DeadlineFired") <= 1, kinds
    payment = await suite.types(payment_stream(order_id))
    mine = [
        event.event_type
        for event in await suite.events(stock_stream("mug"))
        if getattr(event.data, "order_id", None) == order_id
    ]
    if view["outcome"] == "confirmed":
        assert await suite.types(order_stream(order_id)) == ["OrderPlaced", "OrderConfirmed"]
        assert payment == ["PaymentRequested", "PaymentAuthorized"]
        assert mine == ["StockReserved", "StockReservationCommitted"]
    else:
        assert view["outcome"] == "rejected", view
        # The provider never answered: the payment deadline fired, once, and compensated.
        assert kinds.count("DeadlineFired") == 1, kinds
        assert await suite.types(order_stream(order_id)) == ["OrderPlaced", "OrderRejected"]
        assert payment == ["PaymentRequested", "PaymentVoided"]
        assert mine == ["StockReserved", "StockReservationReleased"]


async def test_two_live_instances_share_the_orders_and_complete_each_saga_and_fire_each_deadline_once(
    start_suite, tmp_path
) -> None:
    sandbox = {"SANDBOX_SILENCE_RATE": "0.5", "SANDBOX_LATENCY_MS": "100", "SANDBOX_JITTER_MS": "100"}
    async with (
        start_suite(sandbox=sandbox, saga={"SAGA_PAYMENT_TIMEOUT": "2"}) as suite,
        running_service(
            "saga_service", suite.saga_env, log=tmp_path / "saga-2.log", port_variable="SAGA_PORT"
        ) as second,
    ):
        await suite.stock("MUG", 200)
        instances = (suite.saga, second)
        orders: list[uuid.UUID] = []
        outcomes: set[str] = set()
        # Orders in rounds until both instances have had some (the second one's joining the group
        # may move partitions for a moment after it reports ready) and the sandbox, silent at
        # random, has both confirmed and let a deadline reject some.
        for _ in range(5):
            placed = [await suite.place(f"c{len(orders) + n}", ("MUG", 1)) for n in range(8)]
            orders += placed
            outcomes |= {(await suite.finished(order_id, timeout=60))["outcome"] for order_id in placed}
            both = all([await orders_consumed(instance) > 0 for instance in instances])
            if both and outcomes == {"confirmed", "rejected"}:
                break
        else:
            consumed = [await orders_consumed(instance) for instance in instances]
            raise AssertionError(f"consumed per instance: {consumed}; outcomes: {outcomes}")

        for number, order_id in enumerate(orders):
            # Either replica answers for any saga: the views are read from the shared saga database.
            view = await suite.finished(order_id, saga=instances[number % 2])
            await check_once(suite, order_id, view)
        assert sum([await orders_consumed(instance) for instance in instances]) >= len(orders)
