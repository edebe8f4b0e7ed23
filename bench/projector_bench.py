"""Projector throughput, rebuild and visibility against real Redis, search engine, PostgreSQL and Kafka.

    .venv/bin/python bench/projector_bench.py [--parts writers,rebuild,visibility] [--events 40000]
        [--rebuild-events 1000000] [--rebuild-projections redis,search]
        [--visibility-seconds 20] [--rate 200]

1. Writers, side by side in one run, on the same events in batches of 500:
   - Redis: the projector's guarded writes (one Lua script per write, a pipeline
     per batch) against a bare redis-py pipeline doing the same HSET / HINCRBY /
     ZADD commands without the version guard (the practical limit);
   - search: the projector's writer (multi-get, fold, bulk with external versions)
     against the client's own bulk helper indexing the same documents.
2. Rebuild: N events generated straight into the store's tables (SQL), then
   `rebuild` of each projection: time, events/s, and the process's RSS sampled
   every half second (flat memory means the pages are not accumulating).
3. Visibility after a command: the command service, the relay and the projector
   (both projections) as their own processes on a fresh database; staff register
   the priced products over HTTP, then customers place orders over HTTP
   (`POST /orders`, an Idempotency-Key each) at a steady rate, each request in a
   task of its own over a pool of keep-alive HTTP/1.1 connections. The clock
   starts when the command's answer arrives; its `position` is the consistency
   token. Measured, p50/p99/max: the answer time itself; answer → the event on
   Kafka; answer → the Redis projection's position covering the token and
   answer → the search projection's position covering it (from the positions'
   pub/sub announcements, what a read-your-writes wait wakes on); answer → a
   search through the alias returning the order (one `terms` search every
   10 ms for all the orders not found yet), which adds the wait for the
   index's next refresh. The refresh interval in force is read from the index.
   Printed beside: the rate reached, the load average, the CPU each process
   used, and how late this process's event loop ran (a late loop sends late
   and times late: the figures are then the load generator's, not the suite's).

Uses its own databases, topics, keys and indexes, removed afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import itertools
import os
import random
import shutil
import ssl
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import msgspec
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from eventstore import NewEvent, migrate
from fulfilment.events import OrderConfirmed, OrderPlaced, PlacedLine, ProductRegistered
from fulfilment.registry import build_registry
from projector_service.bootstrap import Projector
from projector_service.documents import evolve_document
from projector_service.events import ProjectedEvent
from projector_service.rebuild import rebuild
from projector_service.redis_writer import script_call
from projector_service.settings import ProjectorSettings
from projector_service.summaries import summary_writes
from readmodels.keyspace import PROJECTIONS, RECENT_ORDERS, wait_for_position
from readmodels.orders import OrderDocument, orders_alias
from readmodels.search import SearchClient
from redis.typing import EncodableT, FieldT
from testkit.databases import scratch_database
from testkit.harness import ServiceProcess, running_service, token_factory

from services.command.tests.support import CATALOGUE, command_headers, register_products

BATCH = 500
SKUS = 50

PARTS = ("writers", "rebuild", "visibility")
SECRET = "benchmark-secret-that-is-long-enough-for-hs256"  # noqa: S105 - a throwaway key for a local run
ISSUER, AUDIENCE = "https://bench.local", "command-api"
# Each service as its own process, in start order, with the variable that gives it its port.
PROCESSES = {
    "command_service": "COMMAND_PORT",
    "relay_service": "RELAY_PORT",
    "projector_service": "PROJECTOR_PORT",
}
SKUS_FOR_SALE = tuple(product["sku"] for product in CATALOGUE)
CUSTOMERS = 100
# HTTP/1.1 keep-alive connections to the command service: POOLS clients of POOL_SIZE each, request n
# on client n % POOLS. Enough for 200 requests/s answered within 1.28 s without queueing for a
# connection. Several small pools rather than one of 256: httpcore's pool scans every connection
# for every queued request (encode/httpcore#1035), and one big pool made this process, not the
# services, the bottleneck.
POOLS, POOL_SIZE = 16, 16
WARM_UP = 20
SEARCH_POLL = 0.010  # seconds between searches for the orders not found yet
SEARCH_BATCH = 1000  # order ids per search at most


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def order_events(count: int) -> list[ProjectedEvent]:
    """`count` events: orders placed and then confirmed, the way the log interleaves them."""
    events: list[ProjectedEvent] = []
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    position = 0
    pending: list[uuid.UUID] = []
    while len(events) < count:
        if pending and (random.random() < 0.5 or len(pending) > 200):
            order_id = pending.pop(0)
            data: Any = OrderConfirmed(order_id=order_id)
            version = 1
        else:
            order_id = uuid.uuid4()
            pending.append(order_id)
            sku = f"sku{random.randrange(SKUS)}"
            line = PlacedLine(sku=sku, quantity=2, unit_price=100, line_total=200)
            data = OrderPlaced(order_id=order_id, customer_id=f"c{random.randrange(1000)}", lines=(line,),
                               currency="EUR", total=200)  # fmt: skip
            version = 0
        position += 1
        events.append(
            ProjectedEvent(
                stream_id=f"order-{order_id}",
                version=version,
                position=position,
                event_id=str(uuid.uuid4()),
                event_type=type(data).__name__,
                recorded_at=t0 + timedelta(milliseconds=position),
                data=data,
            )
        )
    return events


def batches[T](items: Sequence[T], size: int = BATCH) -> list[Sequence[T]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


async def bench_redis(projector: Projector, events: list[ProjectedEvent]) -> tuple[float, float]:
    redis = projector.redis
    started = time.perf_counter()
    for batch in batches(events):
        assert await projector.projections["redis"].apply(batch, ["bench-guarded"]) == {}
    guarded = len(events) / (time.perf_counter() - started)

    keys = projector.keyspace.models("bench-bare")
    started = time.perf_counter()
    for batch in batches(events):
        pipe = redis.pipeline(transaction=False)
        for event in batch:
            for write in summary_writes(event):
                (hash_key, counts, recent_key), _ = script_call(keys, write)
                fields: dict[FieldT, EncodableT] = {"version": write.version}
                fields.update(write.set)
                pipe.hset(hash_key, mapping=fields)
                for name, delta in write.incr.items():
                    pipe.hincrby(hash_key, name, delta)
                if write.count_status and "status" in write.set:
                    pipe.hincrby(counts, write.set["status"], 1)
                if write.recent is not None:
                    pipe.zadd(recent_key, {write.recent.order_id: write.recent.placed_at_ms})
                    pipe.zremrangebyrank(recent_key, 0, -(RECENT_ORDERS + 1))
        await pipe.execute()
    bare = len(events) / (time.perf_counter() - started)
    return guarded, bare


async def bench_search(projector: Projector, events: list[ProjectedEvent]) -> tuple[float, float]:
    search = projector.projections["search"]
    names = {f"sku{n}": f"Product number {n}" for n in range(SKUS)}
    mapping: dict[FieldT, EncodableT] = {}
    mapping.update(names)
    await projector.redis.hset(projector.keyspace.product_names, mapping=mapping)
    for generation in ("bench-projector", "bench-helper"):
        await search.create(generation)
    started = time.perf_counter()
    for batch in batches(events):
        assert await search.apply(batch, ["bench-projector"]) == {}
    writer = len(events) / (time.perf_counter() - started)

    # The same documents the projector indexed, batch by batch, through the client's bulk helper.
    documents: dict[str, OrderDocument] = {}
    actions_per_batch: list[list[dict[str, Any]]] = []
    for batch in batches(events):
        touched: dict[str, OrderDocument] = {}
        for event in batch:
            order_id = event.stream_id.removeprefix("order-")
            document = evolve_document(documents.get(order_id), event, names)
            documents[order_id] = touched[order_id] = document
        actions_per_batch.append([
            {"_index": search.index("bench-helper"), "_id": order_id, "_source": msgspec.to_builtins(doc),  # type: ignore[attr-defined]
             "version": doc.version, "version_type": "external"}
            for order_id, doc in touched.items()
        ])  # fmt: skip
    client: Any = projector.search._client
    if projector.search.engine == "opensearch":
        from opensearchpy.helpers import async_bulk
    else:
        from elasticsearch.helpers import async_bulk  # type: ignore[assignment]
    started = time.perf_counter()
    for actions in actions_per_batch:
        await async_bulk(client, actions, chunk_size=BATCH)
    helper = len(events) / (time.perf_counter() - started)
    return writer, helper


FILL = """
INSERT INTO eventstore.events
       (stream_id, category, version, event_id, event_type, schema_version, data, metadata)
