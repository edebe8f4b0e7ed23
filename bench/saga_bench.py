"""Saga throughput, duration and deadline accuracy against real PostgreSQL, Kafka and processes.

    .venv/bin/python bench/saga_bench.py [--orders 300] [--clients 16] [--rate R] [--deadlines 10000]

1. End to end: the command service, the relay, the payment sandbox (no latency)
   and the saga run as processes. `--clients` clients place `--orders` orders as
   fast as the command service takes them; the saga drives each to confirmation.
   Side by side, on the same services, a script drives the same flow itself:
   place, reserve, request payment, record the authorisation, confirm, commit
   (no provider round trip). Reported: sagas completed per second, the ratio,
   p50/p99 duration from placing the order to its confirmation. With `--rate`
   the orders (and the script's flows) start at that steady rate instead.
2. Deadlines: `--deadlines` payment deadlines due over the next 10 s in the
   saga's timer table; two timer claimers (separate pools, as two instances)
   claim and mark them fired with the service's poll interval and batch size.
   Reported: p50/p99 delay after due. Then the same number of already-due rows:
   claim-and-fire rows per second with two claimers.
3. With `--service-deadlines N`: N sagas waiting for payment, `--service-due` of
   them due over `--service-spread` seconds, fired by two orchestrators (the
   service's own code, in this process, against the command service in-process):
   p50/p99 of `DeadlineFired.at - due_at`.

Uses its own databases and topics, dropped afterwards. Prints progress on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import msgspec
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from command_service.app import create_app as create_command_app
from command_service.settings import CommandSettings
from eventstore import PostgresEventStore, connect, migrate
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry
from saga_service.commands import CommandClient, ServiceToken
from saga_service.events import SagaLine, build_saga_registry
from saga_service.migrations import migrate_saga_schema as migrate_saga
from saga_service.orchestrator import Orchestrator
from saga_service.providers import SandboxProvider
from saga_service.resilience import BreakerMetrics, CircuitBreaker, RetryPolicy
from saga_service.saga import Begin, RecordStep, saga_decider
from saga_service.steps import RESERVED, Reserve
from saga_service.streams import SagaStreams
from saga_service.timers import Timers
from testkit.databases import scratch_database
from testkit.harness import ServiceProcess, lifespan_of, running_service, token_factory

SECRET = "bench-secret-that-is-long-enough-for-hs256"  # noqa: S105 - a local benchmark key
ISSUER, AUDIENCE = "bench", "bench"
PROVIDER_SECRET = "bench-provider-secret-0123"  # noqa: S105


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


@contextlib.asynccontextmanager
async def suite(
    store_url: str, saga_url: str, logs: Path, concurrency: int
) -> AsyncIterator[dict[str, ServiceProcess]]:
    await migrate(store_url)
    kafka = os.environ["KAFKA_BOOTSTRAP_SERVERS"]
    prefix = f"bench{uuid.uuid4().hex[:8]}."
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka)
    await admin.start()
    await admin.create_topics([NewTopic(f"{prefix}{name}", 6, 1) for name in ("order", "stock", "payment")])
    await admin.close()
    jwt = {"JWT_SECRET": SECRET, "JWT_ISSUER": ISSUER, "JWT_AUDIENCE": AUDIENCE, "ACCESS_LOG": "false"}
    common = {"COMMAND_RATE_LIMIT_PER_SECOND": "100000", "COMMAND_RATE_LIMIT_BURST": "100000"}
    async with contextlib.AsyncExitStack() as stack:

        async def start(module: str, env: dict[str, str], port: str) -> ServiceProcess:
            log = logs / f"{module}.log"
            return await stack.enter_async_context(
                running_service(module, env, log=log, port_variable=port, ready=False)
            )

        command = await start("command_service", {"DATABASE_URL": store_url, **jwt, **common}, "COMMAND_PORT")
        relay = await start(
            "relay_service",
            {
                "DATABASE_URL": store_url,
                "RELAY_TOPIC_PREFIX": prefix,
                "RELAY_LOCK_KEY": str(random.randrange(1, 2**62)),
            },
            "RELAY_PORT",
        )
        sandbox = await start(
            "saga_service.sandbox",
            {
                "SANDBOX_SECRET": PROVIDER_SECRET,
                "SANDBOX_LATENCY_MS": "0",
                "SANDBOX_JITTER_MS": "0",
                "ACCESS_LOG": "false",
            },
            "SANDBOX_PORT",
        )
        saga = await start(
            "saga_service",
            {
                "SAGA_DATABASE_URL": saga_url,
                "SAGA_COMMAND_URL": command.url,
                "SAGA_PROVIDER_URL": sandbox.url,
                "SAGA_PROVIDER_SECRET": PROVIDER_SECRET,
                "SAGA_TOPIC_PREFIX": prefix,
                "SAGA_GROUP_ID": f"saga-{prefix}",
                "SAGA_ACCESS_LOG": "false",
                # As many sagas in flight as the script has flows.
                "SAGA_CONCURRENCY": str(concurrency),
                **jwt,
            },
            "SAGA_PORT",
        )
        await asyncio.gather(*(process.ready(120) for process in (command, relay, sandbox, saga)))
        yield {"command": command, "saga": saga}


async def seed(client: httpx.AsyncClient, staff: str, prices: dict[str, int]) -> None:
    for sku, price in prices.items():
        for path, body in (
            ("/products", {"sku": sku, "name": sku, "unit_price": price, "currency": "EUR"}),
            (f"/products/{sku}/receipts", {"quantity": 100_000}),
        ):
            response = await client.post(path, json=body, headers=headers(staff))
            response.raise_for_status()


def headers(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Idempotency-Key": str(uuid.uuid4())}


# Orders of two lines drawn from this many products: enough that two orders rarely contend for a
# stock stream (a few hot SKUs measure the command service's contention retries instead).
# Their catalogue prices (EUR cents), which orders pay.
PRICES = {f"P{n}": 100 + 10 * n for n in range(50)}


def an_order() -> dict[str, Any]:
    """One unit each of two products; no prices: the catalogue's are paid."""
    lines = [{"sku": sku, "quantity": 1} for sku in random.sample(list(PRICES), 2)]
    return {"lines": lines, "currency": "EUR"}


