"""The OpenAPI document: every operation named, its problems and headers documented."""

from __future__ import annotations

import httpx
from testkit.harness import TokenFactory

from services.command.tests.support import ORDER_BODY, command_headers


async def test_the_openapi_document_names_every_operation_and_documents_its_problems(
    client: httpx.AsyncClient,
) -> None:
    document = (await client.get("/schema/openapi.json")).json()

    operations = [op for path in document["paths"].values() for op in path.values()]
    ids = {op["operationId"] for op in operations}
    assert {"placeOrder", "cancelOrder", "reserveStock", "refundPayment", "live", "ready"} <= ids
    place = document["paths"]["/orders"]["post"]
    assert place["responses"]["422"]["content"]["application/problem+json"]["schema"]["$ref"].endswith(
        "/Problem"
    )
    assert {p["name"] for p in place["parameters"]} >= {"Idempotency-Key", "If-Match"}
    assert place["security"] == [{"bearer": ["customer"]}]


async def test_every_command_operation_names_the_role_it_requires(client: httpx.AsyncClient) -> None:
    document = (await client.get("/schema/openapi.json")).json()
    commands = [
        operation
        for path, item in document["paths"].items()
        if path.startswith(("/orders", "/products", "/payments"))
        for operation in item.values()
    ]

    assert len(commands) == 17
    for operation in commands:
        [requirement] = operation["security"]
        [role] = requirement["bearer"]
        assert operation["description"] == f"Requires role: {role}.", operation["operationId"]
    roles = {op["operationId"]: op["security"][0]["bearer"][0] for op in commands}
    assert (roles["placeOrder"], roles["registerProduct"], roles["requestPayment"]) == (
        "customer",
        "staff",
        "service",
    )


async def test_the_documentation_loads_no_script_from_anywhere(client: httpx.AsyncClient) -> None:
    page = await client.get("/schema")
    yaml = await client.get("/schema/openapi.yaml")

    assert page.status_code == 200
    assert "<script" not in page.text
    assert page.headers["content-type"].startswith("application/")
    assert yaml.status_code == 200
    assert "placeOrder" in yaml.text
    for viewer in ("/schema/swagger", "/schema/scalar", "/schema/redoc", "/schema/elements"):
        assert (await client.get(viewer)).status_code == 404


async def test_command_answers_and_refusals_are_not_stored_by_caches(
    client: httpx.AsyncClient, tokens: TokenFactory
) -> None:
    accepted = await client.post("/orders", json=ORDER_BODY, headers=command_headers(tokens()))
    refused = await client.post("/orders", json={}, headers=command_headers(tokens()))

    assert (accepted.status_code, refused.status_code) == (201, 422)
    assert accepted.headers["cache-control"] == "no-store"
    assert refused.headers["cache-control"] == "no-store"


async def test_bodies_that_may_be_left_out_are_documented_as_optional(client: httpx.AsyncClient) -> None:
    document = (await client.get("/schema/openapi.json")).json()
    operations = {op["operationId"]: op for item in document["paths"].values() for op in item.values()}

    assert operations["cancelOrder"]["requestBody"]["required"] is False
    assert operations["voidPayment"]["requestBody"]["required"] is False
    assert operations["placeOrder"]["requestBody"]["required"] is True
    assert operations["rejectOrder"]["requestBody"]["required"] is True