SELECT 'order-' || o.id, 'order', v.version, gen_random_uuid(),
       CASE v.version WHEN 0 THEN 'OrderPlaced' ELSE 'OrderConfirmed' END, 1,
       CASE v.version WHEN 0 THEN jsonb_build_object(
           'type', 'OrderPlaced', 'order_id', o.id, 'customer_id', 'c' || (o.n % 1000), 'currency', 'EUR',
           'total', 200, 'lines', jsonb_build_array(jsonb_build_object(
               'sku', 'sku' || (o.n % 50), 'quantity', 2, 'unit_price', 100, 'line_total', 200)))
       ELSE jsonb_build_object('type', 'OrderConfirmed', 'order_id', o.id) END,
       '{}'::jsonb
  FROM (SELECT n, gen_random_uuid() AS id FROM generate_series($1::int, $2::int) AS n) o
 CROSS JOIN (VALUES (0), (1)) AS v (version)
 ORDER BY o.n, v.version
"""


async def fill_store(projector: Projector, total: int) -> None:
    for n in range(SKUS):
        await projector.store.append(
            f"stock-sku{n}",
            # At the price the orders below pay.
            [
                NewEvent(
                    data=ProductRegistered(
                        sku=f"sku{n}", name=f"Product number {n}", unit_price=100, currency="EUR"
                    )
                )
            ],
        )
    orders = total // 2
    chunk = 100_000
    for first in range(0, orders, chunk):
        await projector.pool.execute(FILL, first, min(first + chunk, orders) - 1)
        progress(f"  store: {min(first + chunk, orders) * 2:,} events")


async def bench_rebuild(projector: Projector, name: str) -> dict[str, Any]:
    samples: list[float] = [rss_mib()]
    stop = asyncio.Event()

    async def sample() -> None:
        while not stop.is_set():
            samples.append(rss_mib())
            await asyncio.sleep(0.5)

    sampler = asyncio.create_task(sample())
    last = [0.0]

    def show(p: Any) -> None:
        if time.monotonic() - last[0] > 10:
            last[0] = time.monotonic()
            progress(
                f"  rebuild {name}: {p.read:,}/{p.total:,} ({p.rate:,.0f} events/s, RSS {rss_mib():.0f} MiB)"
            )

    result = await rebuild(projector, name, page_size=2000, grace=0.1, on_progress=show)
    stop.set()
    await sampler
    return {"events": result.read, "seconds": result.seconds, "rate": result.rate,
            "rss_start": samples[0], "rss_max": max(samples), "rss_end": samples[-1]}  # fmt: skip


class Answer(msgspec.Struct, frozen=True, kw_only=True):
    """One order the command service accepted: when its request went out and its answer came back."""

    order_id: str
    position: int  # the answer's consistency token
    sent: float
    answered: float


class OrderRefused(Exception):
    """The command service answered a place-order request with something other than 201."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"place order: {status} {body[:200]}")
        self.status = status


