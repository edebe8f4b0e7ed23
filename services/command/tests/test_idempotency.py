"""Idempotency-Key: a retry returns the first response and appends nothing."""

from __future__ import annotations

import asyncio
import uuid
from importlib import resources
from pathlib import Path

import asyncpg
import httpx
from command_service.settings import CommandSettings
from litestar import Litestar
from testkit.harness import TokenFactory

from services.command.tests.support import ORDER_BODY, StoreReader, command_headers


async def order_streams(settings: CommandSettings) -> int:
    connection = await asyncpg.connect(settings.database_url)
    try:
        count: int = await connection.fetchval(
            "SELECT count(DISTINCT stream_id) FROM eventstore.events WHERE stream_id LIKE 'order-%'"
        )
        return count
    finally:
        await connection.close()


async def test_a_retry_with_the_same_key_and_body_returns_the_first_response_and_appends_nothing(
    client: httpx.AsyncClient, tokens: TokenFactory, settings: CommandSettings
) -> None:
    request_headers = command_headers(tokens("alice"), key="retry-1")

    first = await client.post("/orders", json=ORDER_BODY, headers=request_headers)
    retry = await client.post("/orders", json=ORDER_BODY, headers=request_headers)

    assert (first.status_code, retry.status_code) == (201, 201)
    assert retry.json() == first.json()
    assert retry.headers["etag"] == first.headers["etag"]
    assert retry.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert await order_streams(settings) == 1


async def test_a_retry_of_a_state_change_appends_it_once(
    client: httpx.AsyncClient, tokens: TokenFactory, reader: StoreReader
) -> None:
    alice = tokens("alice")
    order_id = (await client.post("/orders", json=ORDER_BODY, headers=command_headers(alice))).json()[
        "order_id"
    ]
    cancel = command_headers(alice, key="cancel-once")

    responses = [
        await client.post(f"/orders/{order_id}/cancel", json={"reason": "x"}, headers=cancel) for _ in "ab"
    ]

    assert [r.status_code for r in responses] == [200, 200]
    assert await reader.event_types(f"order-{order_id}") == ["OrderPlaced", "OrderCancelled"]


async def test_the_same_key_with_a_different_body_is_refused_clearly(
    client: httpx.AsyncClient, tokens: TokenFactory, settings: CommandSettings
) -> None:
    alice = tokens("alice")
    await client.post("/orders", json=ORDER_BODY, headers=command_headers(alice, key="reused"))
    other_body = {**ORDER_BODY, "currency": "USD"}

    response = await client.post("/orders", json=other_body, headers=command_headers(alice, key="reused"))

    assert response.status_code == 422
    assert response.json()["code"] == "idempotency-key-reused"
    assert await order_streams(settings) == 1


async def test_keys_belong_to_their_subject(
    client: httpx.AsyncClient, tokens: TokenFactory, settings: CommandSettings
) -> None:
    for customer in ("alice", "bob"):
        response = await client.post(
            "/orders", json=ORDER_BODY, headers=command_headers(tokens(customer), key="k")
        )
        assert response.status_code == 201
        assert "idempotent-replayed" not in response.headers

    assert await order_streams(settings) == 2


async def test_racing_requests_with_one_key_create_one_order(
    client: httpx.AsyncClient, tokens: TokenFactory, settings: CommandSettings
) -> None:
    request_headers = command_headers(tokens("alice"), key=f"race-{uuid.uuid4()}")

    responses = await asyncio.gather(
        *(client.post("/orders", json=ORDER_BODY, headers=request_headers) for _ in range(8))
    )

    assert {r.status_code for r in responses} == {201}
    assert len({r.json()["order_id"] for r in responses}) == 1
    assert await order_streams(settings) == 1


async def test_a_command_without_an_idempotency_key_is_400_naming_the_header(
    client: httpx.AsyncClient, tokens: TokenFactory
) -> None:
    response = await client.post("/orders", json=ORDER_BODY, headers={"Authorization": f"Bearer {tokens()}"})

    assert response.status_code == 400
    assert response.json()["errors"] == [
        {"field": "Idempotency-Key", "message": "required", "source": "header"}
    ]


async def test_a_refused_command_is_not_remembered(client: httpx.AsyncClient, tokens: TokenFactory) -> None:
    saga = tokens("saga", roles=["service"])
    order_id = (await client.post("/orders", json=ORDER_BODY, headers=command_headers(tokens()))).json()[
        "order_id"
    ]
    key = command_headers(saga, key="authorise")
    body = {"provider_reference": "psp-1"}

    before = await client.post(f"/payments/{order_id}/authorization", json=body, headers=key)
    await client.post(
        "/payments",
        json={"order_id": order_id, "amount": 2500, "currency": "EUR"},
        headers=command_headers(saga),
    )
    after = await client.post(f"/payments/{order_id}/authorization", json=body, headers=key)

    assert (before.status_code, after.status_code) == (404, 200)


