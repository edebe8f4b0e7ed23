"""Projector throughput, rebuild and visibility against real Redis, search engine, PostgreSQL and Kafka.

    .venv/bin/python bench/projector_bench.py [--events 40000] [--rebuild-events 1000000]
        [--rebuild-projections redis,search] [--visibility-seconds 20]

1. Writers, side by side in one run, on the same events in batches of 500:
   - Redis: the projector's guarded writes (one Lua script per write, a pipeline
     per batch) against a bare redis-py pipeline doing the same HSET / HINCRBY /
     ZADD commands without the version guard (the practical limit);
   - search: the projector's writer (multi-get, fold, bulk with external versions)
     against the client's own bulk helper indexing the same documents.
2. Rebuild: N events generated straight into the store's tables (SQL), then
   `rebuild` of each projection: time, events/s, and the process's RSS sampled
   every half second (flat memory means the pages are not accumulating).
3. Visibility: orders appended at 200/s while the relay and the projector run
   in this process; the time from the append's return until the Redis
   projection's position covers it (the read-your-writes wait), p50/p99.

Uses its own database, topics, keys and indexes, removed afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import msgspec
from aiokafka import AIOKafkaConsumer
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
from readmodels.keyspace import RECENT_ORDERS
from readmodels.orders import OrderDocument
from servicekit.testing import running_service

BATCH = 500
SKUS = 50


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
                pipe.hset(hash_key, mapping={**write.set, "version": write.version})
                for field, delta in write.incr.items():
                    pipe.hincrby(hash_key, field, delta)
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
    await projector.redis.hset(projector.keyspace.product_names, mapping=names)  # type: ignore[misc]
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


async def bench_visibility(projector: Projector, settings: ProjectorSettings, seconds: float) -> list[float]:
    """The relay and the projector as their own processes, as deployed; this process appends and waits."""
    servers = {
        "DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url,
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers, "SEARCH_URL": settings.search_url,
        "LOG_LEVEL": "WARNING", "ACCESS_LOG": "false",
    }  # fmt: skip
    relay_env = {**servers, "RELAY_TOPIC_PREFIX": settings.projector_topic_prefix,
                 "RELAY_LOCK_KEY": str(random.randrange(1, 2**62))}  # fmt: skip
    projector_env = {
        **servers, "PROJECTOR_TOPIC_PREFIX": settings.projector_topic_prefix,
        "PROJECTOR_GROUP_PREFIX": settings.projector_group_prefix,
        "PROJECTOR_DEAD_LETTER_TOPIC": settings.projector_dead_letter_topic,
        "PROJECTOR_KEY_PREFIX": settings.projector_key_prefix, "PROJECTOR_PROJECTIONS": "redis",
    }  # fmt: skip
    logs = Path(tempfile.mkdtemp(prefix="projector-bench-"))
    seen: list[tuple[float, int]] = []
    appended: list[tuple[float, int]] = []
    arrived: dict[int, float] = {}
    async with (
        running_service("relay_service", relay_env, log=logs / "relay.log", port_variable="RELAY_PORT"),
        running_service("projector_service", projector_env, log=logs / "projector.log",
                        port_variable="PROJECTOR_PORT"),
    ):  # fmt: skip
        pubsub = projector.redis.pubsub()
        await pubsub.subscribe(projector.keyspace.position("redis"))

        async def listen() -> None:
            async for message in pubsub.listen():
                if message["type"] == "message":
                    seen.append((time.perf_counter(), int(message["data"])))

        listener = asyncio.create_task(listen())
        consumer = AIOKafkaConsumer(
            f"{settings.projector_topic_prefix}order", bootstrap_servers=settings.kafka_bootstrap_servers,
            group_id=None, auto_offset_reset="latest", metadata_max_age_ms=1000,
        )  # fmt: skip
        await consumer.start()

        async def watch_kafka() -> None:
            while True:
                batch = await consumer.getmany(timeout_ms=100)
                now = time.perf_counter()
                for records in batch.values():
                    for record in records:
                        arrived[int(dict(record.headers)["ce_position"])] = now

        watcher = asyncio.create_task(watch_kafka())
        try:
            await asyncio.sleep(5)  # the consumer group settles

            async def place() -> None:
                order_id = uuid.uuid4()
                line = PlacedLine(sku="sku1", quantity=1, unit_price=100, line_total=100)
                placed = OrderPlaced(
                    order_id=order_id, customer_id="v", lines=(line,), currency="EUR", total=100
                )
                result = await projector.store.append(f"order-{order_id}", [NewEvent(data=placed)])
                appended.append((time.perf_counter(), result.positions[-1]))

            # On a schedule, each append in a task of its own: a slow append must not lower the rate.
            interval, started = 1 / 200, time.perf_counter()
            tasks, n = [], 0
            while time.perf_counter() - started < seconds:
                n += 1
                await asyncio.sleep(max(0.0, started + n * interval - time.perf_counter()))
                tasks.append(asyncio.create_task(place()))
            await asyncio.gather(*tasks)
            await asyncio.sleep(3)
        finally:
            for task in (listener, watcher):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await consumer.stop()
            await pubsub.aclose()  # type: ignore[no-untyped-call]
    progress(f"  {len(appended):,} appends in {seconds:g} s")
    to_kafka = sorted((arrived[p] - at) * 1000 for at, p in appended if p in arrived)
    if to_kafka:
        progress(f"  append -> Kafka: p50 {to_kafka[len(to_kafka) // 2]:.1f} ms, "
                 f"p99 {to_kafka[int(len(to_kafka) * 0.99)]:.1f} ms")  # fmt: skip
    latencies = []
    for at, position in appended:
        reached = next((t for t, p in seen if p >= position and t >= at), None)
        if reached is not None:
            latencies.append((reached - at) * 1000)
    return latencies


@contextlib.asynccontextmanager
async def fresh_database(url: str) -> AsyncIterator[str]:
    name = f"bench_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    try:
        yield urlunsplit(urlsplit(url)._replace(path=f"/{name}"))
    finally:
        admin = await asyncpg.connect(url)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


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


async def visibility(seconds: float) -> None:
    """In a store of its own: the backlog of the other parts must not be in the way."""
    tag = uuid.uuid4().hex[:8]
    async with fresh_database(os.environ["DATABASE_URL"]) as database_url:
        await migrate(database_url)
        settings = bench_settings(database_url, tag)
        projector = await Projector.open(settings, build_registry())
        try:
            progress(f"visibility: 200 appends/s for {seconds:g} s")
            latencies = await bench_visibility(projector, settings, seconds)
            cuts = statistics.quantiles(latencies, n=100)
            print("\n| append → Redis position at 200/s | samples | p50 | p99 | max |")
            print("| --- | ---: | ---: | ---: | ---: |")
            print(f"| visibility | {len(latencies):,} | {cuts[49]:.1f} ms | {cuts[98]:.1f} ms | "
                  f"{max(latencies):.1f} ms |")  # fmt: skip
        finally:
            await cleanup(projector, tag)
            await projector.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=40_000)
    parser.add_argument("--rebuild-events", type=int, default=1_000_000)
    parser.add_argument("--rebuild-projections", default="redis,search")
    parser.add_argument("--visibility-seconds", type=float, default=20.0)
    args = parser.parse_args()
    tag = uuid.uuid4().hex[:8]
    async with fresh_database(os.environ["DATABASE_URL"]) as database_url:
        await migrate(database_url)
        settings = bench_settings(database_url, tag)
        projector = await Projector.open(settings, build_registry())
        try:
            for projection in projector.projections.values():
                await projection.prepare()
            events = order_events(args.events)
            progress(f"writers: {len(events):,} events in batches of {BATCH}")
            guarded, bare = await bench_redis(projector, events)
            writer, helper = await bench_search(projector, events)
            print(f"\nengine: {projector.search.engine} {projector.search.version}\n")
            print("| writer | events/s | vs limit |\n| --- | ---: | ---: |")
            print(f"| Redis: projector (guarded Lua, pipeline) | {guarded:,.0f} | {guarded / bare:.0%} |")
            print(f"| Redis: bare redis-py pipeline, same commands | {bare:,.0f} | 100% |")
            print(
                f"| search: projector (mget, fold, bulk external) | {writer:,.0f} | {writer / helper:.0%} |"
            )
            print(f"| search: client bulk helper, same documents | {helper:,.0f} | 100% |")

            if args.rebuild_events:
                progress(f"rebuild: filling the store with {args.rebuild_events:,} events")
                await fill_store(projector, args.rebuild_events)
                print("\n| rebuild | events | seconds | events/s | RSS start | RSS max | RSS end |")
                print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
                for name in args.rebuild_projections.split(","):
                    r = await bench_rebuild(projector, name)
                    memory = f"{r['rss_start']:.0f} MiB | {r['rss_max']:.0f} MiB | {r['rss_end']:.0f} MiB"
                    print(f"| {name} | {r['events']:,} | {r['seconds']:.1f} | {r['rate']:,.0f} | {memory} |")

        finally:
            await cleanup(projector, tag)
            await projector.close()
    if args.visibility_seconds:
        await visibility(args.visibility_seconds)


if __name__ == "__main__":
    asyncio.run(main())
