from __future__ import annotations

from collections.abc import Iterable
from uuid import UUID, uuid4

import msgspec
import pytest
from fulfilment import Conflict, InvalidCommand, NotFound
from fulfilment.events import (
    OrderCancelled,
    OrderConfirmed,
    OrderEvent,
    OrderPlaced,
    OrderRejected,
    PlacedLine,
)
from fulfilment.orders import (
    CancelOrder,
    ConfirmOrder,
    Order,
    OrderLine,
    OrderStatus,
    PlaceOrder,
    RejectOrder,
    authorize,
    decide,
    evolve,
)
from fulfilment.stock import StockItem
from hypothesis import given
from hypothesis import strategies as st
from testkit.deciders import DeciderSpec

ORDER = UUID("6b1e8a43-3a55-4c5b-9d4f-0a3f2b1c9e01")
ALICE = "alice"


SPEC = DeciderSpec(decide, evolve, initial_state=None)


def given_events(*events: OrderEvent) -> Order | None:
    return SPEC.given(*events).state


def placed(order_id: UUID = ORDER, customer: str = ALICE) -> OrderPlaced:
    line = PlacedLine(sku="sku-1", quantity=2, unit_price=150, line_total=300)
    return OrderPlaced(order_id=order_id, customer_id=customer, lines=(line,), currency="EUR", total=300)


def product(
    sku: str, unit_price: int | None = 100, currency: str | None = "EUR", active: bool = True
) -> StockItem:
    return StockItem(sku=sku, name=sku.title(), unit_price=unit_price, currency=currency, active=active)


CATALOGUE = {
    "sku-1": product("sku-1", 150),
    "b": product("b", 5),
    "a": product("a", 1),
    "abc": product("abc"),
}


def place(
    lines: Iterable[OrderLine], customer: str = ALICE, catalogue: dict[str, StockItem] = CATALOGUE
) -> PlaceOrder:
    return PlaceOrder(
        order_id=ORDER, customer_id=customer, lines=tuple(lines), currency="EUR", catalogue=catalogue
    )


def test_placing_an_order_takes_the_catalogue_prices_and_computes_the_totals() -> None:
    command = place([OrderLine(sku="SKU-1", quantity=2), OrderLine(sku="b", quantity=3)])

    [event] = decide(None, command)

    assert isinstance(event, OrderPlaced)
    assert [(line.unit_price, line.line_total) for line in event.lines] == [(150, 300), (5, 15)]
    assert event.total == 315
    assert event.lines[0].sku == "sku-1"


def test_a_price_or_total_in_the_request_is_not_part_of_the_command() -> None:
    body = b'{"order_id":"%s","customer_id":"a","currency":"EUR",' % str(ORDER).encode()
    body += b'"lines":[{"sku":"a","quantity":1,"unit_price":7}]}'

    with pytest.raises(msgspec.ValidationError, match="unit_price"):
        msgspec.json.decode(body, type=PlaceOrder)


@pytest.mark.parametrize(
    ("catalogue", "kind", "code"),
    [
        ({}, InvalidCommand, "unknown-product"),
        ({"a": product("a", active=False)}, Conflict, "product-inactive"),
        ({"a": product("a", unit_price=None, currency=None)}, Conflict, "product-not-priced"),
        ({"a": product("a", currency="USD")}, Conflict, "product-currency-mismatch"),
    ],
)
def test_a_product_that_is_not_for_sale_in_the_order_currency_is_refused(
    catalogue: dict[str, StockItem], kind: type[Exception], code: str
) -> None:
    with pytest.raises(kind) as refused:
        decide(None, place([OrderLine(sku="A", quantity=1)], catalogue=catalogue))
    assert getattr(refused.value, "code", None) == code


def test_an_order_cannot_be_placed_twice() -> None:
    with pytest.raises(Conflict) as refused:
        decide(given_events(placed()), place([OrderLine(sku="a", quantity=1)]))
    assert refused.value.code == "order-already-placed"


def test_an_order_needs_at_least_one_line() -> None:
    with pytest.raises(InvalidCommand):
        decide(None, place([]))


def test_errors_for_the_same_sku_on_two_lines_whatever_its_case() -> None:
    lines = [OrderLine(sku="ABC", quantity=1), OrderLine(sku="abc", quantity=2)]

    with pytest.raises(InvalidCommand) as refused:
        decide(None, place(lines))
    assert refused.value.code == "duplicate-order-line"


def test_a_pending_order_can_be_confirmed() -> None:
    assert decide(given_events(placed()), ConfirmOrder(order_id=ORDER)) == [OrderConfirmed(order_id=ORDER)]


def test_confirming_a_confirmed_order_decides_nothing() -> None:
    state = given_events(placed(), OrderConfirmed(order_id=ORDER))

    assert decide(state, ConfirmOrder(order_id=ORDER)) == []


