"""The saga's commands against the command service's checks of each step against its order.

The command service refuses a reservation, payment, commit, confirmation or
refund that does not fit the order it names (`fulfilment.rules`). These tests
drive sagas directly against the real command service (in-process, real
PostgreSQL) to show that every step the saga sends fits, that what the checks
refuse is what the saga must treat as a refusal, and that the catalogue changing
under a placed order does not stop it.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from fulfilment import order_stream, payment_stream, stock_stream
from saga_service.events import Outcome, saga_stream
from saga_service.orchestrator import Orchestrator
from saga_service.routes import PROBLEMS
from saga_service.saga import (
    Abort,
    Cancel,
    Phase,
    ReceiveReply,
    RecordStep,
    Saga,
    SagaRefused,
    next_step,
)
from saga_service.steps import decode_result, decode_step

from services.saga.tests.conftest import World

pytestmark = pytest.mark.slow


def next_name(state: Saga | None) -> str | None:
    """The saga's next step as its events name it."""
    step = next_step(state)
    return None if step is None else step.encode()


def plan_of(state: Saga) -> tuple[str, ...]:
    return tuple(step.encode() for step in state.plan)


def done_of(state: Saga) -> dict[str, str]:
    """The steps done and their results, as their events name them."""
    return {step.encode(): result.encode() for step, result in state.done.items()}


async def send(saga: Orchestrator, state: Saga, name: str) -> str:
    """Send the step named `name` as the saga's driver would; its result as its event names it."""
    return (await saga.commands.send(state, decode_step(name))).encode()


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


async def hold_confirm(world: World, saga: Orchestrator, order_id: uuid.UUID) -> Saga:
    """Drive the saga by hand through its confirmation up to `confirm`, which is left unsent.

    The test then plays the driver that sends it: what the command service answers is not
    recorded until the test says so, as when a driver is slow to record the answer.
    """
    await start(world, saga, order_id)
    await saga.record(
        order_id, ReceiveReply(authorized=True, provider_reference="ref-1", at=datetime.now(UTC))
    )
    state = await saga.state(order_id)
    while (step := next_name(state)) != "confirm":
        assert state is not None, order_id
        assert step is not None, state  # the saga must not wait or end before its `confirm`
        result = await send(saga, state, step)
        state = (
            await saga.record(
                order_id,
                RecordStep(step=decode_step(step), result=decode_result(result), at=datetime.now(UTC)),
            )
        ).state
    assert state is not None
    assert state.phase is Phase.CONFIRMING, state
    return state


async def of_order(world: World, stream_id: str, order_id: uuid.UUID) -> list[str]:
    """The types of the events of `stream_id` (a stock item's) about order `order_id`."""
    events = await world.store.read_stream(stream_id)
    return [event.event_type for event in events if getattr(event.data, "order_id", None) == order_id]


async def types(world: World, stream_id: str) -> list[str]:
    return [event.event_type for event in await world.store.read_stream(stream_id)]


async def stock_pot(world: World) -> None:
    """A second product for orders of two lines: POT, 5.00 EUR, 100 units."""
    await world.staff("/products", {"sku": "POT", "name": "Pot", "unit_price": 500, "currency": "EUR"})
    await world.staff("/products/POT/receipts", {"quantity": 100})


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
        in_flight = await saga.state(order_id)
        assert in_flight is not None
        response = await world.post(f"/orders/{order_id}/cancel", world.tokens("max"), {"reason": "no"})
        assert response.status_code == 200, response.text
        await saga.record(order_id, Cancel(reason="no", at=datetime.now(UTC)))
        state = (await saga.drive(order_id)).state
        assert state is not None
        assert (state.phase, state.outcome) == (Phase.DONE, Outcome.CANCELLED), state
        assert list(done_of(state)) == ["release:mug"]

        late = await send(saga, in_flight, "reserve:mug")
    assert late == "refused:order-not-pending"
    assert await of_order(world, stock_stream("mug"), order_id) == []
    assert await types(world, payment_stream(order_id)) == []


