"""Rate limiting per subject (and per address without a valid token): 429 over the rate, allowance
leased from Redis and shared by every instance."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from urllib.parse import urlsplit

import httpx
import pytest
import redis.asyncio as redis
from command_service.app import create_app
from command_service.settings import CommandSettings
from servicekit.errors import RateLimited
from servicekit.ratelimit import RateLimiter
from testkit.harness import TcpProxy, TokenFactory, lifespan_of

from services.command.tests.conftest import make_settings
from services.command.tests.support import ORDER_BODY, command_headers

PREFIX = "ratelimit:command:"


@pytest.fixture
async def limited_client(
    fresh_database_url: str, settings_for: Callable[..., CommandSettings]
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings_for(fresh_database_url, rate_limit_per_second=0.5, rate_limit_burst=3))
    async with (
        lifespan_of(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://command.test") as http,
    ):
        yield http


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


async def spent(client: redis.Redis, subject: str, per_second: float) -> float:
    """How many requests' worth of allowance the subject has paid for in Redis and not yet regained."""
    tat = await client.get(PREFIX + subject)
    if tat is None:
        return 0.0
    seconds, micros = await client.time()
    return (int(tat) - (seconds * 1_000_000 + micros)) * per_second / 1_000_000


async def test_a_subject_over_its_rate_gets_429_with_retry_after_while_others_go_on(
    limited_client: httpx.AsyncClient, tokens: TokenFactory
) -> None:
    greedy, patient = tokens(f"greedy-{uuid.uuid4()}"), tokens(f"patient-{uuid.uuid4()}")

    statuses = [
        (await limited_client.post("/orders", json=ORDER_BODY, headers=command_headers(greedy))).status_code
        for _ in range(4)
    ]
    limited = await limited_client.post("/orders", json=ORDER_BODY, headers=command_headers(greedy))
    other = await limited_client.post("/orders", json=ORDER_BODY, headers=command_headers(patient))

    assert statuses == [201, 201, 201, 429]
    assert limited.status_code == 429
    assert limited.json()["code"] == "rate-limited"
    assert 1 <= int(limited.headers["retry-after"]) <= 3
    assert limited.json()["detail"] == f"too many requests: retry in {limited.headers['retry-after']} s"
    assert other.status_code == 201


async def test_requests_without_a_valid_token_are_limited_per_client_address(
    fresh_database_url: str, settings_for: Callable[..., CommandSettings], tokens: TokenFactory
) -> None:
    app = create_app(settings_for(fresh_database_url, rate_limit_per_second=0.5, rate_limit_burst=3))
    address = f"192.0.2.{uuid.uuid4().int % 250 + 1}-{uuid.uuid4().hex[:6]}"
    async with (
        lifespan_of(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, client=(address, 4000)), base_url="http://command.test"
        ) as anonymous,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, client=(f"{address}-other", 4000)),
            base_url="http://command.test",
        ) as neighbour,
    ):
        statuses = [(await anonymous.post("/orders", json=ORDER_BODY)).status_code for _ in range(4)]
        forged = await anonymous.post("/orders", json=ORDER_BODY, headers={"Authorization": "Bearer x.y.z"})
        other = await neighbour.post("/orders", json=ORDER_BODY)

    assert statuses == [401, 401, 401, 429]
    assert forged.status_code == 429
    assert other.status_code == 401


async def test_leased_allowance_never_lets_a_subject_past_its_burst_across_instances(
    redis_client: redis.Redis,
) -> None:
    subject = f"spread-{uuid.uuid4()}"
    instances = [RateLimiter(redis_client, per_second=0.01, burst=25, lease=10) for _ in range(3)]
    allowed = 0
    try:
        for _ in range(20):
            for limiter in instances:
                try:
                    await limiter.check(subject)
                    allowed += 1
                except RateLimited:
                    pass
                await asyncio.sleep(0)  # let background refills run, as they would between requests
    finally:
        for limiter in instances:
            await limiter.close()

    # Every request was paid for in Redis: the three instances together let through at most the burst.
    assert 20 <= allowed <= 25


async def test_concurrent_first_requests_of_a_subject_share_one_lease(redis_client: redis.Redis) -> None:
    # One request a second regained, so the allowance paid for stays put while the test runs.
    limiter = RateLimiter(redis_client, per_second=1, burst=100, lease=10)
    subject = f"eager-{uuid.uuid4()}"
    try:
        await asyncio.gather(*(limiter.check(subject) for _ in range(60)))
    finally:
        await limiter.close()

    # 60 requests sharing leases pay for 6 of them, plus at most two taken ahead in the
    # background. A lease each would have spent the whole burst (and refused the rest);
    # a limiter that failed open would have paid for nothing.
    assert 60 <= await spent(redis_client, subject, per_second=1) <= 80


