"""The rules across aggregates: each step of the flow against the order it names."""

from __future__ import annotations

from uuid import UUID

import msgspec
import pytest
from fulfilment import Conflict, DomainError, InvalidCommand
from fulfilment.orders import Order, OrderStatus
from fulfilment.payments import Payment, PaymentStatus
from fulfilment.rules import (
    check_commit,
    check_confirmation,
    check_payment_request,
    check_refund,
    check_reservation,
)
from fulfilment.stock import Settlement, StockItem

ORDER = UUID("5a0c2e7d-1b3f-4c8a-9e6d-2f1a0b9c8d71")


def order(status: OrderStatus = OrderStatus.PENDING) -> Order:
    return Order(
        order_id=ORDER,
        customer_id="alice",
        currency="EUR",
        total=2 * 1250 + 3990,
        status=status,
        lines={"mug": 2, "teapot": 1},
    )


def payment(status: PaymentStatus = PaymentStatus.AUTHORIZED, amount: int = 6490) -> Payment:
    return Payment(order_id=ORDER, amount=amount, currency="EUR", status=status, provider_reference="p-1")


def stock(sku: str, held: int | None = None, settled: Settlement | None = None) -> StockItem:
    return StockItem(
        sku=sku,
        name=sku,
        unit_price=1,
        currency="EUR",
        on_hand=10,
        reservations={ORDER: held} if held is not None else {},
        settled={ORDER: settled} if settled is not None else {},
    )


def refused(call: object, *args: object) -> DomainError:
    with pytest.raises(DomainError) as raised:
        call(*args)  # type: ignore[operator]
    return raised.value


# --- reservations ------------------------------------------------------------------------------


def test_a_reservation_of_an_ordered_line_passes() -> None:
    check_reservation(order(), ORDER, "mug", 2)


@pytest.mark.parametrize(
    ("state", "sku", "quantity", "kind", "code"),
    [
        (None, "mug", 2, InvalidCommand, "unknown-order"),
        (order(OrderStatus.CANCELLED), "mug", 2, Conflict, "order-not-pending"),
        (order(OrderStatus.REJECTED), "mug", 2, Conflict, "order-not-pending"),
        (order(), "kettle", 1, Conflict, "sku-not-in-order"),
        (order(), "mug", 3, Conflict, "reservation-quantity-mismatch"),
        (order(), "mug", 1, Conflict, "reservation-quantity-mismatch"),
    ],
)
def test_a_reservation_that_does_not_fit_its_order_is_refused(
    state: Order | None, sku: str, quantity: int, kind: type[DomainError], code: str
) -> None:
    error = refused(check_reservation, state, ORDER, sku, quantity)
    assert isinstance(error, kind)
    assert error.code == code


# --- payment requests --------------------------------------------------------------------------


def test_a_payment_of_the_order_total_passes() -> None:
    check_payment_request(order(), ORDER, 6490, "EUR")


@pytest.mark.parametrize(
    ("state", "amount", "currency", "code"),
    [
        (None, 6490, "EUR", "unknown-order"),
        (order(OrderStatus.CANCELLED), 6490, "EUR", "order-not-pending"),
        (order(), 6489, "EUR", "payment-amount-mismatch"),
        (order(), 6491, "EUR", "payment-amount-mismatch"),
        (order(), 6490, "USD", "payment-amount-mismatch"),
    ],
)
def test_a_payment_that_is_not_the_order_total_is_refused(
    state: Order | None, amount: int, currency: str, code: str
) -> None:
    assert refused(check_payment_request, state, ORDER, amount, currency).code == code


# --- commits -----------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [OrderStatus.PENDING, OrderStatus.CONFIRMED])
def test_a_paid_order_going_ahead_ships(status: OrderStatus) -> None:
    check_commit(order(status), ORDER, payment())


