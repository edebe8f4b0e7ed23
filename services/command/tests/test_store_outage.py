"""PostgreSQL going away under requests in flight: 503 with Retry-After, never a 500, and nothing lost.

The service reaches PostgreSQL through a TCP proxy the test controls: it holds
the bytes of requests in flight, then cuts every connection and refuses new ones,
which is what the service sees when the server is SIGKILLed or restarts.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest
from command_service.app import create_app
from command_service.problems import PROBLEMS
from command_service.settings import CommandSettings
from eventstore.connection import translated
from eventstore.errors import EventStoreError
from testkit.harness import TcpProxy, TokenFactory, lifespan_of

from services.command.tests.support import ORDER_BODY, command_headers


def through(proxy: TcpProxy, database_url: str) -> str:
    parts = urlsplit(database_url)
    user = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    return urlunsplit(parts._replace(netloc=f"{user}127.0.0.1:{proxy.port}"))


@pytest.fixture
async def proxy(fresh_database_url: str) -> AsyncIterator[TcpProxy]:
    target = urlsplit(fresh_database_url)
    proxy = await TcpProxy(target.hostname or "127.0.0.1", target.port or 5432).start()
    yield proxy
    await proxy.stop()


async def test_requests_in_flight_when_postgres_goes_away_answer_503_and_a_retry_stores_once(
    proxy: TcpProxy,
    fresh_database_url: str,
    settings_for: Callable[..., CommandSettings],
    tokens: TokenFactory,
) -> None:
    app = create_app(settings_for(through(proxy, fresh_database_url)))
    token = tokens("alice")
    async with lifespan_of(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://command.test") as client:
            warm = await client.post("/orders", json=ORDER_BODY, headers=command_headers(token))
            assert warm.status_code == 201, warm.text

            keys = ["k-outage-1", "k-outage-2"]
            proxy.freeze()
            in_flight = [
                asyncio.create_task(
                    client.post("/orders", json=ORDER_BODY, headers=command_headers(token, key))
                )
                for key in keys
            ]
            async with asyncio.timeout(30):
                await proxy.holding(len(keys))  # both requests wait on PostgreSQL now
            await proxy.stop()
            answers = await asyncio.gather(*in_flight)
            for answer in answers:
                assert answer.status_code == 503, answer.text
                assert answer.headers["Retry-After"] == "1"
                assert answer.json()["code"] == "unavailable"

            # While it stays away, new requests are 503 too.
            refused = await client.post("/orders", json=ORDER_BODY, headers=command_headers(token))
            assert refused.status_code == 503, refused.text

            await proxy.start()
            retried = [
                await client.post("/orders", json=ORDER_BODY, headers=command_headers(token, key))
                for key in keys
            ]
            again = [
                await client.post("/orders", json=ORDER_BODY, headers=command_headers(token, key))
                for key in keys
            ]
    assert [r.status_code for r in retried] == [201, 201], [r.text for r in retried]
    assert [r.json()["order_id"] for r in again] == [r.json()["order_id"] for r in retried]
    connection = await asyncpg.connect(fresh_database_url)
    try:
        placed = await connection.fetchval(
            "SELECT count(*) FROM eventstore.events WHERE event_type = 'OrderPlaced'"
        )
    finally:
        await connection.close()
    assert placed == 3  # the warm-up and one per key: the retries took effect once


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        asyncpg.InterfaceError("cannot call Connection.fetchrow(): connection is closed"),
        asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
        asyncpg.exceptions.AdminShutdownError("terminating connection due to administrator command"),
        asyncpg.exceptions.OperatorInterventionError("terminating connection"),
        ConnectionResetError("Connection reset by peer"),
    ],
    ids=type,
)
async def test_every_transient_driver_error_through_the_store_boundary_is_a_503(error: Exception) -> None:
    with pytest.raises(EventStoreError) as raised:
        async with translated():
            raise error
    problem, headers = PROBLEMS.answer(raised.value)
    assert (problem.status, headers.get("Retry-After")) == (503, "1"), error


async def test_a_driver_misuse_stays_a_500() -> None:
    # Not an outage: retrying would not help, so the client must not be told it would.
    with pytest.raises(EventStoreError) as raised:
        async with translated():
            raise asyncpg.InterfaceError("cannot perform operation: another operation is in progress")
    problem, _ = PROBLEMS.answer(raised.value)
    assert problem.status == 500


async def test_the_openapi_document_says_which_answers_are_safe_to_retry(client: httpx.AsyncClient) -> None:
    document = (await client.get("/schema/openapi.json")).json()
    responses = document["paths"]["/orders"]["post"]["responses"]
    for status in ("409", "429", "503"):
        description = responses[status]["description"].lower()
        assert "safe to retry with the same idempotency-key" in description, status


async def test_started_with_postgres_down_it_serves_says_what_it_waits_for_and_starts_when_it_answers(
    proxy: TcpProxy,
    fresh_database_url: str,
    settings_for: Callable[..., CommandSettings],
    tokens: TokenFactory,
) -> None:
    await proxy.stop()  # PostgreSQL does not answer at start-up
    url = through(proxy, fresh_database_url)
    app = create_app(settings_for(url))
    async with lifespan_of(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://command.test") as client:
            ready = await client.get("/health/ready")
            assert ready.status_code == 503
            waiting = ready.json()["checks"]["startup"]
            assert waiting.startswith(f"waiting for postgres at 127.0.0.1:{proxy.port}: "), waiting
            password = urlsplit(url).password
            assert password is None or password not in ready.text
            assert (await client.get("/health/live")).status_code == 200  # waiting is no reason to restart

            early = await client.post("/orders", json=ORDER_BODY, headers=command_headers(tokens("alice")))
            assert early.status_code == 503, early.text
            assert (early.json()["code"], early.headers["Retry-After"]) == ("starting", "1")

            await proxy.start()
            async with asyncio.timeout(30):
                while (await client.get("/health/ready")).status_code != 200:  # noqa: ASYNC110
                    await asyncio.sleep(0.2)
            placed = await client.post("/orders", json=ORDER_BODY, headers=command_headers(tokens("alice")))
            assert placed.status_code == 201, placed.text
