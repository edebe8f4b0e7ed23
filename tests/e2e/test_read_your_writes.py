"""End to end: place an order over HTTP, read it back over HTTP on the very next request.

The command service, the relay, the projector and the query service run as real
processes against real PostgreSQL, Kafka, Redis and the search engine. The
command's `position` goes back to the query service as `X-Consistency-Token`;
the read waits for the projector's announcement and then shows the write.
Without the token an answer may lag (404, an older status) but is never wrong.
The services start once for the module; each test uses customers and checks
that the others' orders cannot disturb.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest
from eventstore import migrate
from testkit.harness import TokenFactory, running_service, token_factory

from services.command.tests.support import command_headers, register_products

pytestmark = pytest.mark.slow

SECRET = "e2e-secret-that-is-long-enough-for-hs256!"
ISSUER, AUDIENCE = "https://issuer.e2e", "fulfilment-e2e"
# The order pays the catalogue's price: 2 x 12.50 EUR.
MUG = {"sku": "E2E-MUG", "name": "End-to-end mug", "unit_price": 1250, "currency": "EUR"}
ORDER = {"lines": [{"sku": "E2E-MUG", "quantity": 2}], "currency": "EUR"}


@pytest.fixture
def tokens() -> TokenFactory:
    return token_factory(secret=SECRET, issuer=ISSUER, audience=AUDIENCE)


@pytest.fixture(scope="module")
async def store_url(database_url: str) -> AsyncIterator[str]:
    """A database of this module's own: the services take long to start, so the tests share them."""
    name = f"test_{uuid.uuid4().hex[:16]}"
    admin = await asyncpg.connect(database_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = urlunsplit(urlsplit(database_url)._replace(path=f"/{name}"))
    await migrate(url)
    yield url
    admin = await asyncpg.connect(database_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(scope="module")
async def suite(
    store_url: str,
    redis_url: str,
    kafka_bootstrap_servers: str,
    search_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[dict[str, str]]:
    """The four services on one fresh store, with topics, groups and read models of their own."""
    fresh_database_url = store_url
    tmp_path = tmp_path_factory.mktemp("suite")
    tag = uuid.uuid4().hex[:8]
    api = {"REDIS_URL": redis_url, "JWT_SECRET": SECRET, "JWT_ISSUER": ISSUER, "JWT_AUDIENCE": AUDIENCE}
    command_env = {**api, "DATABASE_URL": fresh_database_url}
    relay_env = {
        "DATABASE_URL": fresh_database_url, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap_servers,
        "RELAY_TOPIC_PREFIX": f"e2e{tag}.", "RELAY_LOCK_KEY": str(random.randrange(1, 2**62)),
        "RELAY_PARTITIONS": "3",
    }  # fmt: skip
    projector_env = {
        "DATABASE_URL": fresh_database_url, "REDIS_URL": redis_url, "SEARCH_URL": search_url,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap_servers, "PROJECTOR_TOPIC_PREFIX": f"e2e{tag}.",
        "PROJECTOR_GROUP_PREFIX": f"e2e{tag}.projector.", "PROJECTOR_DEAD_LETTER_TOPIC": f"e2e{tag}.dlq",
        "PROJECTOR_KEY_PREFIX": f"e2e{tag}-", "PROJECTOR_PARTITIONS": "3",
    }  # fmt: skip
    query_env = {**api, "SEARCH_URL": search_url, "QUERY_KEY_PREFIX": f"e2e{tag}-"}
    # Started together and awaited together: each one's start-up overlaps the others'.
    async with (
        running_service(
            "command_service",
            command_env,
            log=tmp_path / "command.log",
            port_variable="COMMAND_PORT",
            ready=False,
        ) as command,
        running_service(
            "relay_service", relay_env, log=tmp_path / "relay.log", port_variable="RELAY_PORT", ready=False
        ) as relay,
        running_service(
            "projector_service",
            projector_env,
            log=tmp_path / "projector.log",
            port_variable="PROJECTOR_PORT",
            ready=False,
        ) as projector,
        running_service(
            "query_service", query_env, log=tmp_path / "query.log", port_variable="QUERY_PORT", ready=False
        ) as query,
    ):
        await asyncio.gather(*(service.ready() for service in (command, relay, projector, query)))
        staff = token_factory(secret=SECRET, issuer=ISSUER, audience=AUDIENCE)("staff-1", ("staff",))
        async with httpx.AsyncClient(base_url=command.url, timeout=10) as client:
            await register_products(client, staff, [MUG])
        yield {"command": command.url, "query": query.url}


async def place(client: httpx.AsyncClient, token: str, body: dict[str, Any] = ORDER) -> dict[str, Any]:
    response = await client.post("/orders", json=body, headers=command_headers(token))
    assert response.status_code == 201, response.text
    accepted: dict[str, Any] = response.json()
    return accepted


async def test_an_order_is_readable_with_its_token_on_the_very_next_request(
    suite: dict[str, str], tokens: TokenFactory
) -> None:
    alice = tokens("alice")
    async with (
        httpx.AsyncClient(base_url=suite["command"], timeout=10) as command,
        httpx.AsyncClient(base_url=suite["query"], timeout=10) as query,
    ):
        for _ in range(3):
            accepted = await place(command, alice)
            consistent = {
                "Authorization": f"Bearer {alice}",
                "X-Consistency-Token": str(accepted["position"]),
            }

            by_id = await query.get(f"/orders/{accepted['order_id']}", headers=consistent)
            search = await query.get("/orders", params={"q": "e2e-mug"}, headers=consistent)
            counts = await query.get("/orders/counts", headers=consistent)

            assert by_id.status_code == 200, by_id.text
            assert by_id.json()["customer_id"] == "alice"
            assert by_id.json()["total"] == 2500
            assert by_id.json()["lines"][0]["unit_price"] == MUG["unit_price"]
            assert by_id.headers["etag"] == f'"{accepted["version"]}"'
            assert accepted["order_id"] in [found["order_id"] for found in search.json()["orders"]]
            assert counts.json()["counts"]["pending"] >= 1


async def test_without_a_token_answers_may_lag_but_are_never_wrong(
    suite: dict[str, str], tokens: TokenFactory
) -> None:
    alice, bob = tokens("alice"), tokens("bob")
    async with (
        httpx.AsyncClient(base_url=suite["command"], timeout=10) as command,
        httpx.AsyncClient(base_url=suite["query"], timeout=10) as query,
    ):

        async def place_and_read(token: str, customer: str) -> list[int]:
            accepted = await place(command, token)
            statuses = []
            for _ in range(5):
                response = await query.get(
                    f"/orders/{accepted['order_id']}", headers={"Authorization": f"Bearer {token}"}
                )
                statuses.append(response.status_code)
                if response.status_code == 200:
                    order = response.json()
                    assert order["customer_id"] == customer
                    assert order["status"] == "pending"
                    assert order["total"] == 2500
            return statuses

        results = await asyncio.gather(
            *(place_and_read(*who) for who in [(alice, "alice"), (bob, "bob")] * 5)
        )

    assert {status for statuses in results for status in statuses} <= {200, 404}


async def test_a_token_does_not_open_another_customers_order(
    suite: dict[str, str], tokens: TokenFactory
) -> None:
    alice, bob = tokens("alice"), tokens("bob")
    async with (
        httpx.AsyncClient(base_url=suite["command"], timeout=10) as command,
        httpx.AsyncClient(base_url=suite["query"], timeout=10) as query,
    ):
        accepted = await place(command, alice)
        as_bob = {"Authorization": f"Bearer {bob}", "X-Consistency-Token": str(accepted["position"])}

        by_id = await query.get(f"/orders/{accepted['order_id']}", headers=as_bob)
        search = await query.get("/orders", params={"q": accepted["order_id"]}, headers=as_bob)

    assert by_id.status_code == 404
    assert search.json()["orders"] == []
