from __future__ import annotations

from uuid import UUID, uuid4

import pytest
from fulfilment import Conflict, NotFound
from fulfilment.events import (
    ProductActivated,
    ProductDeactivated,
    ProductPriceChanged,
    ProductRegistered,
    StockEvent,
    StockReceived,
    StockReservationCommitted,
    StockReservationFailed,
    StockReservationReleased,
    StockReserved,
)
from fulfilment.stock import (
    ActivateProduct,
    ChangePrice,
    CommitReservation,
    DeactivateProduct,
    ReceiveStock,
    RegisterProduct,
    ReleaseReservation,
    ReserveStock,
    StockCommand,
    StockItem,
    decide,
    evolve,
)
from hypothesis import given
from hypothesis import strategies as st
from testkit.deciders import DeciderSpec

ORDER = UUID("0e0c7f0a-7d1b-4a57-8f5e-3c2b1a0f9d11")
OTHER = UUID("1f1d8a1b-8e2c-4b68-9a6f-4d3c2b1a0e22")


SPEC = DeciderSpec(decide, evolve, initial_state=None)


def given_events(*events: StockEvent) -> StockItem | None:
    return SPEC.given(*events).state


def with_stock(on_hand: int, *more: StockEvent) -> StockItem | None:
    return given_events(
        ProductRegistered(sku="sku-1", name="Widget", unit_price=500, currency="EUR"),
        StockReceived(sku="sku-1", quantity=on_hand, on_hand=on_hand),
        *more,
    )


def reserved(order_id: UUID, quantity: int, available: int) -> StockReserved:
    return StockReserved(sku="sku-1", order_id=order_id, quantity=quantity, available=available)


def test_registering_a_product_normalises_its_sku_and_records_its_price() -> None:
    command = RegisterProduct(sku="SKU-1", name="Widget", unit_price=500, currency="EUR")

    assert decide(None, command) == [
        ProductRegistered(sku="sku-1", name="Widget", unit_price=500, currency="EUR")
    ]


def test_a_product_cannot_be_registered_twice() -> None:
    with pytest.raises(Conflict):
        decide(with_stock(0), RegisterProduct(sku="sku-1", name="Again", unit_price=1, currency="EUR"))


def test_a_new_price_is_recorded_and_the_same_price_again_decides_nothing() -> None:
    item = with_stock(0)

    [changed] = decide(item, ChangePrice(sku="SKU-1", unit_price=650, currency="USD"))
    after = evolve(item, changed)

    assert changed == ProductPriceChanged(sku="sku-1", unit_price=650, currency="USD")
    assert after is not None
    assert (after.unit_price, after.currency) == (650, "USD")
    assert decide(after, ChangePrice(sku="sku-1", unit_price=650, currency="USD")) == []


def test_a_product_is_deactivated_and_activated_once_each() -> None:
    item = with_stock(0)
    assert item is not None
    assert item.for_sale

    [deactivated] = decide(item, DeactivateProduct(sku="sku-1", reason="discontinued"))
    inactive = evolve(item, deactivated)
    assert inactive is not None
    assert not inactive.for_sale
    assert decide(inactive, DeactivateProduct(sku="sku-1")) == []

    [activated] = decide(inactive, ActivateProduct(sku="sku-1"))
    active = evolve(inactive, activated)
    assert activated == ProductActivated(sku="sku-1")
    assert active is not None
    assert active.for_sale
    assert decide(active, ActivateProduct(sku="sku-1")) == []


@pytest.mark.parametrize(
    "command",
    [
        ChangePrice(sku="nope", unit_price=1, currency="EUR"),
        DeactivateProduct(sku="nope"),
        ActivateProduct(sku="nope"),
    ],
)
def test_catalogue_commands_on_an_unregistered_product_are_refused(command: StockCommand) -> None:
    with pytest.raises(NotFound) as refused:
        decide(None, command)
    assert refused.value.code == "product-not-found"


def test_a_product_registered_before_prices_is_not_for_sale_until_priced() -> None:
    unpriced = given_events(ProductRegistered(sku="old", name="Old", unit_price=None, currency=None))
    assert unpriced is not None
    assert not unpriced.for_sale

    priced = evolve(unpriced, ProductPriceChanged(sku="old", unit_price=100, currency="EUR"))
    assert priced is not None
    assert priced.for_sale


def test_a_deactivated_product_still_reserves_for_orders_placed_before() -> None:
    item = with_stock(5, ProductDeactivated(sku="sku-1"))

    assert decide(item, ReserveStock(sku="sku-1", order_id=ORDER, quantity=2)) == [
        StockReserved(sku="sku-1", order_id=ORDER, quantity=2, available=3)
    ]


def test_receiving_stock_adds_to_what_is_on_hand() -> None:
    assert decide(with_stock(3), ReceiveStock(sku="sku-1", quantity=4)) == [
        StockReceived(sku="sku-1", quantity=4, on_hand=7)
    ]