@dataclass
class Sightings:
    """What the watchers saw, each with the `time.perf_counter()` at which this process saw it."""

    positions: dict[str, list[tuple[float, int]]] = field(
        default_factory=lambda: {name: [] for name in PROJECTIONS}
    )
    on_kafka: dict[int, float] = field(default_factory=dict)  # event position -> arrival
    found: dict[str, float] = field(default_factory=dict)  # order id -> first search that returned it
    # Answered orders no search has returned yet, oldest first (a dict keeps the order).
    unfound: dict[str, None] = field(default_factory=dict)
    # How late this process's event loop woke from 10 ms sleeps (ms): when it is late, so are the
    # requests it sends and the times it takes, and the figures say more about this process than
    # about the services.
    loop_lag: list[float] = field(default_factory=list)


@dataclass
class VisibilityRun:
    answers: list[Answer]
    failures: Counter[str]
    sightings: Sightings
    refresh_interval: str
    load: tuple[float, float]  # the 1-minute load average before and after
    cpu: dict[str, float]  # CPU seconds each process used while the orders were placed and drained
    seconds: float  # how long that took
    sending: float  # how long the sending took (the schedule's `seconds` when this process kept up)


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process so far (Linux)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def service_environments(settings: ProjectorSettings) -> dict[str, dict[str, str]]:
    """Each process's environment: the bench's database, topics and keys, and the throwaway JWT key."""
    servers = {
        "DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url,
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers, "SEARCH_URL": settings.search_url,
        "LOG_LEVEL": "WARNING", "ACCESS_LOG": "false",
    }  # fmt: skip
    return {
        "command_service": {**servers, "JWT_SECRET": SECRET, "JWT_ISSUER": ISSUER, "JWT_AUDIENCE": AUDIENCE},
        "relay_service": {**servers, "RELAY_TOPIC_PREFIX": settings.projector_topic_prefix,
                          "RELAY_LOCK_KEY": str(random.randrange(1, 2**62))},
        "projector_service": {
            **servers, "PROJECTOR_TOPIC_PREFIX": settings.projector_topic_prefix,
            "PROJECTOR_GROUP_PREFIX": settings.projector_group_prefix,
            "PROJECTOR_DEAD_LETTER_TOPIC": settings.projector_dead_letter_topic,
            "PROJECTOR_KEY_PREFIX": settings.projector_key_prefix, "PROJECTOR_PROJECTIONS": "redis,search",
        },
    }  # fmt: skip