def test_a_cancelled_order_cannot_be_confirmed() -> None:
    state = given_events(placed(), OrderCancelled(order_id=ORDER, cancelled_by=ALICE))

    with pytest.raises(Conflict) as refused:
        decide(state, ConfirmOrder(order_id=ORDER))
    assert refused.value.code == "order-not-pending"


def test_a_confirmed_order_cannot_be_rejected_and_the_refusal_says_it_is_confirmed() -> None:
    with pytest.raises(Conflict) as refused:
        decide(
            given_events(placed(), OrderConfirmed(order_id=ORDER)), RejectOrder(order_id=ORDER, reason="x")
        )
    assert refused.value.code == "order-confirmed"


def test_a_cancelled_order_cannot_be_rejected() -> None:
    state = given_events(placed(), OrderCancelled(order_id=ORDER, cancelled_by=ALICE))

    with pytest.raises(Conflict) as refused:
        decide(state, RejectOrder(order_id=ORDER, reason="x"))
    assert refused.value.code == "order-not-pending"


def test_a_pending_order_can_be_rejected_with_a_reason() -> None:
    [event] = decide(given_events(placed()), RejectOrder(order_id=ORDER, reason="out of stock"))

    assert event == OrderRejected(order_id=ORDER, reason="out of stock")


def test_commands_on_an_order_never_placed_are_not_found() -> None:
    for command in (
        ConfirmOrder(order_id=ORDER),
        RejectOrder(order_id=ORDER, reason="x"),
        CancelOrder(order_id=ORDER, customer_id=ALICE),
    ):
        with pytest.raises(NotFound):
            decide(None, command)


@pytest.mark.parametrize("status_event", [None, OrderConfirmed(order_id=ORDER)])
def test_the_customer_can_cancel_a_pending_or_confirmed_order(status_event: OrderEvent | None) -> None:
    state = given_events(placed(), *([status_event] if status_event else []))

    [event] = decide(state, CancelOrder(order_id=ORDER, customer_id=ALICE, reason="changed my mind"))

    assert event == OrderCancelled(order_id=ORDER, cancelled_by=ALICE, reason="changed my mind")
    after = evolve(state, event)
    assert after is not None
    assert after.status is OrderStatus.CANCELLED


def test_someone_elses_order_is_not_found_when_cancelling() -> None:
    with pytest.raises(NotFound) as refused:
        decide(given_events(placed()), CancelOrder(order_id=ORDER, customer_id="mallory"))
    assert refused.value.code == "order-not-found"


def test_access_to_someone_elses_order_is_refused_as_if_it_did_not_exist() -> None:
    with pytest.raises(NotFound) as stranger:
        authorize(given_events(placed()), CancelOrder(order_id=ORDER, customer_id="mallory"))
    with pytest.raises(NotFound) as missing:
        authorize(None, CancelOrder(order_id=ORDER, customer_id="mallory"))

    assert str(stranger.value) == str(missing.value)
    authorize(given_events(placed()), CancelOrder(order_id=ORDER, customer_id=ALICE))


def test_a_rejected_order_cannot_be_cancelled() -> None:
    state = given_events(placed(), OrderRejected(order_id=ORDER, reason="no stock"))

    with pytest.raises(Conflict) as refused:
        decide(state, CancelOrder(order_id=ORDER, customer_id=ALICE))
    assert refused.value.code == "order-not-cancellable"


def test_cancelling_a_cancelled_order_decides_nothing() -> None:
    state = given_events(placed(), OrderCancelled(order_id=ORDER, cancelled_by=ALICE))

    assert decide(state, CancelOrder(order_id=ORDER, customer_id=ALICE)) == []


def test_an_order_event_before_the_order_was_placed_is_a_corrupt_stream() -> None:
    with pytest.raises(ValueError, match="before OrderPlaced"):
        evolve(None, OrderConfirmed(order_id=ORDER))


lines_strategy = st.lists(
    st.tuples(
        st.from_regex(r"[a-z][a-z0-9]{0,8}", fullmatch=True),
        st.integers(1, 100_000),
        st.integers(1, 100_000_000),
    ),
    min_size=1,
    max_size=100,
    unique_by=lambda line: line[0],
)


@given(lines_strategy)
def test_the_total_is_the_sum_of_quantity_times_the_catalogue_price(
    lines: list[tuple[str, int, int]],
) -> None:
    catalogue = {sku: product(sku, price) for sku, _, price in lines}
    command = PlaceOrder(
        order_id=uuid4(),
        customer_id=ALICE,
        lines=tuple(OrderLine(sku=sku, quantity=quantity) for sku, quantity, _ in lines),
        currency="EUR",
        catalogue=catalogue,
    )

    [event] = decide(None, command)

    assert isinstance(event, OrderPlaced)
    assert event.total == sum(quantity * price for _, quantity, price in lines)
    assert event.total < 2**53
