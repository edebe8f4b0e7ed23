"""Business rules over HTTP: catalogue prices, and each step of the flow checked against its order."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from testkit.harness import TokenFactory as Tokens

from services.command.tests.conftest import pay_and_reserve, place_order
from services.command.tests.support import ORDER_BODY, StoreReader
from services.command.tests.support import command_headers as headers


@pytest.fixture
def staff(tokens: Tokens) -> Callable[[], dict[str, str]]:
    """Headers of a staff member's request, each time with a new Idempotency-Key."""
    return lambda: headers(tokens("clerk", roles=["staff"]))


def saga(tokens: Tokens, key: str | None = None) -> dict[str, str]:
    return headers(tokens("saga", roles=["service"]), key)


def refusal(response: httpx.Response) -> tuple[int, str]:
    assert response.headers["content-type"] == "application/problem+json", response.text
    return response.status_code, response.json()["code"]


# --- the catalogue -----------------------------------------------------------------------------


async def test_an_order_pays_the_catalogue_price_whatever_the_customer_would_like(
    client: httpx.AsyncClient, tokens: Tokens, reader: StoreReader
) -> None:
    priced = {"lines": [{"sku": "SKU-1", "quantity": 2, "unit_price": 0}], "currency": "EUR"}

    refused = await client.post("/orders", json=priced, headers=headers(tokens("alice")))
    placed = await client.post("/orders", json=ORDER_BODY, headers=headers(tokens("alice")))

    assert refused.status_code == 422
    assert "unit_price" in refused.json()["errors"][0]["message"]
    [event] = await reader.events(placed.json()["stream_id"])
    assert event.data.lines[0].unit_price == 1250  # type: ignore[attr-defined]
    assert event.data.total == 2500  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"lines": [{"sku": "no-such-thing", "quantity": 1}], "currency": "EUR"}, (422, "unknown-product")),
        ({"lines": [{"sku": "SKU-1", "quantity": 1}], "currency": "USD"}, (409, "product-currency-mismatch")),
        (
            {"lines": [{"sku": "SKU-2", "quantity": 1}, {"sku": "ghost", "quantity": 1}], "currency": "EUR"},
            (422, "unknown-product"),
        ),
    ],
)
async def test_an_order_for_what_is_not_sold_in_its_currency_is_refused(
    client: httpx.AsyncClient, tokens: Tokens, body: Any, expected: tuple[int, str]
) -> None:
    response = await client.post("/orders", json=body, headers=headers(tokens("alice")))

    assert refusal(response) == expected


async def test_a_new_price_applies_to_orders_placed_after_it_and_not_before(
    client: httpx.AsyncClient, tokens: Tokens, reader: StoreReader, staff: Callable[[], dict[str, str]]
) -> None:
    before = await place_order(client, tokens)
    changed = await client.post(
        "/products/sku-1/price", json={"unit_price": 999, "currency": "EUR"}, headers=staff()
    )
    after = await place_order(client, tokens)

    assert changed.status_code == 200, changed.text
    assert changed.json()["events"] == ["ProductPriceChanged"]
    [placed_before] = await reader.events(f"order-{before}")
    [placed_after] = await reader.events(f"order-{after}")
    assert placed_before.data.total == 2500  # type: ignore[attr-defined]
    assert placed_after.data.total == 1998  # type: ignore[attr-defined]


async def test_a_deactivated_product_is_refused_until_activated_again(
    client: httpx.AsyncClient, tokens: Tokens, staff: Callable[[], dict[str, str]]
) -> None:
    deactivated = await client.post("/products/SKU-1/deactivate", headers=staff())
    refused = await client.post("/orders", json=ORDER_BODY, headers=headers(tokens("alice")))
    activated = await client.post("/products/SKU-1/activate", headers=staff())
    placed = await client.post("/orders", json=ORDER_BODY, headers=headers(tokens("alice")))

    assert deactivated.json()["events"] == ["ProductDeactivated"]
    assert refusal(refused) == (409, "product-inactive")
    assert activated.status_code == 200, activated.text
    assert activated.json()["events"] == ["ProductActivated"]
    assert placed.status_code == 201


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"sku": "p", "name": "P", "unit_price": 0, "currency": "EUR"}, "unit_price"),
        ({"sku": "p", "name": "P", "unit_price": 1.5, "currency": "EUR"}, "unit_price"),
        ({"sku": "p", "name": "P", "unit_price": 100_000_001, "currency": "EUR"}, "unit_price"),
        ({"sku": "p", "name": "P", "currency": "EUR"}, ""),
        ({"sku": "p", "name": "P", "unit_price": 1, "currency": "eur"}, "currency"),
    ],
)
async def test_a_product_without_a_valid_price_is_not_registered(
    client: httpx.AsyncClient, staff: Callable[[], dict[str, str]], body: Any, field: str
) -> None:
    response = await client.post("/products", json=body, headers=staff())

    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == field