async def place_order(client: httpx.AsyncClient, token: str, sku: str) -> Answer:
    """`POST /orders` for one unit of `sku`."""
    body = {"lines": [{"sku": sku, "quantity": 1}], "currency": "EUR"}
    sent = time.perf_counter()
    response = await client.post("/orders", json=body, headers=command_headers(token))
    answered = time.perf_counter()
    if response.status_code != 201:
        raise OrderRefused(response.status_code, response.text)
    reply = response.json()
    return Answer(order_id=reply["order_id"], position=reply["position"], sent=sent, answered=answered)


async def watch_positions(pubsub: Any, sightings: Sightings, channels: dict[bytes, str]) -> None:
    """Each announcement of a projection's new position, when a reader waiting on it would wake."""
    async for message in pubsub.listen():
        if message["type"] == "message":
            name = channels[message["channel"]]
            sightings.positions[name].append((time.perf_counter(), int(message["data"])))


async def watch_kafka(consumer: AIOKafkaConsumer, sightings: Sightings) -> None:
    """When each order event arrives on its topic: the relay's share of the wait."""
    while True:
        batch = await consumer.getmany(timeout_ms=100)
        now = time.perf_counter()
        for records in batch.values():
            for record in records:
                sightings.on_kafka[int(dict(record.headers)["ce_position"])] = now


async def poll_search(search: SearchClient, alias: str, sightings: Sightings) -> None:
    """Every SEARCH_POLL seconds, one search through the alias for the orders not found yet.

    One `terms` query for all of them rather than a request per order: 200
    orders a second, each waiting up to a refresh interval, would otherwise be
    thousands of searches a second, and the engine would mostly measure those.
    """
    while True:
        wanted = list(itertools.islice(sightings.unfound, SEARCH_BATCH))
        if wanted:
            hits = await search.search(alias, {"terms": {"order_id": wanted}}, size=len(wanted))
            now = time.perf_counter()
            for hit in hits:
                sightings.found.setdefault(hit["order_id"], now)
                sightings.unfound.pop(hit["order_id"], None)
        await asyncio.sleep(SEARCH_POLL)


