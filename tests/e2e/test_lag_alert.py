"""End to end: `ProjectionLagging` fires in a real Prometheus while the projector falls behind, then resolves.

The command service, the relay and the projector run as processes on the shared
servers (a fresh database, topics and keys of their own); a Prometheus of the
test's own (Debian's `prometheus` binary) scrapes them every second and evaluates
the suite's `ProjectionLagging` rule: the same expression, with `for:` shortened
from 5 minutes to 5 seconds, in a rule file of the test's own.

Orders keep coming while the relay, the projector's only feed, is stopped
(SIGSTOP): the projector keeps running and keeps being scraped, and its lag (the
age of the oldest event in the store it has not applied) grows past 60 s. The
alert must fire; once the relay is let go on (SIGCONT) the projector catches up
and the alert must resolve.

Why not stop the projector itself: `projector_lag_seconds` is computed by the
projector at scrape time from what it applied. A stopped projector answers no
scrape, so its series go stale and `ProjectionLagging` cannot fire; `ServiceDown`
is the alert for that case (docs/observability.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from eventstore import migrate
from readmodels.search import connect_search
from redis.asyncio import Redis
from testkit.harness import ServiceProcess, running_service, token_factory
from testkit.prometheus import running_prometheus

from services.command.tests.support import command_headers

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "fulfilment.rules.yml"
SECRET = "e2e-secret-that-is-long-enough-for-hs256!"
ISSUER, AUDIENCE = "https://issuer.e2e", "fulfilment-e2e"
ALERT = "ProjectionLagging"
# The rule's threshold is 60 s of lag; a minute and a half more covers `for:`, scrapes and a busy machine.
FIRE_BOUND = 150.0
RESOLVE_BOUND = 60.0


def lag_rule_only() -> dict[str, Any]:
    """A rule file holding the suite's `ProjectionLagging`, its `for:` shortened to 5 s."""
    rules = [r for group in yaml.safe_load(RULES.read_text())["groups"] for r in group["rules"]]
    [rule] = [r for r in rules if r.get("alert") == ALERT]
    return {"groups": [{"name": "lag", "rules": [{**rule, "for": "5s"}]}]}


