"""Every command body is read one strict way: JSON, of the exact types, each key once, nothing unknown."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import msgspec
import pytest
from command_service.app import create_app
from command_service.settings import CommandSettings
from testkit.harness import TokenFactory

from services.command.tests.conftest import place_order
from services.command.tests.support import ORDER_BODY, command_headers

LINES = b'{"lines": [{"sku": "a", "quantity": 1}]'


def payment(amount: str) -> bytes:
    return f'{{"order_id": "{uuid.uuid4()}", "amount": {amount}, "currency": "EUR"}}'.encode()


async def post_raw(
    client: httpx.AsyncClient,
    path: str,
    body: bytes,
    token: str,
    content_type: str | None = "application/json",
) -> httpx.Response:
    headers = command_headers(token)
    if content_type is not None:
        headers["Content-Type"] = content_type
    return await client.post(path, content=body, headers=headers)


@pytest.mark.parametrize("amount", ['"5"', "5.0", "1e2", "1.00000000000000000000000000001", "true", "-0.0"])
async def test_money_has_one_representation_an_integer_of_minor_units(
    client: httpx.AsyncClient, tokens: TokenFactory, amount: str
) -> None:
    response = await post_raw(client, "/payments", payment(amount), tokens("saga", roles=["service"]))

    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == "amount"


@pytest.mark.parametrize("quantity", ['"1"', "1.0", "1e0"])
async def test_an_integer_is_a_json_integer(
    client: httpx.AsyncClient, tokens: TokenFactory, quantity: str
) -> None:
    body = f'{{"lines": [{{"sku": "a", "quantity": {quantity}}}], "currency": "EUR"}}'

    response = await post_raw(client, "/orders", body.encode(), tokens())

    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == "lines[0].quantity"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (
            LINES + b', "currency": "EUR", "currency": "USD"}',
            "currency",
        ),
        (
            b'{"lines": [{"sku": "a", "sku": "b", "quantity": 1}], "currency": "EUR"}',
            "lines[0].sku",
        ),
        (
            LINES + b', "curr\\u0065ncy": "EUR", "currency": "EUR"}',
            "currency",
        ),
    ],
)
async def test_a_key_given_twice_is_refused_naming_it(
    client: httpx.AsyncClient, tokens: TokenFactory, body: bytes, field: str
) -> None:
    response = await post_raw(client, "/orders", body, tokens())

    assert response.status_code == 422, response.text
    [error] = response.json()["errors"]
    assert error["field"] == field
    assert "more than once" in error["message"]


async def test_the_same_key_in_different_objects_is_fine(
    client: httpx.AsyncClient, tokens: TokenFactory
) -> None:
    lines = [{"sku": "SKU-1", "quantity": 1}, {"sku": "SKU-2", "quantity": 1}]

    response = await client.post(
        "/orders", json={"lines": lines, "currency": "EUR"}, headers=command_headers(tokens())
    )

    assert response.status_code == 201, response.text


@pytest.mark.parametrize(
    "content_type", ["text/plain", None, "application/x-www-form-urlencoded", "application/jsonx"]
)
async def test_a_body_not_sent_as_json_is_415(
    client: httpx.AsyncClient, tokens: TokenFactory, content_type: str | None
) -> None:
    response = await post_raw(client, "/orders", msgspec.json.encode(ORDER_BODY), tokens(), content_type)

    assert response.status_code == 415, response.text
    assert response.json()["code"] == "unsupported-media-type"


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "application/problem+json"])
async def test_json_media_types_with_parameters_or_suffixes_are_accepted(
    client: httpx.AsyncClient, tokens: TokenFactory, content_type: str
) -> None:
    response = await post_raw(client, "/orders", msgspec.json.encode(ORDER_BODY), tokens(), content_type)

    assert response.status_code == 201, response.text


async def test_cancel_needs_no_body(client: httpx.AsyncClient, tokens: TokenFactory) -> None:
    alice = tokens("alice")
    placed = await client.post("/orders", json=ORDER_BODY, headers=command_headers(alice))
    order_id = placed.json()["order_id"]

    response = await client.post(f"/orders/{order_id}/cancel", headers=command_headers(alice))

    assert response.status_code == 200, response.text
    assert response.json()["events"] == ["OrderCancelled"]


async def test_void_needs_no_body(client: httpx.AsyncClient, tokens: TokenFactory) -> None:
    saga = tokens("saga", roles=["service"])
    order_id = await place_order(client, tokens)
    body = {"order_id": order_id, "amount": 2500, "currency": "EUR"}
    await client.post("/payments", json=body, headers=command_headers(saga))

    response = await client.post(f"/payments/{order_id}/void", headers=command_headers(saga))

    assert response.status_code == 200, response.text
    assert response.json()["events"] == ["PaymentVoided"]


def body_types(settings: CommandSettings) -> dict[str, Any]:
    app = create_app(settings)
    found = {}
    for route in app.routes:
        for handler in getattr(route, "route_handlers", []):
            field = handler.parsed_data_field
            if field is not None:
                # An optional body (`CancelOrderBody | None`) is checked as its Struct.
                members = field.inner_types if field.is_optional else (field,)
                [struct] = [member.annotation for member in members if not member.is_none_type]
                found[handler.operation_id] = struct
    return found


def test_every_command_body_refuses_unknown_fields(settings: CommandSettings) -> None:
    found = body_types(settings)

    assert len(found) >= 8
    for operation, body_type in found.items():
        assert issubclass(body_type, msgspec.Struct), operation
        assert body_type.__struct_config__.forbid_unknown_fields, operation