async def watch_loop_lag(sightings: Sightings) -> None:
    """How late this process's event loop wakes from a 10 ms sleep."""
    while True:
        started = time.perf_counter()
        await asyncio.sleep(0.010)
        sightings.loop_lag.append((time.perf_counter() - started - 0.010) * 1000)


async def place_orders(
    clients: Sequence[httpx.AsyncClient],
    tokens: Sequence[str],
    rate: float,
    seconds: float,
    sightings: Sightings,
) -> tuple[list[Answer], Counter[str], float]:
    """`rate` orders a second for `seconds`, on a schedule, each request in a task of its own (a slow
    answer must not lower the rate); returns the answers, the count of each kind of failure, and
    the seconds the sending took (more than `seconds` when this process could not keep the rate)."""
    answers: list[Answer] = []
    failures: Counter[str] = Counter()

    async def place(n: int) -> None:
        try:
            client, token, sku = (
                clients[n % len(clients)],
                tokens[n % len(tokens)],
                SKUS_FOR_SALE[n % len(SKUS_FOR_SALE)],
            )
            answer = await place_order(client, token, sku)
        except OrderRefused as refused:
            failures[f"HTTP {refused.status}"] += 1
            return
        except httpx.HTTPError as error:
            failures[type(error).__name__] += 1
            return
        answers.append(answer)
        sightings.unfound[answer.order_id] = None

    total, every = int(rate * seconds), max(1, int(rate * 5))
    interval, started = 1 / rate, time.perf_counter()
    tasks: list[asyncio.Task[None]] = []
    while (n := len(tasks)) < total:
        await asyncio.sleep(max(0.0, started + n * interval - time.perf_counter()))
        tasks.append(asyncio.create_task(place(n)))
        if n and n % every == 0:
            progress(
                f"  {n:,} orders sent, {len(answers):,} answered, {len(sightings.found):,} found by a search"
            )
    sending = time.perf_counter() - started
    await asyncio.gather(*tasks)
    return answers, failures, sending


async def drain(answers: Sequence[Answer], sightings: Sightings, timeout: float) -> None:
    """Wait until both positions cover the last token and a search found every order, or `timeout`."""
    last = max((answer.position for answer in answers), default=-1)
    deadline = time.monotonic() + timeout
    while True:
        reached = {name: max((p for _, p in seen), default=-1) for name, seen in sightings.positions.items()}
        if not sightings.unfound and min(reached.values()) >= last:
            return
        if time.monotonic() > deadline:
            progress(f"  after {timeout:g} s: {len(sightings.unfound):,} orders not found by a search, "
                     f"positions {reached}, last token {last}")  # fmt: skip
            return
        await asyncio.sleep(0.1)


