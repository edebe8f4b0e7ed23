"""End to end: an HTTP command reaches the read models, and its position is a read-your-writes token.

The command service, the relay and the projector run as real processes against
real PostgreSQL, Redis, Kafka and the search engine. A client places an order
and waits, with the position the command service answered, until the projector
says it has reached it; then both read models show the order.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from eventstore import migrate
from readmodels.keyspace import Keyspace, wait_for_position
from readmodels.orders import orders_alias
from readmodels.search import connect_search
from redis.asyncio import Redis
from testkit.harness import running_service, token_factory

from services.command.tests.support import command_headers

pytestmark = pytest.mark.slow

SECRET = "e2e-secret-that-is-long-enough-for-hs256!"
ISSUER, AUDIENCE = "https://issuer.e2e", "fulfilment-e2e"


@pytest.fixture
async def suite(
    fresh_database_url: str, redis_url: str, kafka_bootstrap_servers: str, search_url: str, tmp_path: Path
) -> AsyncIterator[dict[str, str]]:
    await migrate(fresh_database_url)
    tag = uuid.uuid4().hex[:8]
    topics, keys = f"e2e{tag}.", f"e2e{tag}-"
    servers = {
        "DATABASE_URL": fresh_database_url, "REDIS_URL": redis_url,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap_servers, "SEARCH_URL": search_url,
    }  # fmt: skip
    command_env = {**servers, "JWT_SECRET": SECRET, "JWT_ISSUER": ISSUER, "JWT_AUDIENCE": AUDIENCE}
    relay_env = {**servers, "RELAY_TOPIC_PREFIX": topics, "RELAY_LOCK_KEY": str(random.randrange(1, 2**62))}
    projector_env = {
        **servers, "PROJECTOR_TOPIC_PREFIX": topics, "PROJECTOR_GROUP_PREFIX": f"{topics}projector.",
        "PROJECTOR_DEAD_LETTER_TOPIC": f"{topics}projector.dlq", "PROJECTOR_KEY_PREFIX": keys,
    }  # fmt: skip
    async with (
        running_service("command_service", command_env, log=tmp_path / "command.log",
                        port_variable="COMMAND_PORT") as command,
        running_service("relay_service", relay_env, log=tmp_path / "relay.log", port_variable="RELAY_PORT"),
        running_service("projector_service", projector_env, log=tmp_path / "projector.log",
                        port_variable="PROJECTOR_PORT"),
    ):  # fmt: skip
        yield {"command": command.url, "keys": keys}
    redis = Redis.from_url(redis_url)
    stale = [key async for key in redis.scan_iter(match=f"{keys}*")]
    if stale:
        await redis.unlink(*stale)
    await redis.aclose()
    search = await connect_search(search_url)
    for index in await search.indices(f"{keys}*"):
        await search.delete_index(index)
    await search.close()


async def test_a_placed_order_is_in_both_read_models_once_its_position_is_reached(
    suite: dict[str, str], redis_url: str, search_url: str
) -> None:
    tokens = token_factory(secret=SECRET, issuer=ISSUER, audience=AUDIENCE)
    async with httpx.AsyncClient(base_url=suite["command"], timeout=10) as client:
        pot = {"sku": "E2E-Pot", "name": "Cast iron tea pot", "unit_price": 3990, "currency": "EUR"}
        product = await client.post(
            "/products", json=pot, headers=command_headers(tokens("staff-1", roles=("staff",)))
        )
        assert product.status_code == 201, product.text
        # No price on the line: the order pays the catalogue's.
        lines = [{"sku": "E2E-Pot", "quantity": 2}]
        placed = await client.post(
            "/orders", json={"lines": lines, "currency": "EUR"}, headers=command_headers(tokens("customer-7"))
        )
        assert placed.status_code == 201, placed.text
    order = placed.json()
    keyspace = Keyspace(suite["keys"])
    redis = Redis.from_url(redis_url)
    search = await connect_search(search_url)
    try:
        for projection in ("redis", "search"):
            reached = await wait_for_position(redis, keyspace, projection, order["position"], timeout=60)
            assert reached, projection
        keys = await keyspace.live_models(redis)
        summary = await redis.hgetall(keys.order(order["order_id"]))
        assert summary[b"status"] == b"pending"
        assert summary[b"total"] == b"7980"
        assert summary[b"customer_id"].endswith(b"customer-7")
        await search.refresh(orders_alias(suite["keys"]))
        hits = await search.search(orders_alias(suite["keys"]), {"match": {"lines.product_name": "tea pots"}})
        assert [hit["order_id"] for hit in hits] == [order["order_id"]]
        [line] = hits[0]["lines"]
        assert line["product_name"] == "Cast iron tea pot"
        assert (line["unit_price"], line["line_total"], hits[0]["total"]) == (3990, 7980, 7980)
    finally:
        await redis.aclose()
        await search.close()
