"""Relay throughput and latency against real PostgreSQL and Kafka.

    .venv/bin/python bench/relay_bench.py [--events 1000000] [--latency-seconds 10]

1. Backlog: N events in the event store; the relay publishes all of them. Side by
   side, in the same run, a bare aiokafka producer (same settings, same messages,
   already built in memory) sends them: the practical limit.
   Besides wall time, the benchmark process's own CPU time per event: the
   client-side cost, which other load on a shared machine disturbs far less
   than throughput (PostgreSQL and Kafka run as processes of their own).
2. Latency: events appended at a steady 1,000/s while the relay runs; a consumer
   measures append-call-start to message-received, p50/p99.

Uses its own database and topics, dropped afterwards. Prints progress on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
import uuid

import msgspec
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from eventstore import LogPosition, NewEvent, PostgresEventStore, connect, migrate
from fulfilment.events import ProductRegistered, StockReceived
from fulfilment.registry import build_registry
from relay_service.envelope import KafkaMessage, to_message
from relay_service.publisher import Relay, make_producer
from relay_service.settings import RelaySettings
from testkit.databases import scratch_database

PARTITIONS = 6


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


async def fill(store: PostgresEventStore, total: int, per_append: int = 100, writers: int = 8) -> None:
    streams = max(1, total // per_append)
    done = 0
    started = time.perf_counter()

    async def write(offset: int) -> None:
        nonlocal done
        for n in range(offset, streams, writers):
            sku = f"b{n}"
            events = [NewEvent(data=ProductRegistered(sku=sku, name="bench", unit_price=100, currency="EUR"))]
            events += [
                NewEvent(data=StockReceived(sku=sku, quantity=1, on_hand=k)) for k in range(1, per_append)
            ]
            await store.append(f"stock-{sku}", events)
            done += per_append
            if done % 100_000 == 0:
                progress(
                    f"  backlog {done:>9,}/{total:,} ({done / (time.perf_counter() - started):,.0f} events/s)"
                )

    await asyncio.gather(*(write(i) for i in range(writers)))


class Run(msgspec.Struct, frozen=True):
    seconds: float
    cpu_seconds: float  # this process's CPU time over the same span


async def bare_producer(
    settings: RelaySettings, store: PostgresEventStore, topic_prefix: str, total: int
) -> Run:
    progress("  bare producer: building the same messages in memory")
    messages: list[KafkaMessage] = []
    after = LogPosition.START
    while len(messages) < total:
        batch = await store.read_all_stored(after, limit=10_000)
        if not batch:
            break
        messages += [
            to_message(e, store.registry, source=settings.relay_source, topic_prefix=topic_prefix)
            for e in batch
        ]
        after = batch[-1].log_position
    producer = make_producer(settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        progress(f"  bare producer: sending {len(messages):,} messages")
        started, cpu_started = time.perf_counter(), time.process_time()
        futures = []
        for i, message in enumerate(messages, 1):
            futures.append(
                await producer.send(message.topic, message.value, key=message.key, headers=message.headers)
            )
            if i % 200_000 == 0:
                progress(f"  bare producer: {i:>9,} handed to the producer")
        await asyncio.gather(*futures)
        return Run(time.perf_counter() - started, time.process_time() - cpu_started)
    finally:
        await producer.stop()


async def relay_backlog(settings: RelaySettings, store: PostgresEventStore, total: int) -> Run:
    relay = Relay(settings, store)
    started, cpu_started = time.perf_counter(), time.process_time()
    task = asyncio.create_task(relay.run())
    last_note = started
    while relay.status.published_total < total:
        await asyncio.sleep(0.05)
        if task.done():
            task.result()
        if time.perf_counter() - last_note > 5:
            last_note = time.perf_counter()
            done = relay.status.published_total
            progress(f"  relay: {done:>9,}/{total:,} ({done / (last_note - started):,.0f} events/s)")
    run = Run(time.perf_counter() - started, time.process_time() - cpu_started)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return run


async def relay_latency(settings: RelaySettings, store: PostgresEventStore, seconds: float) -> list[float]:
    topic = f"{settings.relay_topic_prefix}stock"
    sent_at: dict[str, float] = {}
    latencies: list[float] = []
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=settings.kafka_bootstrap_servers, group_id=None, auto_offset_reset="latest"
    )
    await consumer.start()
    await consumer.seek_to_end()
    relay = Relay(settings, store)
    task = asyncio.create_task(relay.run())
    stop = asyncio.Event()

    async def consume() -> None:
        while not stop.is_set() or len(latencies) < len(sent_at):
            batch = await consumer.getmany(timeout_ms=200)
            now = time.perf_counter()
            for records in batch.values():
                for record in records:
                    event_id = dict(record.headers)["ce_id"].decode()
                    if event_id in sent_at:
                        latencies.append(now - sent_at[event_id])
            if stop.is_set() and not batch:
                break

    consumer_task = asyncio.create_task(consume())
    await asyncio.sleep(2)  # let the relay catch up and the consumer settle
    # Four paced writers, each awaiting its appends: the load stays at 1,000 events/s
    # without piling up appends in the pool, which would measure the queue, not the relay.
    writers, rate = 4, 1000
    count = int(seconds * rate)
    started = time.perf_counter()

    async def write(offset: int) -> None:
        for n in range(offset, count, writers):
            delay = started + n / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            event = NewEvent(data=StockReceived(sku="lat", quantity=1, on_hand=n + 1))
            sent_at[str(event.event_id)] = time.perf_counter()
            # 48 streams, a multiple of the writers: each stream has one writer, so appends
            # never race on a stream (a race is a TransactionOrderConflict under load).
            await store.append(f"stock-lat{n % 48}", [event])
            if n and n % 2000 == 0:
                progress(f"  latency: {n:,}/{count:,} appended")

    await asyncio.gather(*(write(i) for i in range(writers)))
    progress(f"  latency: appended at {count / (time.perf_counter() - started):,.0f} events/s")
    await asyncio.sleep(3)
    stop.set()
    await consumer_task
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await consumer.stop()
    return latencies


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000)[int(q * 10) - 1] if len(values) > 1 else float("nan")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--latency-seconds", type=float, default=10.0)
    args = parser.parse_args()
    base_url = os.environ["DATABASE_URL"]
    bootstrap = os.environ["KAFKA_BOOTSTRAP_SERVERS"]
    prefix = f"bench{uuid.uuid4().hex[:6]}."
    async with scratch_database(base_url, "bench_relay") as url:
        kafka_admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await kafka_admin.start()
        try:
            await migrate(url)
            pool = await connect(url, min_size=2, max_size=16)
            store = PostgresEventStore(pool, build_registry())
            settings = RelaySettings(
                database_url=url, kafka_bootstrap_servers=bootstrap, relay_topic_prefix=prefix + "relay.",
                relay_partitions=PARTITIONS,
            )  # fmt: skip
            await kafka_admin.create_topics([NewTopic(f"{prefix}bare.stock", PARTITIONS, 1)])
            progress(f"filling the event store with {args.events:,} events")
            await fill(store, args.events)
            progress("relay: publishing the backlog")
            relay_run = await relay_backlog(settings, store, args.events)
            progress("bare aiokafka producer: sending the same messages")
            bare_run = await bare_producer(settings, store, prefix + "bare.", args.events)
            print_backlog(args.events, relay_run, bare_run)  # now: the latency part may still fail
            progress(f"latency at 1,000 events/s for {args.latency_seconds:.0f}s")
            latency_settings = msgspec.structs.replace(settings, relay_checkpoint="relay-latency")
            await _skip_to_end(store, "relay-latency")
            latencies = await relay_latency(latency_settings, store, args.latency_seconds)
            await store.close()
            await pool.close()
        finally:
            topics = [t for t in await kafka_admin.list_topics() if t.startswith(prefix)]
            await kafka_admin.delete_topics(topics)
            await kafka_admin.close()

    ms = [v * 1000 for v in latencies]
    print()
    expected = int(args.latency_seconds * 1000)
    print(f"append -> consumer latency at 1,000 events/s ({len(ms):,} events received of {expected:,})")
    print(f"  p50 {percentile(ms, 50):7.1f} ms   p99 {percentile(ms, 99):7.1f} ms   max {max(ms):7.1f} ms")


def print_backlog(events: int, relay_run: Run, bare_run: Run) -> None:
    relay_rate, bare_rate = events / relay_run.seconds, events / bare_run.seconds
    print()
    print(f"Relay benchmark: {events:,} events, {PARTITIONS} partitions, acks=all, idempotent producer")
    print(f"{'':38} {'events/s':>12} {'seconds':>9} {'vs bare':>8} {'CPU µs/event':>13}")
    for name, run, share in (
        ("relay: PostgreSQL -> Kafka", relay_run, relay_rate / bare_rate),
        ("bare aiokafka producer (in memory)", bare_run, 1),
    ):
        rate, cpu = events / run.seconds, run.cpu_seconds / events * 1e6
        print(f"{name:38} {rate:>12,.0f} {run.seconds:>9.1f} {share:>8.0%} {cpu:>13.1f}", flush=True)


async def _skip_to_end(store: PostgresEventStore, checkpoint: str) -> None:
    after = LogPosition.START
    while batch := await store.read_all(after, limit=50_000):
        after = batch[-1].log_position
    await store.save_checkpoint(checkpoint, after)


if __name__ == "__main__":
    asyncio.run(main())
