"""The saga end to end, as processes: command service, relay, Kafka, payment sandbox, saga.

Each test places orders through the command service's HTTP API and watches the
saga's API and the event store's streams; nothing is called in-process.
"""

from __future__ import annotations

import pytest
from fulfilment import order_stream, payment_stream, stock_stream

pytestmark = pytest.mark.slow


def trace_id(traceparent: str | None) -> str:
    assert traceparent is not None
    return traceparent.split("-")[1]


async def test_happy_path_confirms_the_order_in_one_trace(start_suite) -> None:
    async with start_suite() as suite:
        await suite.stock("MUG", 5)
        await suite.stock("POT", 5)
        order_id = await suite.place("alice", ("MUG", 2), ("POT", 1))
        view = await suite.finished(order_id)
        assert view["outcome"] == "confirmed"
        assert [step["step"] for step in view["steps"]] == [
            "reserve:mug", "reserve:pot", "request-payment", "ask-provider",
            "record-authorization", "commit:mug", "commit:pot", "confirm",
        ]  # fmt: skip
        assert await suite.types(order_stream(order_id)) == ["OrderPlaced", "OrderConfirmed"]
        assert await suite.types(payment_stream(order_id)) == ["PaymentRequested", "PaymentAuthorized"]
        payment = await suite.events(payment_stream(order_id))
        assert payment[0].data.amount == 1500  # type: ignore[attr-defined]
        assert (await suite.types(stock_stream("mug")))[-2:] == ["StockReserved", "StockReservationCommitted"]
        # One trace from the request that placed the order through every command the saga sent.
        order_events = await suite.events(order_stream(order_id))
        placed_trace = trace_id(order_events[0].metadata.traceparent)
        for event in [*order_events[1:], *payment]:
            assert trace_id(event.metadata.traceparent) == placed_trace, event.event_type
        assert view["deadlines"][0]["kind"] == "payment"
        assert view["deadlines"][0]["cancelled_at"] is not None
