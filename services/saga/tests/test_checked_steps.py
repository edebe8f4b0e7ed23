"""The saga's commands against the command service's checks of each step against its order.

The command service refuses a reservation, payment, commit, confirmation or
refund that does not fit the order it names (`fulfilment.rules`). These tests
drive sagas directly against the real command service (in-process, real
PostgreSQL) to show that every step the saga sends fits, that what the checks
refuse is what the saga must treat as a refusal, and that the catalogue changing
under a placed order does not stop it.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from fulfilment import order_stream, payment_stream, stock_stream
from saga_service.events import Outcome
from saga_service.orchestrator import Orchestrator
from saga_service.saga import Abort, Cancel, Phase, ReceiveReply, Saga

from services.saga.tests.conftest import World

pytestmark = pytest.mark.slow


async def start(world: World, saga: Orchestrator, order_id: uuid.UUID) -> Saga:
    """Start the order's saga and drive it until it waits for the provider."""
    await saga.record(order_id, await world.begin(order_id))
    state = (await saga.drive(order_id)).state
    assert state is not None
    assert state.phase is Phase.PAYING, state
    return state


async def authorise(saga: Orchestrator, order_id: uuid.UUID) -> Saga:
    """The provider authorises the payment; the saga is driven until it is over."""
    reply = ReceiveReply(authorized=True, provider_reference="ref-1", at=datetime.now(UTC))
    await saga.record(order_id, reply)
    state = (await saga.drive(order_id)).state
    assert state is not None
    return state


async def of_order(world: World, stream_id: str, order_id: uuid.UUID) -> list[str]:
    """The types of the events of `stream_id` (a stock item's) about order `order_id`."""
    events = await world.store.read_stream(stream_id)
    return [event.event_type for event in events if getattr(event.data, "order_id", None) == order_id]


async def types(world: World, stream_id: str) -> list[str]:
    return [event.event_type for event in await world.store.read_stream(stream_id)]


async def test_a_product_deactivated_and_repriced_after_the_order_was_placed_still_ships_at_the_placed_price(
    world: World,
) -> None:
    order_id = await world.place("lee", ("MUG", 2))  # 2 x 3.00 EUR
    await world.staff("/products/MUG/price", {"unit_price": 450, "currency": "EUR"})
    await world.staff("/products/MUG/deactivate", {"reason": "discontinued"})
    refused = await world.post(
        "/orders", world.tokens("lee"), {"lines": [{"sku": "MUG", "quantity": 1}], "currency": "EUR"}
    )
    assert (refused.status_code, refused.json()["code"]) == (409, "product-inactive")

    async with world.instance("a", payment_timeout=30) as saga:
        await start(world, saga, order_id)
        state = await authorise(saga, order_id)
    assert (state.phase, state.outcome) == (Phase.DONE, Outcome.CONFIRMED), state
    assert await types(world, order_stream(order_id)) == ["OrderPlaced", "OrderConfirmed"]
    payment = await world.store.read_stream(payment_stream(order_id))
    assert [event.event_type for event in payment] == ["PaymentRequested", "PaymentAuthorized"]
    assert (payment[0].data.amount, payment[0].data.currency) == (600, "EUR")  # type: ignore[attr-defined]
    stock = await types(world, stock_stream("mug"))
    assert stock.index("ProductDeactivated") < stock.index("StockReserved")
    assert await of_order(world, stock_stream("mug"), order_id) == [
        "StockReserved",
        "StockReservationCommitted",
    ]


async def test_a_reservation_reaching_the_command_service_after_the_cancellation_is_refused(
    world: World,
) -> None:
    # The race of a cancellation with a reservation in flight: the saga turns to compensating
    # while its reservation is still on the wire, and a second driver releases the line before
    # the reservation arrives. The release finds nothing to release; the reservation, arriving
    # last, is refused because the order is no longer pending, so nothing stays held.
    order_id = await world.place("max", ("MUG", 1))
    async with world.instance("a", payment_timeout=30) as saga:
        await saga.record(order_id, await world.begin(order_id))
        in_flight = (await saga.streams.load(order_id)).state
        assert in_flight is not None
        response = await world.post(f"/orders/{order_id}/cancel", world.tokens("max"), {"reason": "no"})
        assert response.status_code == 200, response.text
        await saga.record(order_id, Cancel(reason="no", at=datetime.now(UTC)))
        state = (await saga.drive(order_id)).state
        assert state is not None
        assert (state.phase, state.outcome) == (Phase.DONE, Outcome.CANCELLED), state
        assert list(state.done) == ["release:mug"]

        late = await saga.commands.send(in_flight, "reserve:mug")
    assert late == "refused:order-not-pending"
    assert await of_order(world, stock_stream("mug"), order_id) == []
    assert await types(world, payment_stream(order_id)) == []


async def test_a_reservation_reaching_the_command_service_after_an_abort_is_refused(world: World) -> None:
    # The same race when an operator aborts: the order is still pending when the compensation
    # starts, and the compensation rejects it before releasing, so the late reservation meets a
    # rejected order and is refused; nothing stays held.
    order_id = await world.place("ines", ("MUG", 1))
    async with world.instance("a", payment_timeout=30) as saga:
        await saga.record(order_id, await world.begin(order_id))
        in_flight = (await saga.streams.load(order_id)).state
        assert in_flight is not None
        await saga.record(order_id, Abort(actor="staff-1", reason="fraud check", at=datetime.now(UTC)))
        state = (await saga.drive(order_id)).state
        assert state is not None
        assert (state.phase, state.outcome) == (Phase.DONE, Outcome.REJECTED), state
        assert list(state.done) == ["reject", "release:mug"]

        late = await saga.commands.send(in_flight, "reserve:mug")
    assert late == "refused:order-not-pending"
    assert await of_order(world, stock_stream("mug"), order_id) == []
    assert await types(world, order_stream(order_id)) == ["OrderPlaced", "OrderRejected"]


async def test_a_refund_waits_for_the_customer_to_cancel_the_confirmed_order(world: World) -> None:
    order_id = await world.place("noor", ("MUG", 3))
    async with world.instance("a", payment_timeout=30) as saga:
        await start(world, saga, order_id)
        confirmed = await authorise(saga, order_id)
        assert confirmed.outcome is Outcome.CONFIRMED
        # A refund while the order stands (an operator's mistake, a stale driver) is refused.
        assert await saga.commands.send(confirmed, "refund-payment") == "refused:order-confirmed"

        response = await world.post(f"/orders/{order_id}/cancel", world.tokens("noor"), {"reason": "late"})
        assert response.status_code == 200, response.text
        await saga.record(order_id, Cancel(reason="late", at=datetime.now(UTC)))
        state = (await saga.drive(order_id)).state
    assert state is not None
    assert (state.phase, state.outcome) == (Phase.DONE, Outcome.CANCELLED), state
    assert state.done["refund-payment"] == "ok"
    assert await types(world, payment_stream(order_id)) == [
        "PaymentRequested",
        "PaymentAuthorized",
        "PaymentRefunded",
    ]
    # The units left the warehouse with the confirmation: nothing to release.
    assert await of_order(world, stock_stream("mug"), order_id) == [
        "StockReserved",
        "StockReservationCommitted",
    ]