async def test_an_expired_key_can_be_used_again_and_expired_keys_are_purged(
    client: httpx.AsyncClient, tokens: TokenFactory, settings: CommandSettings, app: Litestar
) -> None:
    request_headers = command_headers(tokens("alice"), key="short-lived")
    first = await client.post("/orders", json=ORDER_BODY, headers=request_headers)
    connection = await asyncpg.connect(settings.database_url)
    try:
        await connection.execute(
            "UPDATE eventstore.claims SET expires_at = now() - interval '1 second' WHERE scope = 'alice'"
        )
        again = await client.post("/orders", json=ORDER_BODY, headers=request_headers)
        await connection.execute(
            "UPDATE eventstore.claims SET expires_at = now() - interval '1 second' WHERE scope = 'alice'"
        )
        purged = await app.state.services.keys.purge_expired()
        left = await connection.fetchval("SELECT count(*) FROM eventstore.claims WHERE scope = 'alice'")
    finally:
        await connection.close()

    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json()["order_id"] != first.json()["order_id"]
    assert "idempotent-replayed" not in again.headers
    assert (purged, left) == (1, 0)


async def test_a_retry_after_the_state_moved_on_still_gets_the_first_answer(
    client: httpx.AsyncClient, tokens: TokenFactory, reader: StoreReader
) -> None:
    alice, saga = tokens("alice"), tokens("saga", roles=["service"])
    order_id = (await client.post("/orders", json=ORDER_BODY, headers=command_headers(alice))).json()[
        "order_id"
    ]
    cancel = command_headers(alice, key="cancel-then-retry", **{"If-Match": '"0"'})
    first = await client.post(f"/orders/{order_id}/cancel", json={}, headers=cancel)
    # Now confirming is refused and the stream is past version 0: the retry must not see either.
    refused = await client.post(f"/orders/{order_id}/confirm", headers=command_headers(saga))

    retry = await client.post(f"/orders/{order_id}/cancel", json={}, headers=cancel)

    assert (first.status_code, refused.status_code, retry.status_code) == (200, 409, 200)
    assert retry.json() == first.json()
    assert retry.headers["idempotent-replayed"] == "true"
    assert await reader.event_types(f"order-{order_id}") == ["OrderPlaced", "OrderCancelled"]


async def test_keys_stored_before_the_outcome_columns_still_answer_after_the_migrations(
    fresh_database_url: str, tmp_path: Path
) -> None:
    from command_service.app import MIGRATION_LOCK_KEY
    from command_service.idempotency import IdempotencyKeys, fingerprint
    from eventstore.migrations import migrate

    sql = resources.files("command_service") / "sql"
    first_only = tmp_path / "sql"
    first_only.mkdir()
    (first_only / "001_idempotency_keys.sql").write_text((sql / "001_idempotency_keys.sql").read_text())
    await migrate(fresh_database_url, first_only, schema="command", lock_key=MIGRATION_LOCK_KEY)
    request = fingerprint("POST", "/orders", b"{}")
    body = b'{"stream_id":"order-1","version":0,"position":42,"events":["OrderPlaced"]}'
    connection = await asyncpg.connect(fresh_database_url)
    try:
        for key, expires in (("k-1", "1 hour"), ("k-gone", "-1 second")):
            await connection.execute(
                "INSERT INTO command.idempotency_keys"
                " (subject, idempotency_key, fingerprint, status_code, response, expires_at)"
                " VALUES ('alice', $1, $2, 201, $3, now() + $4::text::interval)",
                key,
                request,
                body,
                expires,
            )
        # As the service starts: the event store's migrations, then its own.
        await migrate(fresh_database_url)
        applied = await migrate(fresh_database_url, sql, schema="command", lock_key=MIGRATION_LOCK_KEY)
        moved = await connection.fetchval("SELECT count(*) FROM eventstore.claims")
        old_table = await connection.fetchval("SELECT to_regclass('command.idempotency_keys')")
    finally:
        await connection.close()
    pool = await asyncpg.create_pool(fresh_database_url, min_size=1, max_size=1)
    try:
        stored = await IdempotencyKeys(pool, ttl_seconds=60).find("alice", "k-1", request)
    finally:
        await pool.close()

    assert [m.version for m in applied] == [2, 3]
    assert (moved, old_table) == (1, None)
    assert stored is not None
    assert (stored.stream_id, stored.version, stored.position, stored.event_types) == (
        "order-1",
        0,
        42,
        ["OrderPlaced"],
    )