@pytest.mark.parametrize(
    "command",
    [
        ReceiveStock(sku="nope", quantity=1),
        ReserveStock(sku="nope", order_id=ORDER, quantity=1),
        ReleaseReservation(sku="nope", order_id=ORDER),
        CommitReservation(sku="nope", order_id=ORDER),
    ],
)
def test_stock_commands_for_an_unregistered_product_are_not_found(command: StockCommand) -> None:
    with pytest.raises(NotFound):
        decide(None, command)


def test_reserving_sets_units_aside() -> None:
    state = with_stock(5)

    [event] = decide(state, ReserveStock(sku="SKU-1", order_id=ORDER, quantity=2))

    assert event == reserved(ORDER, 2, available=3)
    item = evolve(state, event)
    assert item is not None
    assert (item.on_hand, item.reserved, item.available) == (5, 2, 3)


def test_reserving_more_than_available_is_recorded_as_a_failure_not_raised() -> None:
    state = with_stock(5, reserved(OTHER, 4, available=1))

    [event] = decide(state, ReserveStock(sku="sku-1", order_id=ORDER, quantity=2))

    assert event == StockReservationFailed(sku="sku-1", order_id=ORDER, requested=2, available=1)
    item = evolve(state, event)
    assert item is not None
    assert item.available == 1


def test_reserving_twice_for_one_order_decides_nothing_the_second_time() -> None:
    assert (
        decide(with_stock(5, reserved(ORDER, 2, 3)), ReserveStock(sku="sku-1", order_id=ORDER, quantity=2))
        == []
    )


def test_a_failed_reservation_stands_when_the_order_asks_again() -> None:
    state = with_stock(1, StockReservationFailed(sku="sku-1", order_id=ORDER, requested=2, available=1))

    assert decide(state, ReserveStock(sku="sku-1", order_id=ORDER, quantity=1)) == []


def test_releasing_returns_the_units() -> None:
    state = with_stock(5, reserved(ORDER, 2, 3))

    [event] = decide(state, ReleaseReservation(sku="sku-1", order_id=ORDER))

    assert event == StockReservationReleased(sku="sku-1", order_id=ORDER, quantity=2, available=5)
    item = evolve(state, event)
    assert item is not None
    assert item.available == 5


def test_releasing_what_is_not_reserved_decides_nothing() -> None:
    released = StockReservationReleased(sku="sku-1", order_id=ORDER, quantity=2, available=5)
    assert decide(with_stock(5), ReleaseReservation(sku="sku-1", order_id=ORDER)) == []
    assert (
        decide(
            with_stock(5, reserved(ORDER, 2, 3), released), ReleaseReservation(sku="sku-1", order_id=ORDER)
        )
        == []
    )


def test_committing_takes_the_units_off_hand() -> None:
    state = with_stock(5, reserved(ORDER, 2, 3))

    [event] = decide(state, CommitReservation(sku="sku-1", order_id=ORDER))

    assert event == StockReservationCommitted(sku="sku-1", order_id=ORDER, quantity=2, on_hand=3)
    item = evolve(state, event)
    assert item is not None
    assert (item.on_hand, item.reserved, item.available) == (3, 0, 3)


def test_committing_twice_decides_nothing() -> None:
    state = with_stock(
        5,
        reserved(ORDER, 2, 3),
        StockReservationCommitted(sku="sku-1", order_id=ORDER, quantity=2, on_hand=3),
    )

    assert decide(state, CommitReservation(sku="sku-1", order_id=ORDER)) == []


def test_a_committed_reservation_cannot_be_released() -> None:
    state = with_stock(
        5,
        reserved(ORDER, 2, 3),
        StockReservationCommitted(sku="sku-1", order_id=ORDER, quantity=2, on_hand=3),
    )

    with pytest.raises(Conflict) as refused:
        decide(state, ReleaseReservation(sku="sku-1", order_id=ORDER))
    assert refused.value.code == "reservation-committed"


def test_an_order_without_a_reservation_cannot_commit() -> None:
    with pytest.raises(Conflict) as refused:
        decide(with_stock(5), CommitReservation(sku="sku-1", order_id=ORDER))
    assert refused.value.code == "no-reservation"


orders = st.sampled_from([uuid4() for _ in range(4)])
stock_commands = st.one_of(
    st.builds(ReceiveStock, sku=st.just("sku-1"), quantity=st.integers(1, 5)),
    st.builds(ReserveStock, sku=st.just("sku-1"), order_id=orders, quantity=st.integers(1, 5)),
    st.builds(ReleaseReservation, sku=st.just("sku-1"), order_id=orders),
    st.builds(CommitReservation, sku=st.just("sku-1"), order_id=orders),
)


@given(st.lists(stock_commands, max_size=40))
def test_no_sequence_of_commands_reserves_more_than_is_on_hand(commands: list[StockCommand]) -> None:
    state = with_stock(3)
    for command in commands:
        try:
            events = decide(state, command)
        except Conflict:
            continue
        for event in events:
            state = evolve(state, event)
        assert state is not None
        assert 0 <= state.reserved <= state.on_hand
