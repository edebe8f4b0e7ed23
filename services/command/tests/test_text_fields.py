"""Every text field of every command body refuses control characters, bidi controls and a trailing newline."""

from __future__ import annotations

import copy
import uuid
from typing import Any

import httpx
import msgspec
import pytest
from command_service.app import create_app
from command_service.settings import CommandSettings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from testkit.harness import TokenFactory

from services.command.tests.support import command_headers

ORDER = str(uuid.uuid4())
# One valid body per operation that has one, with the path it is posted to and the role it needs.
EXAMPLES: dict[str, tuple[str, str, dict[str, Any]]] = {
    "placeOrder": (
        "/orders",
        "customer",
        {"lines": [{"sku": "SKU-1", "quantity": 1}], "currency": "EUR"},
    ),
    "rejectOrder": (f"/orders/{ORDER}/reject", "service", {"reason": "no stock"}),
    "cancelOrder": (f"/orders/{ORDER}/cancel", "customer", {"reason": "changed my mind"}),
    "registerProduct": (
        "/products",
        "staff",
        {"sku": "SKU-1", "name": "Mug", "unit_price": 100, "currency": "EUR"},
    ),
    "changePrice": ("/products/SKU-1/price", "staff", {"unit_price": 100, "currency": "EUR"}),
    "deactivateProduct": ("/products/SKU-1/deactivate", "staff", {"reason": "discontinued"}),
    "receiveStock": ("/products/SKU-1/receipts", "staff", {"quantity": 1}),
    "reserveStock": ("/products/SKU-1/reservations", "service", {"order_id": ORDER, "quantity": 1}),
    "requestPayment": ("/payments", "service", {"order_id": ORDER, "amount": 100, "currency": "EUR"}),
    "recordPaymentAuthorization": (
        f"/payments/{ORDER}/authorization",
        "service",
        {"provider_reference": "psp-1"},
    ),
    "recordPaymentDecline": (f"/payments/{ORDER}/decline", "service", {"reason": "card declined"}),
    "voidPayment": (f"/payments/{ORDER}/void", "service", {"reason": "timed out"}),
}


def text_fields(info: msgspec.inspect.Type, path: str = "") -> list[str]:
    """Paths of the str fields of a body type, nested Structs and lists included (`lines[0].sku`)."""
    if isinstance(info, msgspec.inspect.StructType):
        return [
            found
            for field in info.fields
            for found in text_fields(field.type, f"{path}.{field.name}" if path else field.name)
        ]
    if isinstance(info, msgspec.inspect.Metadata):
        return text_fields(info.type, path)
    if isinstance(info, msgspec.inspect.ListType):
        return text_fields(info.item_type, path + "[0]")
    if isinstance(info, msgspec.inspect.UnionType):
        return [found for member in info.types for found in text_fields(member, path)]
    if isinstance(info, msgspec.inspect.StrType):
        return [path]
    return []


def all_text_fields(settings: CommandSettings) -> list[tuple[str, str]]:
    found = []
    for route in create_app(settings).routes:
        for handler in getattr(route, "route_handlers", []):
            if handler.parsed_data_field is not None:
                for path in text_fields(msgspec.inspect.type_info(handler.parsed_data_field.annotation)):
                    found.append((handler.operation_id, path))
    return found


def test_every_text_field_has_an_example(settings: CommandSettings) -> None:
    fields = all_text_fields(settings)

    assert len(fields) >= 9
    for operation, path in fields:
        assert operation in EXAMPLES, operation
        get(EXAMPLES[operation][2], path)


def get(body: Any, path: str) -> Any:
    for part in path.replace("[0]", ".0").split("."):
        body = body[int(part)] if part.isdigit() else body[part]
    return body


def put(body: Any, path: str, value: str) -> None:
    parts = path.replace("[0]", ".0").split(".")
    for part in parts[:-1]:
        body = body[int(part)] if part.isdigit() else body[part]
    body[parts[-1]] = value


FIELDS = [
    ("placeOrder", "lines[0].sku"),
    ("placeOrder", "currency"),
    ("rejectOrder", "reason"),
    ("cancelOrder", "reason"),
    ("registerProduct", "sku"),
    ("registerProduct", "name"),
    ("registerProduct", "currency"),
    ("changePrice", "currency"),
    ("deactivateProduct", "reason"),
    ("requestPayment", "currency"),
    ("recordPaymentAuthorization", "provider_reference"),
    ("recordPaymentDecline", "reason"),
    ("voidPayment", "reason"),
]

hostile = st.one_of(
    st.characters(min_codepoint=0x00, max_codepoint=0x1F),
    st.characters(min_codepoint=0x7F, max_codepoint=0x9F),
    st.characters(min_codepoint=0x202A, max_codepoint=0x202E),
    st.characters(min_codepoint=0x2066, max_codepoint=0x2069),
)


def test_the_field_list_is_every_text_field(settings: CommandSettings) -> None:
    assert sorted(FIELDS) == sorted(all_text_fields(settings))


@pytest.mark.parametrize(("operation", "field"), FIELDS)
async def test_a_trailing_newline_is_422_naming_the_field(
    client: httpx.AsyncClient, tokens: TokenFactory, operation: str, field: str
) -> None:
    response = await post_with(client, tokens, operation, field, lambda valid: valid + "\n")

    assert response.status_code == 422, response.text
    assert [error["field"] for error in response.json()["errors"]] == [field]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(target=st.sampled_from(FIELDS), control=hostile, where=st.integers(min_value=0, max_value=3))
async def test_a_control_character_in_any_text_field_is_422_naming_the_field(
    client: httpx.AsyncClient, tokens: TokenFactory, target: tuple[str, str], control: str, where: int
) -> None:
    operation, field = target

    response = await post_with(
        client, tokens, operation, field, lambda valid: valid[:where] + control + valid[where:]
    )

    assert response.status_code == 422, response.text
    assert [error["field"] for error in response.json()["errors"]] == [field]


async def post_with(
    client: httpx.AsyncClient, tokens: TokenFactory, operation: str, field: str, change: Any
) -> httpx.Response:
    path, role, example = EXAMPLES[operation]
    body = copy.deepcopy(example)
    put(body, field, change(get(body, field)))
    token = tokens("alice") if role == "customer" else tokens("bob", roles=[role])
    return await client.post(path, json=body, headers=command_headers(token))


@pytest.mark.parametrize("sku", ["SKU-1%0A", "SKU-1%0D", "SKU-1%E2%80%AE"])
async def test_a_sku_path_with_a_trailing_control_character_is_400(
    client: httpx.AsyncClient, tokens: TokenFactory, sku: str
) -> None:
    staff = tokens("clerk", roles=["staff"])

    response = await client.post(
        f"/products/{sku}/receipts", json={"quantity": 1}, headers=command_headers(staff)
    )

    assert response.status_code == 400, response.text
    assert response.json()["errors"][0]["field"] == "sku"