async def alert_state(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    """The `ProjectionLagging` alerts Prometheus has now (pending or firing)."""
    answer = (await client.get("/api/v1/alerts")).json()
    assert answer["status"] == "success", answer
    return [alert for alert in answer["data"]["alerts"] if alert["labels"]["alertname"] == ALERT]


async def lag_seen(client: httpx.AsyncClient) -> bool:
    """Prometheus has scraped the projector's lag of both projections."""
    answer = (await client.get("/api/v1/query", params={"query": "projector_lag_seconds"})).json()
    return {sample["metric"].get("projection") for sample in answer["data"]["result"]} == {"redis", "search"}


class Load:
    """Places an order every 0.2 s until stopped; counts what the command service accepted."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.tokens = token_factory(secret=SECRET, issuer=ISSUER, audience=AUDIENCE)
        self.placed = 0

    async def prepare(self) -> None:
        staff = self.tokens("staff-1", roles=("staff",))
        mug = {"sku": "LAG-MUG", "name": "Mug", "unit_price": 300, "currency": "EUR"}
        product = await self.client.post("/products", json=mug, headers=command_headers(staff))
        assert product.status_code == 201, product.text
        receipt = await self.client.post(
            "/products/LAG-MUG/receipts", json={"quantity": 100_000}, headers=command_headers(staff)
        )
        assert receipt.status_code == 200, receipt.text

    async def run(self) -> None:
        while True:
            body = {"lines": [{"sku": "LAG-MUG", "quantity": 1}], "currency": "EUR"}
            placed = await self.client.post(
                "/orders", json=body, headers=command_headers(self.tokens(f"customer-{self.placed % 7}"))
            )
            assert placed.status_code == 201, placed.text
            self.placed += 1
            await asyncio.sleep(0.2)


@pytest.fixture
async def processes(
    fresh_database_url: str, redis_url: str, kafka_bootstrap_servers: str, search_url: str, tmp_path: Path
) -> AsyncIterator[dict[str, ServiceProcess]]:
    await migrate(fresh_database_url)
    tag = uuid.uuid4().hex[:8]
    topics, keys = f"lag{tag}.", f"lag{tag}-"
    servers = {
        "DATABASE_URL": fresh_database_url, "REDIS_URL": redis_url,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap_servers, "SEARCH_URL": search_url, "LOG_LEVEL": "WARNING",
    }  # fmt: skip
    command_env = {
        **servers, "JWT_SECRET": SECRET, "JWT_ISSUER": ISSUER, "JWT_AUDIENCE": AUDIENCE,
        "COMMAND_RATE_LIMIT_PER_SECOND": "10000", "COMMAND_RATE_LIMIT_BURST": "10000",
    }  # fmt: skip
    relay_env = {**servers, "RELAY_TOPIC_PREFIX": topics, "RELAY_LOCK_KEY": str(random.randrange(1, 2**62))}
    projector_env = {
        **servers, "PROJECTOR_TOPIC_PREFIX": topics, "PROJECTOR_GROUP_PREFIX": f"{topics}projector.",
        "PROJECTOR_DEAD_LETTER_TOPIC": f"{topics}projector.dlq", "PROJECTOR_KEY_PREFIX": keys,
    }  # fmt: skip
    async with (
        running_service("command_service", command_env, log=tmp_path / "command.log",
                        port_variable="COMMAND_PORT") as command,
        running_service("relay_service", relay_env, log=tmp_path / "relay.log",
                        port_variable="RELAY_PORT") as relay,
        running_service("projector_service", projector_env, log=tmp_path / "projector.log",
                        port_variable="PROJECTOR_PORT") as projector,
    ):  # fmt: skip
        try:
            yield {"command": command, "relay": relay, "projector": projector}
        finally:
            relay.send(signal.SIGCONT)  # a stopped process would not hear the SIGTERM that ends it
    redis = Redis.from_url(redis_url)
    stale = [key async for key in redis.scan_iter(match=f"{keys}*")]
    if stale:
        await redis.unlink(*stale)
    await redis.aclose()
    search = await connect_search(search_url)
    for index in await search.indices(f"{keys}*"):
        await search.delete_index(index)
    await search.close()


async def test_projection_lagging_fires_while_the_feed_is_stopped_and_resolves_after(
    processes: dict[str, ServiceProcess], tmp_path: Path
) -> None:
    projector, relay = processes["projector"], processes["relay"]
    target = projector.url.removeprefix("http://")
    async with (
        running_prometheus(tmp_path / "prometheus", {"projector": target}, rules=lag_rule_only()) as url,
        httpx.AsyncClient(base_url=url, timeout=5) as prom,
        httpx.AsyncClient(base_url=processes["command"].url, timeout=10) as command,
    ):
        load = Load(command)
        await load.prepare()
        writing = asyncio.create_task(load.run())
        try:
            # Under load and with the feed running, the projector keeps up: lag is scraped, no alert.
            deadline = time.monotonic() + 60
            while not await lag_seen(prom):
                assert time.monotonic() < deadline, projector.log_tail()
                assert not writing.done(), writing
                await asyncio.sleep(0.5)
            await asyncio.sleep(3)
            assert await alert_state(prom) == []

            relay.send(signal.SIGSTOP)
            stopped_at = time.monotonic()
            firing: list[dict[str, Any]] = []
            while not firing:
                waited = time.monotonic() - stopped_at
                assert waited < FIRE_BOUND, (await alert_state(prom), projector.log_tail())
                assert not writing.done(), writing
                await asyncio.sleep(1)
                firing = [alert for alert in await alert_state(prom) if alert["state"] == "firing"]
            # The lag is a minute at least: it cannot fire sooner than the threshold allows.
            assert time.monotonic() - stopped_at >= 60
            assert {alert["labels"]["projection"] for alert in firing} == {"redis", "search"}
            assert all(alert["labels"]["severity"] == "warning" for alert in firing)
            placed_while_stopped = load.placed

            relay.send(signal.SIGCONT)
            resumed_at = time.monotonic()
            while await alert_state(prom):
                assert time.monotonic() - resumed_at < RESOLVE_BOUND, (
                    await alert_state(prom),
                    relay.log_tail(),
                    projector.log_tail(),
                )
                await asyncio.sleep(1)
            assert load.placed > placed_while_stopped, "orders kept coming after the relay was let go on"
        finally:
            writing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writing