async def test_a_cancellation_the_saga_first_meets_as_a_refused_reservation_ends_cancelled(
    world: World,
) -> None:
    # The customer cancels while the saga is reserving, and the saga hears of it first from the
    # command service: the reservation is refused (`order-not-pending`). The saga ends as the order
    # did, cancelled, and is not listed as failed; the cancellation event, when it comes, changes
    # nothing.
    await stock_pot(world)
    order_id = await world.place("ana", ("MUG", 1), ("POT", 1))
    async with world.instance("a", payment_timeout=30) as saga:
        await saga.record(order_id, await world.begin(order_id))
        first = await saga.state(order_id)
        assert first is not None
        result = await send(saga, first, "reserve:mug")
        await saga.record(
            order_id,
            RecordStep(step=decode_step("reserve:mug"), result=decode_result(result), at=datetime.now(UTC)),
        )
        response = await world.post(f"/orders/{order_id}/cancel", world.tokens("ana"), {"reason": "no"})
        assert response.status_code == 200, response.text
        state = (await saga.drive(order_id)).state
        assert state is not None
        assert (state.phase, state.outcome) == (Phase.DONE, Outcome.CANCELLED), state
        assert done_of(state) == {
            "reserve:mug": "reserved",
            "reserve:pot": "refused:order-not-pending",
            "release:mug": "ok",
        }
        late = await saga.record(order_id, Cancel(reason="no", at=datetime.now(UTC)))
        assert late.state == state
        failed = await saga.listing("failed")
    assert order_id not in [summary.saga_id for summary in failed]
    assert await types(world, order_stream(order_id)) == ["OrderPlaced", "OrderCancelled"]
    assert await of_order(world, stock_stream("mug"), order_id) == [
        "StockReserved",
        "StockReservationReleased",
    ]


async def test_a_reservation_reaching_the_command_service_after_an_abort_is_refused(world: World) -> None:
    # The same race when an operator aborts: the order is still pending when the compensation
    # starts, and the compensation rejects it before releasing, so the late reservation meets a
    # rejected order and is refused; nothing stays held.
    order_id = await world.place("ines", ("MUG", 1))
    async with world.instance("a", payment_timeout=30) as saga:
        await saga.record(order_id, await world.begin(order_id))
        in_flight = await saga.state(order_id)
        assert in_flight is not None
        await saga.record(order_id, Abort(actor="staff-1", reason="fraud check", at=datetime.now(UTC)))
        state = (await saga.drive(order_id)).state
        assert state is not None
        assert (state.phase, state.outcome) == (Phase.DONE, Outcome.REJECTED), state
        assert list(done_of(state)) == ["reject", "release:mug"]

        late = await send(saga, in_flight, "reserve:mug")
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
        assert await send(saga, confirmed, "refund-payment") == "refused:order-confirmed"

        response = await world.post(f"/orders/{order_id}/cancel", world.tokens("noor"), {"reason": "late"})
        assert response.status_code == 200, response.text
        await saga.record(order_id, Cancel(reason="late", at=datetime.now(UTC)))
        state = (await saga.drive(order_id)).state
    assert state is not None
    assert (state.phase, state.outcome) == (Phase.DONE, Outcome.CANCELLED), state
    assert done_of(state)["refund-payment"] == "ok"
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


async def test_an_abort_before_the_confirm_goes_out_releases_every_line_and_commits_nothing(
    world: World,
) -> None:
    # The order is confirmed before its stock is committed: an abort while confirming, before the
    # `confirm` goes out, finds every line still reserved and gives each back. Nothing shipped
    # for an order that ends rejected and refunded.
    await stock_pot(world)
    order_id = await world.place("uma", ("MUG", 2), ("POT", 1))
    async with world.instance("a", payment_timeout=30) as saga:
        in_flight = await hold_confirm(world, saga, order_id)
        assert list(done_of(in_flight))[-1] == "record-authorization"
        await saga.record(order_id, Abort(actor="staff-1", reason="fraud check", at=datetime.now(UTC)))
        state = (await saga.drive(order_id)).state
        assert state is not None
        assert (state.phase, state.outcome) == (Phase.DONE, Outcome.REJECTED), state
        assert list(done_of(state))[-4:] == ["reject", "refund-payment", "release:pot", "release:mug"]

        # The `confirm` a slow driver sends now is refused: the order is rejected.
        assert await send(saga, in_flight, "confirm") == "refused:order-not-pending"
    assert await types(world, order_stream(order_id)) == ["OrderPlaced", "OrderRejected"]
    assert await types(world, payment_stream(order_id)) == [
        "PaymentRequested",
        "PaymentAuthorized",
        "PaymentRefunded",
    ]
    for sku in ("mug", "pot"):
        assert await of_order(world, stock_stream(sku), order_id) == [
            "StockReserved",
            "StockReservationReleased",
        ], sku