async def stop_tasks(tasks: Sequence[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def refresh_interval(search: SearchClient, alias: str) -> str:
    """The orders index's refresh interval: its own setting (ORDER_INDEX_SETTINGS), else the engine's."""
    (index,) = await search.alias_targets(alias)
    client: Any = search._client
    response = await client.indices.get_settings(index=index, include_defaults=True, flat_settings=True)
    own, defaults = response[index]["settings"], response[index].get("defaults", {})
    if "index.refresh_interval" in own:
        return f"{own['index.refresh_interval']} (the index's own setting)"
    default = defaults.get("index.refresh_interval", "unknown")
    return f"{default} (the engine's default: ORDER_INDEX_SETTINGS sets none)"


async def warm_up(
    projector: Projector, clients: Sequence[httpx.AsyncClient], tokens: Sequence[str], logs: Path
) -> None:
    """Orders through the whole path before the clock runs: connections open, consumer groups
    settled, both projections caught up with them."""
    placed = await asyncio.gather(
        *(
            place_order(
                clients[n % len(clients)], tokens[n % len(tokens)], SKUS_FOR_SALE[n % len(SKUS_FOR_SALE)]
            )
            for n in range(WARM_UP)
        )
    )
    last = max(answer.position for answer in placed)
    for name in PROJECTIONS:
        if not await wait_for_position(projector.redis, projector.keyspace, name, last, timeout=120):
            raise RuntimeError(f"the {name} projection did not reach the warm-up orders; logs in {logs}")


async def bench_visibility(
    projector: Projector, settings: ProjectorSettings, rate: float, seconds: float
) -> VisibilityRun:
    """The command service, the relay and the projector as their own processes, as deployed; this
    process places the orders over HTTP and watches the positions, Kafka and the search engine."""
    logs = Path(tempfile.mkdtemp(prefix="projector-bench-"))
    environments = service_environments(settings)
    tokens = token_factory(secret=SECRET, issuer=ISSUER, audience=AUDIENCE)
    staff = tokens("bench-staff", ["staff"], ttl_seconds=3600)
    # Spread over many customers (2 orders/s each at 200/s), as real traffic is: far below the
    # per-subject rate limit, which stays at its default.
    customers = [tokens(f"customer-{n}", ["customer"], ttl_seconds=3600) for n in range(CUSTOMERS)]
    alias = orders_alias(settings.projector_key_prefix)
    sightings = Sightings()
    async with contextlib.AsyncExitStack() as stack:
        services: dict[str, ServiceProcess] = {}
        for module, port_variable in PROCESSES.items():
            log = logs / f"{module}.log"
            services[module] = await stack.enter_async_context(
                running_service(module, environments[module], log=log, port_variable=port_variable)
            )
        limits = httpx.Limits(max_connections=POOL_SIZE, max_keepalive_connections=POOL_SIZE)
        tls = ssl.create_default_context()  # unused over http://, but each client would load its own CAs
        url = services["command_service"].url
        clients = [
            await stack.enter_async_context(
                httpx.AsyncClient(base_url=url, limits=limits, timeout=30, verify=tls)
            )
            for _ in range(POOLS)
        ]
        pubsub = projector.redis.pubsub()
        channels = {projector.keyspace.position(name).encode(): name for name in PROJECTIONS}
        await pubsub.subscribe(*channels)
        stack.push_async_callback(pubsub.aclose)
        consumer = AIOKafkaConsumer(
            f"{settings.projector_topic_prefix}order", bootstrap_servers=settings.kafka_bootstrap_servers,
            group_id=None, auto_offset_reset="latest", metadata_max_age_ms=1000,
        )  # fmt: skip
        await consumer.start()
        stack.push_async_callback(consumer.stop)
        watchers = [
            asyncio.create_task(watch_positions(pubsub, sightings, channels)),
            asyncio.create_task(watch_kafka(consumer, sightings)),
            asyncio.create_task(poll_search(projector.search, alias, sightings)),
        ]
        stack.push_async_callback(stop_tasks, watchers)

        await register_products(clients[0], staff)
        await warm_up(projector, clients, customers, logs)
        interval = await refresh_interval(projector.search, alias)
        load_before = os.getloadavg()[0]
        progress(f"  warmed up; index refresh interval {interval}; load average {load_before:.1f}")
        pids = {
            name.removesuffix("_service"): service.process.pid
            for name, service in services.items()
            if service.process is not None
        }
        pids["this process"] = os.getpid()
        cpu_before, started = {name: cpu_seconds(pid) for name, pid in pids.items()}, time.monotonic()
        lag = asyncio.create_task(watch_loop_lag(sightings))
        answers, failures, sending = await place_orders(clients, customers, rate, seconds, sightings)
        await stop_tasks([lag])
        progress(f"  all answered after {time.monotonic() - started:.1f} s")
        await drain(answers, sightings, timeout=60)
        progress(f"  drained after {time.monotonic() - started:.1f} s")
        cpu = {name: cpu_seconds(pid) - cpu_before[name] for name, pid in pids.items()}
        elapsed, load_after = time.monotonic() - started, os.getloadavg()[0]
    shutil.rmtree(logs, ignore_errors=True)
    return VisibilityRun(
        answers, failures, sightings, interval, (load_before, load_after), cpu, elapsed, sending
    )


def print_visibility(run: VisibilityRun, rate: float, seconds: float, engine: str) -> None:
    answers, seen = run.answers, run.sightings
    rows = {
        "command answer time (request sent → answer)": [(a.answered - a.sent) * 1000 for a in answers],
        "answer → event read from Kafka (by this process)": [
            max(0.0, seen.on_kafka[a.position] - a.answered) * 1000
            for a in answers
            if a.position in seen.on_kafka
        ],
        "answer → Redis position covers the token": waits(answers, seen.positions["redis"]),
        "answer → search position covers the token": waits(answers, seen.positions["search"]),
        "answer → found by a search through the alias": [
            max(0.0, seen.found[a.order_id] - a.answered) * 1000 for a in answers if a.order_id in seen.found
        ],
    }
    sent = int(rate * seconds)
    failed = "".join(f", {count:,} {kind}" for kind, count in run.failures.items())
    print(f"\n{engine}, index refresh interval {run.refresh_interval}")
    print(f"{sent:,} orders sent in {run.sending:.1f} s ({sent / run.sending:,.0f}/s, {rate:g}/s asked), "
          f"{len(answers):,} accepted{failed}; "
          f"load average {run.load[0]:.1f} before, {run.load[1]:.1f} after")  # fmt: skip
    used = ", ".join(f"{name} {cpu:.1f}" for name, cpu in run.cpu.items())
    print(f"CPU seconds in the {run.seconds:.1f} s of placing and draining: {used}")
    lag = seen.loop_lag or [0.0]
    print(f"this process's event loop while sending, late by: p50 {percentile(lag, 50):.1f} ms, "
          f"p99 {percentile(lag, 99):.1f} ms, max {max(lag):.1f} ms\n")  # fmt: skip
    # Waits from an answer that came later than the thing it waits for are 0: already visible.
    print(f"| at {rate:g} orders/s | samples | visible at the answer | p50 | p99 | max |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for label, values in rows.items():
        if not values:
            print(f"| {label} | 0 | | | | |")
            continue
        already = "" if label.startswith("command") else f"{sum(v == 0 for v in values):,}"
        cells = " | ".join(
            f"{v:,.1f} ms" for v in (percentile(values, 50), percentile(values, 99), max(values))
        )
        print(f"| {label} | {len(values):,} | {already} | {cells} |")


def waits(answers: Sequence[Answer], announced: Sequence[tuple[float, int]]) -> list[float]:
    """Milliseconds from each answer until the first announcement covering its token.

    Zero when the position covered it before the answer arrived; an order never
    covered is left out (the sample count shows it).
    """
    times: list[float] = []
    highest: list[int] = []
    for at, position in announced:
        times.append(at)
        highest.append(max(position, highest[-1]) if highest else position)
    out = []
    for answer in answers:
        i = bisect.bisect_left(highest, answer.position)
        if i < len(times):
            out.append(max(0.0, times[i] - answer.answered) * 1000)
    return out


def percentile(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def bench_settings(database_url: str, tag: str) -> ProjectorSettings:
    return ProjectorSettings(
        database_url=database_url, redis_url=os.environ["REDIS_URL"],
        kafka_bootstrap_servers=os.environ["KAFKA_BOOTSTRAP_SERVERS"], search_url=os.environ["SEARCH_URL"],
        projector_topic_prefix=f"bench{tag}.", projector_group_prefix=f"bench{tag}.projector.",
        projector_dead_letter_topic=f"bench{tag}.projector.dlq", projector_key_prefix=f"bench{tag}-",
    )  # fmt: skip


async def cleanup(projector: Projector, tag: str) -> None:
    keys = [key async for key in projector.redis.scan_iter(match=f"bench{tag}-*", count=5000)]
    for chunk in batches(keys, 5000):
        await projector.redis.unlink(*chunk)
    for index in await projector.search.indices(f"bench{tag}-*"):
        await projector.search.delete_index(index)


async def delete_topics(bootstrap_servers: str, prefix: str) -> None:
    """The topics the relay and the projector created for this run."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        topics = [topic for topic in await admin.list_topics() if topic.startswith(prefix)]
        if topics:
            await admin.delete_topics(topics)
    finally:
        await admin.close()


@contextlib.asynccontextmanager
async def bench_projector() -> AsyncIterator[tuple[Projector, ProjectorSettings]]:
    """A projector on a store of its own, its keys, indices and topics removed afterwards."""
    tag = uuid.uuid4().hex[:8]
    async with scratch_database(os.environ["DATABASE_URL"], "bench") as database_url:
        await migrate(database_url)
        settings = bench_settings(database_url, tag)
        projector = await Projector.open(settings, build_registry())
        try:
            yield projector, settings
        finally:
            await cleanup(projector, tag)
            await delete_topics(settings.kafka_bootstrap_servers, f"bench{tag}.")
            await projector.close()


async def visibility(rate: float, seconds: float) -> None:
    """In a store of its own: the backlog of the other parts must not be in the way."""
    async with bench_projector() as (projector, settings):
        progress(f"visibility: {rate:g} orders/s through the command service for {seconds:g} s")
        run = await bench_visibility(projector, settings, rate, seconds)
        engine = f"{projector.search.engine} {projector.search.version}"
        print_visibility(run, rate, seconds, engine)


async def writers_and_rebuild(args: argparse.Namespace, parts: set[str]) -> None:
    async with bench_projector() as (projector, _):
        for projection in projector.projections.values():
            await projection.prepare()
        if "writers" in parts:
            events = order_events(args.events)
            progress(f"writers: {len(events):,} events in batches of {BATCH}")
            guarded, bare = await bench_redis(projector, events)
            writer, helper = await bench_search(projector, events)
            print(f"\nengine: {projector.search.engine} {projector.search.version}\n")
            print("| writer | events/s | vs limit |\n| --- | ---: | ---: |")
            print(f"| Redis: projector (guarded Lua, pipeline) | {guarded:,.0f} | {guarded / bare:.0%} |")
            print(f"| Redis: bare redis-py pipeline, same commands | {bare:,.0f} | 100% |")
            ratio = f"{writer / helper:.0%}"
            print(f"| search: projector (mget, fold, bulk external) | {writer:,.0f} | {ratio} |")
            print(f"| search: client bulk helper, same documents | {helper:,.0f} | 100% |")

        if "rebuild" in parts and args.rebuild_events:
            progress(f"rebuild: filling the store with {args.rebuild_events:,} events")
            await fill_store(projector, args.rebuild_events)
            print("\n| rebuild | events | seconds | events/s | RSS start | RSS max | RSS end |")
            print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
            for name in args.rebuild_projections.split(","):
                r = await bench_rebuild(projector, name)
                memory = f"{r['rss_start']:.0f} MiB | {r['rss_max']:.0f} MiB | {r['rss_end']:.0f} MiB"
                print(f"| {name} | {r['events']:,} | {r['seconds']:.1f} | {r['rate']:,.0f} | {memory} |")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--parts", default=",".join(PARTS), help=f"which to run, comma-separated: {', '.join(PARTS)}"
    )
    parser.add_argument("--events", type=int, default=40_000)
    parser.add_argument("--rebuild-events", type=int, default=1_000_000)
    parser.add_argument("--rebuild-projections", default="redis,search")
    parser.add_argument("--visibility-seconds", type=float, default=20.0)
    parser.add_argument("--rate", type=float, default=200.0, help="orders/s of the visibility part")
    args = parser.parse_args()
    parts = {part.strip() for part in args.parts.split(",") if part.strip()}
    if unknown := parts - set(PARTS):
        parser.error(f"--parts: unknown {', '.join(sorted(unknown))}; choose from {', '.join(PARTS)}")
    if parts & {"writers", "rebuild"}:
        await writers_and_rebuild(args, parts)
    if "visibility" in parts and args.visibility_seconds:
        await visibility(args.rate, args.visibility_seconds)


if __name__ == "__main__":
    asyncio.run(main())