def total_of(order: dict[str, Any]) -> int:
    """What the order costs at the catalogue's prices: the payment the script requests."""
    return sum(PRICES[line["sku"]] * line["quantity"] for line in order["lines"])


async def offer(count: int, clients: int, rate: float | None, job: Callable[[], Awaitable[None]]) -> None:
    """Run `job` `count` times: by `clients` workers back to back, or started at `rate` per second."""
    if rate is None:
        queue = list(range(count))

        async def worker() -> None:
            while queue:
                queue.pop()
                await job()

        await asyncio.gather(*(worker() for _ in range(clients)))
        return
    began = time.monotonic()
    jobs = []
    for n in range(count):
        await asyncio.sleep(max(0.0, began + n / rate - time.monotonic()))
        jobs.append(asyncio.create_task(job()))
    await asyncio.gather(*jobs)


async def run_saga(
    command_url: str, saga_url: str, orders: int, clients: int, rate: float | None
) -> tuple[float, list[float]]:
    tokens = token_factory(secret=SECRET, issuer=ISSUER, audience=AUDIENCE)
    customer = tokens("bench-customer", ["customer"])
    placed: dict[str, float] = {}
    async with httpx.AsyncClient(base_url=command_url, timeout=30) as client:
        started = time.time()

        async def place() -> None:
            begun = time.time()
            response = await client.post("/orders", json=an_order(), headers=headers(customer))
            response.raise_for_status()
            placed[response.json()["order_id"]] = begun

        await offer(orders, clients, rate, place)
    connection = await asyncpg.connect(saga_url)
    try:
        while True:
            rows = await connection.fetch(
                "SELECT saga_id::text AS id, extract(epoch FROM updated_at) AS done FROM saga.sagas "
                "WHERE phase = 'done'"
            )
            if len(rows) >= orders:
                break
            await asyncio.sleep(0.2)
        outcomes = await connection.fetch("SELECT outcome, count(*) FROM saga.sagas GROUP BY outcome")
        assert {row["outcome"]: row["count"] for row in outcomes} == {"confirmed": orders}, outcomes
    finally:
        await connection.close()
    finished = max(float(row["done"]) for row in rows)
    durations = [float(row["done"]) - placed[row["id"]] for row in rows]
    return orders / (finished - started), durations