@pytest.mark.parametrize(
    ("state", "paid", "code"),
    [
        (None, payment(), "unknown-order"),
        (order(OrderStatus.CANCELLED), payment(), "order-not-active"),
        (order(OrderStatus.REJECTED), payment(), "order-not-active"),
        (order(), None, "order-not-paid"),
        (order(), payment(PaymentStatus.REQUESTED), "order-not-paid"),
        (order(), payment(PaymentStatus.REFUNDED), "order-not-paid"),
        (order(), payment(amount=1), "order-not-paid"),
    ],
)
def test_nothing_ships_for_an_order_that_is_over_or_unpaid(
    state: Order | None, paid: Payment | None, code: str
) -> None:
    assert refused(check_commit, state, ORDER, paid).code == code


# --- confirmation ------------------------------------------------------------------------------


def test_an_order_paid_and_reserved_or_shipped_line_by_line_is_confirmed() -> None:
    items = {"mug": stock("mug", held=2), "teapot": stock("teapot", settled=Settlement.COMMITTED)}

    check_confirmation(order(), payment(), items)


RESERVED = {"mug": stock("mug", 2), "teapot": stock("teapot", 1)}


@pytest.mark.parametrize(
    ("paid", "items", "code"),
    [
        (None, {"mug": stock("mug", 2), "teapot": stock("teapot", 1)}, "order-not-paid"),
        (
            payment(PaymentStatus.DECLINED),
            {"mug": stock("mug", 2), "teapot": stock("teapot", 1)},
            "order-not-paid",
        ),
        (payment(), {"mug": stock("mug", 2)}, "order-not-reserved"),
        (payment(), {"mug": stock("mug", 2), "teapot": stock("teapot")}, "order-not-reserved"),
        (payment(), {"mug": stock("mug", 1), "teapot": stock("teapot", 1)}, "order-not-reserved"),
        (
            payment(),
            {"mug": stock("mug", 2), "teapot": stock("teapot", settled=Settlement.RELEASED)},
            "order-not-reserved",
        ),
    ],
)
def test_an_order_is_not_confirmed_without_its_payment_and_every_reservation(
    paid: Payment | None, items: dict[str, StockItem | None], code: str
) -> None:
    error = refused(check_confirmation, order(), paid, items)
    assert isinstance(error, Conflict)
    assert error.code == code


@pytest.mark.parametrize("status", [OrderStatus.CONFIRMED, OrderStatus.CANCELLED, OrderStatus.REJECTED])
def test_an_order_that_is_not_pending_is_left_to_its_own_rules(status: OrderStatus) -> None:
    check_confirmation(order(status), None, {})


# --- refunds -----------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [OrderStatus.PENDING, OrderStatus.CANCELLED, OrderStatus.REJECTED])
@pytest.mark.parametrize("amount", [None, 6490])
def test_the_whole_payment_of_an_order_not_confirmed_is_refunded(
    status: OrderStatus, amount: int | None
) -> None:
    check_refund(order(status), payment(), amount)


@pytest.mark.parametrize(
    ("state", "amount", "kind", "code"),
    [
        (order(OrderStatus.CONFIRMED), None, Conflict, "order-confirmed"),
        (order(OrderStatus.CANCELLED), 6491, Conflict, "refund-exceeds-captured"),
        (order(OrderStatus.CANCELLED), 100, InvalidCommand, "partial-refund-unsupported"),
    ],
)
def test_a_refund_of_more_or_less_than_captured_or_of_a_confirmed_order_is_refused(
    state: Order, amount: int | None, kind: type[DomainError], code: str
) -> None:
    error = refused(check_refund, state, payment(), amount)
    assert isinstance(error, kind)
    assert error.code == code


def test_a_refund_repeated_after_it_went_through_is_left_to_the_payment() -> None:
    # The payment's own rules make a second refund decide nothing.
    check_refund(order(OrderStatus.CANCELLED), payment(PaymentStatus.REFUNDED), 6490)


def test_an_order_state_carries_the_quantity_of_each_line() -> None:
    assert msgspec.structs.asdict(order())["lines"] == {"mug": 2, "teapot": 1}