async def test_a_busy_subject_takes_its_next_lease_before_it_runs_out(redis_client: redis.Redis) -> None:
    limiter = RateLimiter(redis_client, per_second=1, burst=100, lease=10)
    subject = f"steady-{uuid.uuid4()}"
    try:
        for _ in range(6):
            await limiter.check(subject)
        await limiter.close()  # the refill that half a lease started
        paid = await spent(redis_client, subject, per_second=1)
        for _ in range(14):
            await limiter.check(subject)  # 4 left of the first lease, 10 of the second: no wait
        await limiter.close()
    finally:
        await limiter.close()

    assert 19 <= paid <= 20
    # The last request of the second lease found it half used and took a third in the background.
    assert 29 <= await spent(redis_client, subject, per_second=1) <= 30


async def test_a_refused_background_refill_ends_in_429_once_the_lease_is_used(
    redis_client: redis.Redis,
) -> None:
    limiter = RateLimiter(redis_client, per_second=0.01, burst=12, lease=10)
    subject = f"capped-{uuid.uuid4()}"
    outcomes = []
    try:
        for _ in range(14):
            try:
                await limiter.check(subject)
                outcomes.append("ok")
            except RateLimited:
                outcomes.append("429")
            await asyncio.sleep(0)
    finally:
        await limiter.close()

    # The lease of 10, then the refill refused (10 more would pass 12), then 2 single requests.
    assert outcomes == ["ok"] * 12 + ["429"] * 2


# Run in a separate process: checks the limiter `REQUESTS` times (a few at once) and prints how many passed.
_WORKER = """
import asyncio, sys
import redis.asyncio as redis
from servicekit.errors import RateLimited
from servicekit.ratelimit import RateLimiter

async def main(url, subject, requests):
    client = redis.Redis.from_url(url)
    limiter = RateLimiter(client, per_second=0.01, burst=50, lease=10)
    allowed = 0

    async def one():
        nonlocal allowed
        try:
            await limiter.check(subject)
            allowed += 1
        except RateLimited:
            pass
        await asyncio.sleep(0.001)

    for _ in range(requests // 4):
        await asyncio.gather(*(one() for _ in range(4)))
    await limiter.close()
    await client.aclose()
    print(allowed)

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


async def test_two_processes_together_never_let_a_subject_past_its_burst(redis_url: str) -> None:
    subject = f"two-processes-{uuid.uuid4()}"

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", _WORKER, redis_url, subject, "100"],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )

    first, second = await asyncio.gather(asyncio.to_thread(run), asyncio.to_thread(run))

    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    allowed = [json.loads(first.stdout), json.loads(second.stdout)]
    # 200 requests for a burst of 50: each process alone would have let 50 through.
    assert sum(allowed) <= 50
    assert sum(allowed) >= 40


async def test_commands_go_on_while_redis_is_cut_or_hangs_and_are_paid_for_again_once_it_is_back(
    fresh_database_url: str,
    redis_url: str,
    redis_client: redis.Redis,
    tokens: TokenFactory,
) -> None:
    target = urlsplit(redis_url)
    proxy = await TcpProxy(target.hostname or "127.0.0.1", target.port or 6379).start()
    through_proxy = f"redis://127.0.0.1:{proxy.port}{target.path}"
    # Half a request a second regained: what is paid for while the test runs stays paid.
    settings = make_settings(
        fresh_database_url, through_proxy, rate_limit_per_second=0.5, rate_limit_burst=100
    )
    app = create_app(settings)
    subject = f"outage-{uuid.uuid4()}"
    headers = {"Authorization": f"Bearer {tokens(subject)}"}

    async def place(count: int) -> list[int]:
        answers = await asyncio.gather(
            *(http.post("/orders", json=ORDER_BODY, headers={**headers, "Idempotency-Key": str(uuid.uuid4())})
              for _ in range(count))
        )  # fmt: skip
        return [answer.status_code for answer in answers]

    try:
        async with (
            lifespan_of(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://command.test") as http,
        ):
            assert await place(5) == [201] * 5
            paid_before = await spent(redis_client, subject, per_second=0.5)
            assert paid_before >= 5

            # Redis gone (connections reset, new ones refused): the limiter fails open.
            await proxy.stop()
            await asyncio.sleep(1.1)  # the lease taken before runs out
            assert await place(8) == [201] * 8
            assert (await http.get("/health/ready")).status_code == 200

            # Redis hanging: each call gives up after the client's 1 s timeout, requests still pass.
            await proxy.start()
            proxy.freeze()
            started = asyncio.get_running_loop().time()
            assert await place(8) == [201] * 8
            assert asyncio.get_running_loop().time() - started < 5
            assert (await http.get("/health/ready")).status_code == 200

            # Back: the limiter reconnects by itself and requests are paid for in Redis again.
            await proxy.stop()
            await proxy.start()
            await asyncio.sleep(1.1)
            assert await place(5) == [201] * 5
            assert await spent(redis_client, subject, per_second=0.5) > paid_before + 4
    finally:
        await proxy.stop()