async def run_direct(
    command_url: str, orders: int, clients: int, rate: float | None
) -> tuple[float, list[float]]:
    tokens = token_factory(secret=SECRET, issuer=ISSUER, audience=AUDIENCE)
    customer = tokens("bench-customer", ["customer"])
    service = tokens("bench-script", ["service"])
    durations: list[float] = []
    async with httpx.AsyncClient(base_url=command_url, timeout=30) as client:

        async def post(path: str, body: Any, token: str) -> httpx.Response:
            response = await client.post(path, json=body, headers=headers(token))
            response.raise_for_status()
            return response

        async def flow() -> None:
            begun = time.time()
            body = an_order()
            order = (await post("/orders", body, customer)).json()["order_id"]
            for line in body["lines"]:
                reservation = {"order_id": order, "quantity": line["quantity"]}
                await post(f"/products/{line['sku']}/reservations", reservation, service)
            payment = {"order_id": order, "amount": total_of(body), "currency": "EUR"}
            await post("/payments", payment, service)
            await post(f"/payments/{order}/authorization", {"provider_reference": "direct"}, service)
            await post(f"/orders/{order}/confirm", None, service)
            for line in body["lines"]:
                await post(f"/products/{line['sku']}/reservations/{order}/commit", None, service)
            durations.append(time.time() - begun)

        started = time.time()
        await offer(orders, clients, rate, flow)
        return orders / (time.time() - started), durations


async def end_to_end(server: str, orders: int, clients: int, rate: float | None) -> None:
    with tempfile.TemporaryDirectory() as logs:
        async with (
            scratch_database(server, "bench") as store_url,
            scratch_database(server, "bench") as saga_url,
            suite(store_url, saga_url, Path(logs), clients) as processes,
        ):
            command_url = processes["command"].url
            staff = token_factory(secret=SECRET, issuer=ISSUER, audience=AUDIENCE)("bench-staff", ["staff"])
            async with httpx.AsyncClient(base_url=command_url, timeout=30) as client:
                await seed(client, staff, PRICES)
            progress(f"saga: {orders} orders, {clients} clients")
            saga_rate, saga_durations = await run_saga(command_url, saga_url, orders, clients, rate)
            # The saga would take the script's orders too: it stops first.
            await processes["saga"].stop()
            progress("direct script")
            direct_rate, direct_durations = await run_direct(command_url, orders, clients, rate)
    load = f"placed at {rate:g}/s" if rate else f"{clients} concurrent clients back to back"
    print(f"\nEnd to end: {orders} orders of 2 lines, {load}\n")
    print("| path | sagas/s | p50 ms | p99 ms |\n|---|--:|--:|--:|")
    for name, rate, durations in (
        ("saga", saga_rate, saga_durations),
        ("direct script", direct_rate, direct_durations),
    ):
        p50, p99 = percentile(durations, 0.5) * 1000, percentile(durations, 0.99) * 1000
        print(f"| {name} | {rate:,.1f} | {p50:,.0f} | {p99:,.0f} |")
    print(f"\nsaga / direct: {saga_rate / direct_rate:.0%}")


async def claimer(
    timers: Timers, pool: Any, stop: asyncio.Event, delays: list[float], poll: float, batch: int
) -> int:
    fired = 0
    while not stop.is_set():
        claimed = await timers.claim(batch)
        now = time.time()
        for timer in claimed:
            delays.append(now - timer.due_at.timestamp())
        if claimed:
            # Marked fired in one round trip per batch: the claiming machinery alone. The service
            # fires each deadline with its saga's append (measured by the end-to-end part).
            await pool.executemany(
                "UPDATE saga.timers SET fired_at = now(), fired_by = $2 WHERE saga_id = $1 AND kind = $3",
                [(timer.saga_id, timers.owner, timer.kind) for timer in claimed],
            )
            fired += len(claimed)
        if len(claimed) < batch:
            await asyncio.sleep(poll)
    return fired