async def test_an_abort_after_the_confirm_is_recorded_is_refused_and_the_stock_ships(world: World) -> None:
    order_id = await world.place("vera", ("MUG", 2))
    async with world.instance("a", payment_timeout=30) as saga:
        in_flight = await hold_confirm(world, saga, order_id)
        result = await send(saga, in_flight, "confirm")
        await saga.record(
            order_id,
            RecordStep(step=decode_step("confirm"), result=decode_result(result), at=datetime.now(UTC)),
        )

        with pytest.raises(SagaRefused) as refused:
            await saga.record(order_id, Abort(actor="staff-1", reason="fraud check", at=datetime.now(UTC)))
        # What the admin API answers, as for a saga that is over.
        answer, _headers = PROBLEMS.answer(refused.value)
        assert (answer.status, answer.code) == (409, "saga-refused")
        assert answer.detail is not None
        assert "the order is confirmed" in answer.detail
        assert [entry.event_type for entry in await saga.streams.read(order_id)][-1] == "StepCompleted"

        state = (await saga.drive(order_id)).state
    assert state is not None
    assert (state.phase, state.outcome) == (Phase.DONE, Outcome.CONFIRMED), state
    assert list(done_of(state))[-2:] == ["confirm", "commit:mug"]
    assert await types(world, order_stream(order_id)) == ["OrderPlaced", "OrderConfirmed"]
    assert await of_order(world, stock_stream("mug"), order_id) == [
        "StockReserved",
        "StockReservationCommitted",
    ]


async def test_an_abort_reaching_the_order_after_its_confirm_goes_on_with_the_commits(world: World) -> None:
    # The race of an abort with the `confirm`: the command service confirms the order, and before
    # the saga records that answer an operator aborts. The compensation's reject meets a confirmed
    # order and is refused; the saga says the abort came too late, undoes nothing of the order
    # (not rejected, nothing released, the payment captured) and commits its stock.
    order_id = await world.place("olga", ("MUG", 2))
    async with world.instance("a", payment_timeout=30) as saga:
        in_flight = await hold_confirm(world, saga, order_id)
        assert await send(saga, in_flight, "confirm") == "ok"  # accepted, not recorded

        await saga.record(order_id, Abort(actor="staff-1", reason="fraud check", at=datetime.now(UTC)))
        state = (await saga.drive(order_id)).state
        assert state is not None
        assert (state.phase, state.outcome) == (Phase.DONE, Outcome.CONFIRMED), state
        late = await saga.record(
            order_id,
            RecordStep(step=decode_step("confirm"), result=decode_result("ok"), at=datetime.now(UTC)),
        )
        assert late.events == []

        view = await saga.view(order_id)
        failed = await saga.listing("failed")
    assert (view.phase, view.outcome, view.next_step) == ("done", "confirmed", None)
    assert view.reason == (
        "aborted by staff-1: fraud check: too late, the order was confirmed first "
        "(reject refused: order-confirmed)"
    )
    history = [entry.type for entry in view.history]
    assert history[-6:] == [
        "AbortRequested",
        "CompensationStarted",
        "StepCompleted",
        "ConfirmationPrevailed",
        "StepCompleted",
        "SagaCompleted",
    ]
    assert view.history[-4].data["result"] == "refused:order-confirmed"
    assert view.history[-2].data["step"] == "commit:mug"
    assert view.plan == ["record-authorization", "confirm", "commit:mug"]
    assert [step.step for step in view.steps if step.step.startswith(("reject", "refund", "release"))] == []
    assert order_id not in {summary.saga_id for summary in failed}

    assert await types(world, order_stream(order_id)) == ["OrderPlaced", "OrderConfirmed"]
    assert await types(world, payment_stream(order_id)) == ["PaymentRequested", "PaymentAuthorized"]
    assert await of_order(world, stock_stream("mug"), order_id) == [
        "StockReserved",
        "StockReservationCommitted",
    ]


async def test_a_customer_cancelling_after_an_abort_came_too_late_is_refunded(world: World) -> None:
    # The saga that ended confirmed after a late abort is a confirmed order's saga like any other:
    # the customer's cancellation refunds the payment (its refund is not the refused one).
    order_id = await world.place("piet", ("MUG", 1))
    async with world.instance("a", payment_timeout=30) as saga:
        in_flight = await hold_confirm(world, saga, order_id)
        assert await send(saga, in_flight, "confirm") == "ok"
        await saga.record(order_id, Abort(actor="staff-1", reason="fraud check", at=datetime.now(UTC)))
        confirmed = (await saga.drive(order_id)).state
        assert confirmed is not None
        assert confirmed.outcome is Outcome.CONFIRMED, confirmed

        response = await world.post(f"/orders/{order_id}/cancel", world.tokens("piet"), {"reason": "late"})
        assert response.status_code == 200, response.text
        await saga.record(order_id, Cancel(reason="late", at=datetime.now(UTC)))
        state = (await saga.drive(order_id)).state
    assert state is not None
    assert (state.phase, state.outcome) == (Phase.DONE, Outcome.CANCELLED), state
    assert done_of(state)["refund-payment"] == "ok"
    assert await types(world, order_stream(order_id)) == ["OrderPlaced", "OrderConfirmed", "OrderCancelled"]
    assert await types(world, payment_stream(order_id)) == [
        "PaymentRequested",
        "PaymentAuthorized",
        "PaymentRefunded",
    ]
    # Shipped before the cancellation: it stays shipped.
    assert await of_order(world, stock_stream("mug"), order_id) == [
        "StockReserved",
        "StockReservationCommitted",
    ]