async def test_catalogue_commands_are_for_staff_and_registered_products(
    client: httpx.AsyncClient, tokens: Tokens, staff: Callable[[], dict[str, str]]
) -> None:
    price = {"unit_price": 5, "currency": "EUR"}

    as_customer = await client.post("/products/sku-1/price", json=price, headers=headers(tokens("alice")))
    unknown = await client.post("/products/nothing/price", json=price, headers=staff())

    assert refusal(as_customer) == (403, "forbidden")
    assert refusal(unknown) == (404, "product-not-found")


# --- reservations ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sku", "quantity", "expected"),
    [
        ("SKU-2", 1, (409, "sku-not-in-order")),
        ("SKU-1", 3, (409, "reservation-quantity-mismatch")),
        ("SKU-1", 1, (409, "reservation-quantity-mismatch")),
    ],
)
async def test_a_reservation_must_be_for_a_line_of_the_order_and_its_quantity(
    client: httpx.AsyncClient, tokens: Tokens, staff: Callable[[], dict[str, str]], sku: str, quantity: int,
    expected: tuple[int, str],
) -> None:  # fmt: skip
    order_id = await place_order(client, tokens)
    await client.post(f"/products/{sku}/receipts", json={"quantity": 10}, headers=staff())

    response = await client.post(
        f"/products/{sku}/reservations",
        json={"order_id": order_id, "quantity": quantity},
        headers=saga(tokens),
    )

    assert refusal(response) == expected


async def test_no_stock_is_reserved_for_an_unknown_or_cancelled_order(
    client: httpx.AsyncClient, tokens: Tokens, staff: Callable[[], dict[str, str]], reader: StoreReader
) -> None:
    await client.post("/products/sku-1/receipts", json={"quantity": 10}, headers=staff())
    cancelled = await place_order(client, tokens)
    await client.post(f"/orders/{cancelled}/cancel", headers=headers(tokens("alice")))

    answers = [
        await client.post(
            "/products/sku-1/reservations", json={"order_id": order_id, "quantity": 2}, headers=saga(tokens)
        )
        for order_id in (str(uuid.uuid4()), cancelled)
    ]

    assert [refusal(answer) for answer in answers] == [(422, "unknown-order"), (409, "order-not-pending")]
    assert await reader.event_types("stock-sku-1") == ["ProductRegistered", "StockReceived"]


async def test_a_retried_reservation_replays_its_answer_even_after_the_order_was_cancelled(
    client: httpx.AsyncClient, tokens: Tokens, staff: Callable[[], dict[str, str]]
) -> None:
    await client.post("/products/sku-1/receipts", json={"quantity": 10}, headers=staff())
    order_id = await place_order(client, tokens)
    key, body = str(uuid.uuid4()), {"order_id": order_id, "quantity": 2}
    first = await client.post("/products/sku-1/reservations", json=body, headers=saga(tokens, key))
    await client.post(f"/orders/{order_id}/cancel", headers=headers(tokens("alice")))

    retried = await client.post("/products/sku-1/reservations", json=body, headers=saga(tokens, key))

    assert first.status_code == retried.status_code == 200
    assert retried.headers["idempotent-replayed"] == "true"
    assert retried.json() == first.json()


# --- payments ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("amount", "currency"), [(2499, "EUR"), (2501, "EUR"), (1, "EUR"), (2500, "USD")])
async def test_a_payment_request_must_be_the_order_total_in_its_currency(
    client: httpx.AsyncClient, tokens: Tokens, amount: int, currency: str
) -> None:
    order_id = await place_order(client, tokens)

    response = await client.post(
        "/payments", json={"order_id": order_id, "amount": amount, "currency": currency}, headers=saga(tokens)
    )

    assert refusal(response) == (409, "payment-amount-mismatch")
    assert "2500 EUR" in response.json()["detail"]