async def deadlines(server: str, count: int, poll: float, batch: int) -> None:
    async with scratch_database(server, "bench") as url:
        await migrate_saga(url)
        pools = [await connect(url, min_size=1, max_size=4) for _ in range(2)]
        instances = [
            Timers(pool, owner=f"i{n}", lease_seconds=30, wake_grace=10) for n, pool in enumerate(pools)
        ]
        try:
            for label, spread in (("accuracy", 10.0), ("throughput", 0.0)):
                await pools[0].execute("TRUNCATE saga.timers")
                # Due from 3 s after now: the insert is over by then, and no row starts out late.
                base = datetime.now(UTC) + timedelta(seconds=3 if spread else 0)
                rows = [
                    (uuid.uuid4(), "payment", base + timedelta(seconds=spread * n / count))
                    for n in range(count)
                ]
                await pools[0].copy_records_to_table(
                    "timers", schema_name="saga", columns=["saga_id", "kind", "due_at"], records=rows
                )
                stop = asyncio.Event()
                delays: list[float] = []
                started = time.perf_counter()
                tasks = [
                    asyncio.create_task(claimer(timers, pool, stop, delays, poll, batch))
                    for timers, pool in zip(instances, pools, strict=True)
                ]
                while len(delays) < count:  # noqa: ASYNC110 - polling a list the claimers fill
                    await asyncio.sleep(0.05)
                elapsed = time.perf_counter() - started
                stop.set()
                fired = await asyncio.gather(*tasks)
                left = await pools[0].fetchval("SELECT count(*) FROM saga.timers WHERE fired_at IS NULL")
                once = await pools[0].fetchval(
                    "SELECT count(DISTINCT saga_id) FROM saga.timers WHERE fired_at IS NOT NULL"
                )
                assert (left, once, sum(fired)) == (0, count, count)
                if label == "accuracy":
                    print(f"\nDeadlines: {count:,} due over {spread:g} s, 2 claimers, ", end="")
                    print(f"poll {poll * 1000:g} ms, batch {batch}\n")
                    p50, p99 = percentile(delays, 0.5) * 1000, percentile(delays, 0.99) * 1000
                    print("| measure | value |\n|---|--:|")
                    print(
                        f"| delay after due, p50 | {p50:,.0f} ms |\n| delay after due, p99 | {p99:,.0f} ms |"
                    )
                    print(f"| delay after due, max | {max(delays) * 1000:,.0f} ms |")
                    print(f"| split between claimers | {fired[0]:,} / {fired[1]:,} |")
                else:
                    print(f"| claim and fire {count:,} rows due at once | {count / elapsed:,.0f} rows/s |")
                    print(f"| split between claimers | {fired[0]:,} / {fired[1]:,} |")
        finally:
            for pool in pools:
                await pool.close()


async def service_deadlines(server: str, pending: int, due: int, spread: float, poll: float) -> None:
    """Deadlines fired by two orchestrators (the service's own code, in this process): `pending`
    waiting sagas, of which `due` fall due over `spread` seconds and the rest an hour later. The delay
    is `DeadlineFired.at - due_at` from each saga's stream; each fired deadline then compensates
    through the command service (in-process), whose refusals (the orders do not exist) end it."""
    async with scratch_database(server, "bench") as store_url, scratch_database(server, "bench") as saga_url:
        await migrate(store_url)
        await migrate(saga_url)
        await migrate_saga(saga_url)
        command_settings = msgspec.convert(
            {
                "database_url": store_url,
                "redis_url": os.environ["REDIS_URL"],
                "jwt_issuer": ISSUER,
                "jwt_audience": AUDIENCE,
                "jwt_secret": SECRET,
                "rate_limit_per_second": 100000.0,
                "rate_limit_burst": 100000,
                "access_log": False,
            },
            CommandSettings,
        )
        command_app = create_command_app(command_settings)
        async with (
            lifespan_of(command_app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=command_app), base_url="http://command"
            ) as http,
            contextlib.AsyncExitStack() as stack,
        ):
            timeout = timedelta(seconds=30)
            instances = [
                await stack.enter_async_context(orchestrator(saga_url, f"i{n}", http, timeout))
                for n in range(2)
            ]
            first = instances[0]
            progress(f"seeding {pending:,} waiting sagas")

            async def seed_saga(due_at: datetime) -> None:
                order_id = uuid.uuid4()
                at = datetime.now(UTC)
                lines = (SagaLine(sku="s", quantity=1),)
                begin = Begin(order_id=order_id, customer_id="c", lines=lines, currency="EUR", total=1, at=at)
                await first.record(order_id, begin)
                # PaymentAwaited.due_at = the answer's time + the timeout: back-dated to land on `due_at`.
                reserved = RecordStep(step=Reserve("s"), result=RESERVED, at=due_at - timeout)
                await first.record(order_id, reserved)

            async def seed(due_times: list[datetime]) -> None:
                async def seeder() -> None:
                    while due_times:
                        await seed_saga(due_times.pop())

                await asyncio.gather(*(seeder() for _ in range(16)))

            # The ones due an hour later first; then the ones that fall due, from a few seconds after
            # their seeding can have ended.
            await seed([datetime.now(UTC) + timedelta(hours=1)] * (pending - due))
            base = datetime.now(UTC) + timedelta(seconds=5 + due / 50)
            await seed([base + timedelta(seconds=spread * n / due) for n in range(due)])
            # The seeding's own wake-ups (request-payment is pending) would fire first: the saga waits.
            pool = first.streams.pool
            await pool.execute("DELETE FROM saga.timers WHERE kind = 'wake'")
            start_at = await pool.fetchval("SELECT min(due_at) FROM saga.timers")
            wait = (start_at - datetime.now(UTC)).total_seconds()
            assert wait > 1, f"seeding took too long; due times already passed by {-wait:.1f} s"
            progress(f"{due:,} deadlines due over {spread:g} s from {wait:.1f} s from now")
            loops = [asyncio.create_task(instance.run_timers(poll=poll, batch=100)) for instance in instances]
            try:
                fired = "SELECT count(*) FROM saga.timers WHERE kind = 'payment' AND fired_at IS NOT NULL"
                while await pool.fetchval(fired) < due:  # noqa: ASYNC110 - polling the database
                    await asyncio.sleep(0.5)
            finally:
                for loop in loops:
                    loop.cancel()
                await asyncio.gather(*loops, return_exceptions=True)
            rows = await pool.fetch(
                """
                SELECT (data ->> 'at')::timestamptz - (data ->> 'due_at')::timestamptz AS late
                  FROM eventstore.events WHERE event_type = 'DeadlineFired'
                """
            )
            delays = [row["late"].total_seconds() for row in rows]
            firers = await pool.fetch(
                "SELECT fired_by, count(*) FROM saga.timers WHERE fired_at IS NOT NULL GROUP BY 1"
            )
    assert len(delays) == due, (len(delays), due)
    print(
        f"\nDeadlines through the service: {pending:,} pending, {due:,} due over {spread:g} s, 2 instances\n"
    )
    print("| measure | value |\n|---|--:|")
    print(f"| delay after due, p50 | {percentile(delays, 0.5) * 1000:,.0f} ms |")
    print(f"| delay after due, p99 | {percentile(delays, 0.99) * 1000:,.0f} ms |")
    print(f"| delay after due, max | {max(delays) * 1000:,.0f} ms |")
    print(f"| fired by | {', '.join(f'{row[0]}: {row[1]:,}' for row in firers)} |")