async def test_an_abort_reaching_the_order_before_its_confirm_rejects_it(world: World) -> None:
    # The other way round: the compensation refunds, rejects and releases before the `confirm`
    # arrives, which is then refused, and the saga ends rejected as the order is.
    order_id = await world.place("quin", ("MUG", 1))
    async with world.instance("a", payment_timeout=30) as saga:
        in_flight = await hold_confirm(world, saga, order_id)
        await saga.record(order_id, Abort(actor="staff-1", reason="fraud check", at=datetime.now(UTC)))
        state = (await saga.drive(order_id)).state
        assert state is not None
        assert (state.phase, state.outcome) == (Phase.DONE, Outcome.REJECTED), state
        assert (done_of(state)["refund-payment"], done_of(state)["reject"]) == ("ok", "ok")

        late = await send(saga, in_flight, "confirm")
    assert late == "refused:order-not-pending"
    assert await types(world, order_stream(order_id)) == ["OrderPlaced", "OrderRejected"]
    assert await types(world, payment_stream(order_id)) == [
        "PaymentRequested",
        "PaymentAuthorized",
        "PaymentRefunded",
    ]
    assert await of_order(world, stock_stream("mug"), order_id) == [
        "StockReserved",
        "StockReservationReleased",
    ]


async def test_a_cancellation_reaching_a_confirmed_order_before_the_saga_recorded_it_refunds_and_releases(
    world: World,
) -> None:
    # A customer's cancellation does not race the `confirm` like an abort: it is in the order's
    # stream before the saga hears of it, so the confirmed order is already cancelled when the
    # refund arrives, and the refund goes through. No line was committed yet: all are released.
    order_id = await world.place("ravi", ("MUG", 1))
    async with world.instance("a", payment_timeout=30) as saga:
        in_flight = await hold_confirm(world, saga, order_id)
        assert await send(saga, in_flight, "confirm") == "ok"
        response = await world.post(f"/orders/{order_id}/cancel", world.tokens("ravi"), {"reason": "no"})
        assert response.status_code == 200, response.text

        await saga.record(order_id, Cancel(reason="no", at=datetime.now(UTC)))
        state = (await saga.drive(order_id)).state
    assert state is not None
    assert (state.phase, state.outcome) == (Phase.DONE, Outcome.CANCELLED), state
    assert list(done_of(state))[-2:] == ["refund-payment", "release:mug"]
    assert (done_of(state)["refund-payment"], done_of(state)["release:mug"]) == ("ok", "ok")
    assert await types(world, order_stream(order_id)) == ["OrderPlaced", "OrderConfirmed", "OrderCancelled"]
    assert await types(world, payment_stream(order_id)) == [
        "PaymentRequested",
        "PaymentAuthorized",
        "PaymentRefunded",
    ]
    assert await of_order(world, stock_stream("mug"), order_id) == [
        "StockReserved",
        "StockReservationReleased",
    ]


