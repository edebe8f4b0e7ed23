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
            "record-authorization", "confirm", "commit:mug", "commit:pot",
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
        metrics = (await suite.saga.get("/metrics")).text
        assert 'saga_circuit_state{downstream="command"} 0.0' in metrics
        assert 'saga_downstream_calls_total{downstream="command",result="success"} 7.0' in metrics
        assert 'saga_downstream_calls_total{downstream="provider",result="success"} 1.0' in metrics
        schema = await suite.saga.get("/schema/openapi.json")
        assert schema.status_code == 200
        assert {"/sagas/{order_id}", "/webhooks/payments/{provider}"} <= set(schema.json()["paths"])


async def test_a_stock_shortage_releases_what_was_reserved_and_rejects(start_suite) -> None:
    async with start_suite() as suite:
        await suite.stock("MUG", 5)
        await suite.stock("POT", 1)
        order_id = await suite.place("bob", ("MUG", 2), ("POT", 3))
        view = await suite.finished(order_id)
        assert view["outcome"] == "rejected"
        assert view["reason"] == "insufficient stock of pot"
        assert (await suite.types(stock_stream("mug")))[-2:] == ["StockReserved", "StockReservationReleased"]
        assert (await suite.types(stock_stream("pot")))[-1] == "StockReservationFailed"
        assert await suite.types(order_stream(order_id)) == ["OrderPlaced", "OrderRejected"]
        assert await suite.types(payment_stream(order_id)) == []


async def test_a_declined_payment_releases_the_stock_and_rejects(start_suite) -> None:
    async with start_suite(sandbox={"SANDBOX_DECLINE_RATE": "1"}) as suite:
        await suite.stock("MUG", 5)
        order_id = await suite.place("carol", ("MUG", 2))
        view = await suite.finished(order_id)
        assert view["outcome"] == "rejected"
        assert view["reason"].startswith("payment declined")
        assert await suite.types(payment_stream(order_id)) == ["PaymentRequested", "PaymentDeclined"]
        assert (await suite.types(stock_stream("mug")))[-1] == "StockReservationReleased"
        assert await suite.types(order_stream(order_id)) == ["OrderPlaced", "OrderRejected"]


async def test_the_payment_deadline_compensates_and_a_late_reply_is_ignored(start_suite) -> None:
    # The provider answers after 2.5 s; the saga waits 1 s.
    sandbox = {"SANDBOX_LATENCY_MS": "2500", "SANDBOX_JITTER_MS": "0"}
    async with start_suite(sandbox=sandbox, saga={"SAGA_PAYMENT_TIMEOUT": "1"}) as suite:
        await suite.stock("MUG", 5)
        order_id = await suite.place("dave", ("MUG", 1))
        view = await suite.finished(order_id)
        assert view["outcome"] == "rejected"
        assert view["reason"] == "payment not answered before its deadline"
        fired = next(event for event in view["history"] if event["type"] == "DeadlineFired")
        assert fired["data"]["at"] >= fired["data"]["due_at"]
        [deadline] = [timer for timer in view["deadlines"] if timer["kind"] == "payment"]
        assert deadline["fired_at"] is not None
        assert deadline["fired_by"] is not None
        assert await suite.types(payment_stream(order_id)) == ["PaymentRequested", "PaymentVoided"]
        # The answer comes later: recorded in the saga's history, and nothing else happens.
        view = await suite.wait_for_saga(
            order_id, lambda view: any(event["type"] == "ReplyIgnored" for event in view["history"])
        )
        assert view["outcome"] == "rejected"
        assert await suite.types(payment_stream(order_id)) == ["PaymentRequested", "PaymentVoided"]
        assert await suite.types(order_stream(order_id)) == ["OrderPlaced", "OrderRejected"]


async def test_a_cancellation_mid_flow_voids_and_releases(start_suite) -> None:
    async with start_suite(sandbox={"SANDBOX_SILENCE_RATE": "1"}) as suite:
        await suite.stock("MUG", 5)
        order_id = await suite.place("erin", ("MUG", 2))
        await suite.wait_for_saga(order_id, lambda view: "ask-provider" in [s["step"] for s in view["steps"]])
        response = await suite.cancel("erin", order_id)
        assert response.status_code == 200, response.text
        view = await suite.finished(order_id)
        assert view["outcome"] == "cancelled"
        assert await suite.types(payment_stream(order_id)) == ["PaymentRequested", "PaymentVoided"]
        assert (await suite.types(stock_stream("mug")))[-1] == "StockReservationReleased"
        assert await suite.types(order_stream(order_id)) == ["OrderPlaced", "OrderCancelled"]
        [deadline] = [timer for timer in view["deadlines"] if timer["kind"] == "payment"]
        assert deadline["cancelled_at"] is not None
        assert deadline["fired_at"] is None