@contextlib.asynccontextmanager
async def orchestrator(
    saga_url: str, owner: str, http: httpx.AsyncClient, timeout: timedelta
) -> AsyncIterator[Orchestrator]:
    """One saga instance's orchestrator, wired as `saga_service.app` does (no Kafka, no provider calls)."""
    pool = await connect(saga_url, min_size=2, max_size=16)
    store = PostgresEventStore(pool, build_saga_registry())
    metrics = BreakerMetrics(CollectorRegistry())
    policy = RetryPolicy(attempts=3, base_delay=0.05, max_delay=1.0)
    token = ServiceToken(fixed=None, secret=SECRET, issuer=ISSUER, audience=AUDIENCE)
    breaker = CircuitBreaker("command", metrics, failures=50, reset_seconds=1)
    sandbox = httpx.AsyncClient(base_url="http://127.0.0.1:9")  # never called: no saga asks the provider
    instance = Orchestrator(
        SagaStreams(
            store, Timers(pool, owner=owner, lease_seconds=30, wake_grace=10), saga_decider(timeout).decide
        ),
        CommandClient(http, token, breaker, policy),
        SandboxProvider(
            sandbox, PROVIDER_SECRET, CircuitBreaker("provider", metrics, failures=5, reset_seconds=1), policy
        ),
        TracerProvider().get_tracer("bench"),
        callback_url="http://127.0.0.1:9/unused",
        concurrency=64,
    )
    try:
        yield instance
    finally:
        await instance.close()
        await sandbox.aclose()
        await store.close()
        await pool.close()


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--orders", type=int, default=300)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--rate", type=float, help="orders placed per second (default: as fast as possible)")
    parser.add_argument("--skip-deadlines", action="store_true")
    parser.add_argument("--deadlines", type=int, default=10_000)
    parser.add_argument("--poll", type=float, default=0.1)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--skip-end-to-end", action="store_true")
    parser.add_argument("--service-deadlines", type=int, default=0, help="pending sagas for part 3 (0: skip)")
    parser.add_argument("--service-due", type=int, default=1000, help="of which due during part 3")
    parser.add_argument("--service-spread", type=float, default=20.0)
    args = parser.parse_args()
    server = os.environ["DATABASE_URL"]
    if not args.skip_end_to_end:
        await end_to_end(server, args.orders, args.clients, args.rate)
    if not args.skip_deadlines:
        await deadlines(server, args.deadlines, args.poll, args.batch)
    if args.service_deadlines:
        await service_deadlines(
            server, args.service_deadlines, args.service_due, args.service_spread, args.poll
        )


if __name__ == "__main__":
    asyncio.run(main())
