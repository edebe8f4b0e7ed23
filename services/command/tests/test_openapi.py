"""The OpenAPI document: every operation named, its problems and headers documented."""

from __future__ import annotations

import httpx


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
    assert place["security"] == [{"bearer": []}]
