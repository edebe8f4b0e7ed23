"""A client's mistake is a 4xx problem naming what is wrong, never a 500."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from testkit.harness import TokenFactory

from services.command.tests.support import ORDER_BODY, command_headers


def line(**fields: Any) -> dict[str, Any]:
    return {"lines": [{"sku": "a", "quantity": 1, **fields}], "currency": "EUR"}


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        (line(quantity="two"), "lines[0].quantity", "Expected `int`, got `str`"),
        (line(quantity=0), "lines[0].quantity", "Expected `int` >= 1"),
        (line(sku="has space"), "lines[0].sku", "Expected `str` matching regex"),
        ({"lines": [], "currency": "EUR"}, "lines", "Expected `array` of length >= 1"),
        ({**ORDER_BODY, "currency": "euro"}, "currency", "Expected `str` matching regex"),
        ({**ORDER_BODY, "total": 1}, "", "Object contains unknown field `total`"),
        (line(line_total=1), "lines[0]", "Object contains unknown field `line_total`"),
        (
            line(sku="SKU-1", quantity=1, unit_price=0),
            "lines[0]",
            "Object contains unknown field `unit_price`",
        ),
        ({"currency": "EUR"}, "", "Object missing required field `lines`"),
        ([1, 2], "", "Expected `object`, got `array`"),
    ],
)
async def test_an_invalid_body_is_422_naming_the_field(
    client: httpx.AsyncClient, tokens: TokenFactory, body: Any, field: str, message: str
) -> None:
    response = await client.post("/orders", json=body, headers=command_headers(tokens()))

    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["code"] == "validation-error"
    [error] = problem["errors"]
    assert error["field"] == field
    assert error["message"].startswith(message)


async def test_a_body_that_is_not_json_is_400(client: httpx.AsyncClient, tokens: TokenFactory) -> None:
    response = await client.post(
        "/orders",
        content=b'{"lines": [',
        headers={**command_headers(tokens()), "Content-Type": "application/json"},
    )

    assert response.status_code == 400
    assert response.json()["code"] == "malformed-body", response.text


async def test_the_same_sku_twice_is_a_domain_422(client: httpx.AsyncClient, tokens: TokenFactory) -> None:
    body = {"lines": [{"sku": "SKU-1", "quantity": 1}, {"sku": "sku-1", "quantity": 1}]}

    response = await client.post(
        "/orders", json={**body, "currency": "EUR"}, headers=command_headers(tokens())
    )

    assert response.status_code == 422
    assert response.json()["type"] == "urn:fulfilment:problem:duplicate-order-line"


async def test_a_body_over_the_size_limit_is_413(client: httpx.AsyncClient, tokens: TokenFactory) -> None:
    body = {
        "lines": [{"sku": f"sku-{i}", "quantity": 1} for i in range(5000)],
        "currency": "EUR",
    }

    response = await client.post("/orders", json=body, headers=command_headers(tokens()))

    assert response.status_code == 413
    assert response.json()["code"] == "body-too-large"


async def test_an_invalid_sku_in_the_path_is_400_naming_it(
    client: httpx.AsyncClient, tokens: TokenFactory
) -> None:
    response = await client.post(
        "/products/bad%20sku/receipts", json={"quantity": 1}, headers=command_headers(tokens(roles=["staff"]))
    )

    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "sku"


async def test_an_order_id_that_is_not_a_uuid_is_404(client: httpx.AsyncClient, tokens: TokenFactory) -> None:
    response = await client.post(
        "/orders/not-a-uuid/confirm", headers=command_headers(tokens(roles=["service"]))
    )

    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


async def test_an_unknown_route_and_a_wrong_method_are_problems(client: httpx.AsyncClient) -> None:
    missing = await client.get("/nowhere")
    wrong_method = await client.get("/orders")

    assert (missing.status_code, wrong_method.status_code) == (404, 405)
    assert missing.json()["code"] == "not-found"
    assert wrong_method.json()["code"] == "method-not-allowed"


async def test_an_oversized_idempotency_key_is_400(client: httpx.AsyncClient, tokens: TokenFactory) -> None:
    response = await client.post("/orders", json=ORDER_BODY, headers=command_headers(tokens(), key="k" * 300))

    assert response.status_code == 400
    assert response.json()["errors"][0]["source"] == "header"


async def test_a_payment_for_zero_is_422(client: httpx.AsyncClient, tokens: TokenFactory) -> None:
    body = {"order_id": str(uuid.uuid4()), "amount": 0, "currency": "EUR"}

    response = await client.post("/payments", json=body, headers=command_headers(tokens(roles=["service"])))

    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "amount"


JSON = {"content-type": "application/json"}


async def test_a_body_that_is_not_utf8_is_a_400_malformed_body(
    client: httpx.AsyncClient, tokens: TokenFactory
) -> None:
    body = b'{"lines":[{"sku":"A\xff\xfe","quantity":1,"unit_price":5}],"currency":"EUR"}'
    response = await client.post("/orders", content=body, headers={**command_headers(tokens()), **JSON})

    assert response.status_code == 400, response.text
    assert response.json()["code"] == "malformed-body"
    assert "UTF-8" in response.json()["detail"]


async def test_json_nested_deeper_than_the_parser_reads_is_a_4xx_not_a_500(
    settings_for: Any, fresh_database_url: str, tokens: TokenFactory
) -> None:
    from command_service.app import create_app
    from testkit.harness import lifespan_of

    app = create_app(settings_for(fresh_database_url, max_body_bytes=4 * 1024 * 1024))
    depth = 1_000_000
    body = b'{"lines":[],"currency":"EUR","x":' + b"[" * depth + b"]" * depth + b"}"
    async with lifespan_of(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://command.test") as client:
            response = await client.post(
                "/orders", content=body, headers={**command_headers(tokens()), **JSON}
            )

    assert 400 <= response.status_code < 500, response.text


@pytest.mark.parametrize(("method", "path", "status"), [("GET", "/nowhere", 404), ("GET", "/orders", 405)])
async def test_answers_of_the_router_carry_the_correlation_id(
    client: httpx.AsyncClient, method: str, path: str, status: int
) -> None:
    response = await client.request(method, path, headers={"X-Correlation-ID": "c-router"})

    assert response.status_code == status
    assert response.headers["x-correlation-id"] == "c-router"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert (await client.get(path)).headers["x-correlation-id"]


async def test_a_client_that_disconnects_mid_body_is_not_a_server_error(
    app: Any, client: httpx.AsyncClient, tokens: TokenFactory, caplog: pytest.LogCaptureFixture
) -> None:
    sent: list[dict[str, Any]] = []
    chunks = iter(
        [
            {"type": "http.request", "body": b'{"lines": [', "more_body": True},
            {"type": "http.disconnect"},
        ]
    )

    async def receive() -> dict[str, Any]:
        return next(chunks)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    headers = [(k.lower().encode(), v.encode()) for k, v in {**command_headers(tokens()), **JSON}.items()]
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": "/orders", "raw_path": b"/orders", "query_string": b"",
        "root_path": "", "headers": [*headers, (b"host", b"command.test")],
        "client": ("127.0.0.1", 5000), "server": ("command.test", 80),
    }  # fmt: skip
    await app(scope, receive, send)

    status = next(message["status"] for message in sent if message["type"] == "http.response.start")
    assert status < 500
    assert not [record for record in caplog.records if record.levelname == "ERROR"]