async def test_a_cancellation_between_the_commits_keeps_what_shipped_and_releases_the_rest(
    world: World,
) -> None:
    # The customer cancels a confirmed order while its stock is being committed. The next commit
    # is refused (`order-not-active`) before the saga hears of the cancellation: the saga parks
    # rather than undo a confirmed order on its own, then the cancellation compensates it: the
    # payment is refunded, the line not committed released, the committed one stays shipped.
    await stock_pot(world)
    order_id = await world.place("wim", ("MUG", 1), ("POT", 2))
    async with world.instance("a", payment_timeout=30) as saga:
        state: Saga | None = await hold_confirm(world, saga, order_id)
        for name in ("confirm", "commit:mug"):
            assert state is not None
            result = await send(saga, state, name)
            assert result == "ok", (name, result)
            state = (
                await saga.record(
                    order_id,
                    RecordStep(step=decode_step(name), result=decode_result(result), at=datetime.now(UTC)),
                )
            ).state
        assert state is not None
        response = await world.post(f"/orders/{order_id}/cancel", world.tokens("wim"), {"reason": "no"})
        assert response.status_code == 200, response.text

        parked = (await saga.drive(order_id)).state
        assert parked is not None
        assert parked.parked is not None, parked
        assert (parked.phase, parked.parked.step.encode(), parked.parked.code) == (
            Phase.CONFIRMING,
            "commit:pot",
            "order-not-active",
        )
        await saga.record(order_id, Cancel(reason="no", at=datetime.now(UTC)))
        state = (await saga.drive(order_id)).state
    assert state is not None
    assert (state.phase, state.outcome, state.parked) == (Phase.DONE, Outcome.CANCELLED, None), state
    assert list(done_of(state))[-2:] == ["refund-payment", "release:pot"]
    assert await types(world, order_stream(order_id)) == ["OrderPlaced", "OrderConfirmed", "OrderCancelled"]
    assert await types(world, payment_stream(order_id)) == [
        "PaymentRequested",
        "PaymentAuthorized",
        "PaymentRefunded",
    ]
    assert await of_order(world, stock_stream("mug"), order_id) == [
        "StockReserved",
        "StockReservationCommitted",
    ]
    assert await of_order(world, stock_stream("pot"), order_id) == [
        "StockReserved",
        "StockReservationReleased",
    ]


async def test_a_confirm_and_the_reject_of_an_abort_sent_at_once_never_both_go_through(world: World) -> None:
    # An abort while the `confirm` is on the wire: its compensation's first step, the reject, goes
    # out at the same moment. Both are commands on the order's stream, so exactly one is appended,
    # and the saga ends as the order did: confirmed and paid, or rejected and refunded, never
    # confirmed with its payment refunded.
    await stock_pot(world)
    orders = [await world.place(f"race-{n}", ("MUG", 1), ("POT", 1)) for n in range(6)]
    outcomes: list[Outcome | None] = []
    async with world.instance("a", payment_timeout=30) as saga:
        for order_id in orders:
            in_flight = await hold_confirm(world, saga, order_id)
            aborted = await saga.record(
                order_id, Abort(actor="staff-1", reason="fraud check", at=datetime.now(UTC))
            )
            assert aborted.state is not None
            assert next_name(aborted.state) == "reject"
            confirm, reject = await asyncio.gather(
                send(saga, in_flight, "confirm"), send(saga, aborted.state, "reject")
            )
            assert sorted([confirm, reject]) in (
                ["ok", "refused:order-confirmed"],  # the confirm first
                ["ok", "refused:order-not-pending"],  # the reject first
            ), (confirm, reject)
            await saga.record(
                order_id,
                RecordStep(step=decode_step("reject"), result=decode_result(reject), at=datetime.now(UTC)),
            )
            state = (await saga.drive(order_id)).state
            assert state is not None
            outcomes.append(state.outcome)
            order_events = await types(world, order_stream(order_id))
            payment_events = await types(world, payment_stream(order_id))
            if confirm == "ok":
                assert state.outcome is Outcome.CONFIRMED, state
                assert order_events == ["OrderPlaced", "OrderConfirmed"]
                assert "PaymentRefunded" not in payment_events
            else:
                assert state.outcome is Outcome.REJECTED, state
                assert order_events == ["OrderPlaced", "OrderRejected"]
                assert payment_events[-1] == "PaymentRefunded"
    assert None not in outcomes


async def test_a_saga_stream_is_read_whole_once_and_its_steps_recorded_without_reading_it(
    world: World,
) -> None:
    # The saga's states stay in the store's StateCache: a step's answer is decided on the cached
    # state and appended at its version (the append proves it current), without reading the stream;
    # a drive that loads (as a timer's does) reads only what was appended since.
    order_id = await world.place("ida", ("MUG", 1))
    async with world.instance("a", payment_timeout=30) as saga:
        store = saga.streams.store
        read_stream = store.read_stream
        starts: list[int | None] = []

        async def counted(stream_id: str, from_version: int | None = 0, **options: Any) -> Any:
            if stream_id.startswith("saga-") and options.get("limit") is None:
                starts.append(from_version)
            return await read_stream(stream_id, from_version, **options)

        store.read_stream = counted  # type: ignore[method-assign]
        state = await start(world, saga, order_id)
        state = await authorise(saga, order_id)
        appended = len(await read_stream(saga_stream(order_id)))

    assert state.outcome is Outcome.CONFIRMED, state
    # Begin, then three steps to the provider, then the reply and three steps to the end: eight
    # appends or more; the stream is read whole once (Begin's load), then by the test's two drives.
    assert appended >= 8
    assert starts.count(0) == 1, starts
    assert len(starts) <= 3, starts