async def test_no_payment_is_requested_for_an_unknown_or_cancelled_order(
    client: httpx.AsyncClient, tokens: Tokens
) -> None:
    cancelled = await place_order(client, tokens)
    await client.post(f"/orders/{cancelled}/cancel", headers=headers(tokens("alice")))

    answers = [
        await client.post(
            "/payments", json={"order_id": order_id, "amount": 2500, "currency": "EUR"}, headers=saga(tokens)
        )
        for order_id in (str(uuid.uuid4()), cancelled)
    ]

    assert [refusal(answer) for answer in answers] == [(422, "unknown-order"), (409, "order-not-pending")]


# --- commit, confirmation ----------------------------------------------------------------------


async def test_an_order_is_confirmed_only_once_paid_and_reserved(
    client: httpx.AsyncClient, tokens: Tokens, staff: Callable[[], dict[str, str]]
) -> None:
    order_id = await place_order(client, tokens)
    unpaid = await client.post(f"/orders/{order_id}/confirm", headers=saga(tokens))
    await client.post("/products/sku-1/receipts", json={"quantity": 5}, headers=staff())
    await client.post(
        "/payments", json={"order_id": order_id, "amount": 2500, "currency": "EUR"}, headers=saga(tokens)
    )
    await client.post(
        f"/payments/{order_id}/authorization", json={"provider_reference": "p-1"}, headers=saga(tokens)
    )
    unreserved = await client.post(f"/orders/{order_id}/confirm", headers=saga(tokens))
    await client.post(
        "/products/sku-1/reservations", json={"order_id": order_id, "quantity": 2}, headers=saga(tokens)
    )
    confirmed = await client.post(f"/orders/{order_id}/confirm", headers=saga(tokens))

    assert refusal(unpaid) == (409, "order-not-paid")
    assert refusal(unreserved) == (409, "order-not-reserved")
    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.json()["events"] == ["OrderConfirmed"]


async def test_units_ship_only_for_a_paid_order(
    client: httpx.AsyncClient, tokens: Tokens, staff: Callable[[], dict[str, str]]
) -> None:
    order_id = await place_order(client, tokens)
    await client.post("/products/sku-1/receipts", json={"quantity": 5}, headers=staff())
    await client.post(
        "/products/sku-1/reservations", json={"order_id": order_id, "quantity": 2}, headers=saga(tokens)
    )

    response = await client.post(f"/products/sku-1/reservations/{order_id}/commit", headers=saga(tokens))

    assert refusal(response) == (409, "order-not-paid")


# --- refunds -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"amount": 2501}, (409, "refund-exceeds-captured")),
        ({"amount": 1000}, (422, "partial-refund-unsupported")),
    ],
)
async def test_a_refund_is_of_the_whole_captured_amount(
    client: httpx.AsyncClient, tokens: Tokens, body: Any, expected: tuple[int, str]
) -> None:
    order_id = await place_order(client, tokens)
    await pay_and_reserve(client, tokens, order_id)
    await client.post(f"/orders/{order_id}/cancel", headers=headers(tokens("alice")))

    refused = await client.post(f"/payments/{order_id}/refund", json=body, headers=saga(tokens))
    refunded = await client.post(f"/payments/{order_id}/refund", json={"amount": 2500}, headers=saga(tokens))

    assert refusal(refused) == expected
    assert refunded.json()["events"] == ["PaymentRefunded"]


async def test_a_confirmed_order_is_not_refunded_until_it_is_cancelled(
    client: httpx.AsyncClient, tokens: Tokens
) -> None:
    order_id = await place_order(client, tokens)
    await pay_and_reserve(client, tokens, order_id)
    assert (await client.post(f"/orders/{order_id}/confirm", headers=saga(tokens))).status_code == 200

    refused = await client.post(f"/payments/{order_id}/refund", headers=saga(tokens))
    await client.post(f"/orders/{order_id}/cancel", headers=headers(tokens("alice")))
    refunded = await client.post(f"/payments/{order_id}/refund", headers=saga(tokens))

    assert refusal(refused) == (409, "order-confirmed")
    assert refunded.json()["events"] == ["PaymentRefunded"]
