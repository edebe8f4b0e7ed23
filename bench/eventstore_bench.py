"""Event store throughput, read speed, subscriber latency and memory, side by side.

    uv sync --all-packages --group bench      # installs eventsourcing[postgres]
    .venv/bin/python bench/eventstore_bench.py [--seconds 2 --rounds 4] [--read-events 1000000]

Compared in one run, on the same PostgreSQL server, each in its own database:
  eventstore     this library (PostgresEventStore on asyncpg)
  eventsourcing  the PyPI `eventsourcing` library's PostgresApplicationRecorder (psycopg 3,
                 threads); it keeps its log gap-free by locking the table for each insert
  raw asyncpg    plain INSERTs into a table shaped like eventstore.events (same columns and
                 indexes), no version check, no idempotency: the practical limit
  raw + lock     the same plus `LOCK TABLE ... IN EXCLUSIVE MODE` per insert: the other
                 gap-safety technique (serialise appends), to show what it costs

Measured: appends/s with 1 and 16 writers, 1 and 100 events per append; read_all
events/s decoded into msgspec Structs; append-to-subscriber latency p50/p99 at light
load; RSS before/after reading the whole log through read_all. Progress goes to
stderr, the table to stdout. Not a test: numbers depend on the machine (see the header).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import msgspec
from eventstore import EventRegistry, LogPosition, Metadata, NewEvent, PostgresEventStore, connect, migrate
from testkit.databases import scratch_database

WRITER_COUNTS = (1, 16)
BATCH_SIZES = (1, 100)
PAGE = 1000


class Line(msgspec.Struct, frozen=True):
    sku: str
    quantity: int
    price_cents: int


class OrderPlaced(msgspec.Struct, frozen=True):
    order_id: str
    customer_id: str
    lines: list[Line]
    total_cents: int


REGISTRY = EventRegistry()
REGISTRY.register(OrderPlaced, name="order_placed")
METADATA = Metadata(correlation_id="0af7651916cd43dd", actor="user:bench")
DECODER = msgspec.json.Decoder(OrderPlaced)


def order(n: int) -> OrderPlaced:
    return OrderPlaced(f"o-{n}", f"c-{n % 1000}", [Line("sku-1", 2, 1999), Line("sku-2", 1, 500)], 4498)


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# --- the systems under test ---------------------------------------------------------------


class EventStoreSystem:
    name = "eventstore"

    def __init__(self, url: str) -> None:
        self.url = url

    async def open(self) -> None:
        await migrate(self.url)
        self.pool = await connect(self.url, min_size=4, max_size=max(WRITER_COUNTS) + 2)
        self.store = PostgresEventStore(self.pool, REGISTRY)

    async def close(self) -> None:
        await self.store.close()
        await self.pool.close()

    async def append(self, stream: str, version: int, events: list[OrderPlaced]) -> None:
        await self.store.append(
            f"order-{stream}", [NewEvent(data=e, metadata=METADATA) for e in events], version - 1
        )

    async def read_everything(self, on_page: Callable[[int], None]) -> int:
        total, after = 0, LogPosition.START
        while page := await self.store.read_all(after, limit=PAGE):
            total += len(page)
            after = page[-1].log_position
            on_page(total)
        return total

    async def seed(self, count: int) -> None:
        async with self.pool.acquire() as connection:
            await connection.execute("TRUNCATE eventstore.events, eventstore.streams")
            for start in range(0, count, 20_000):
                await connection.execute(SEED_EVENTSTORE, start, min(start + 20_000, count))
            await connection.execute("VACUUM ANALYZE eventstore.events")


SEED_PAYLOAD = """jsonb_build_object('order_id', 'o-' || g, 'customer_id', 'c-' || (g % 1000),
    'lines', jsonb_build_array(jsonb_build_object('sku', 'sku-1', 'quantity', 2, 'price_cents', 1999),
                               jsonb_build_object('sku', 'sku-2', 'quantity', 1, 'price_cents', 500)),
    'total_cents', 4498)"""
SEED_EVENTSTORE = f"""
INSERT INTO eventstore.events
       (stream_id, category, version, event_id, event_type, schema_version, data, metadata)
SELECT 'order-seed' || (g / 100), 'order', g % 100, gen_random_uuid(), 'order_placed', 1, {SEED_PAYLOAD},
       '{{"correlation_id": "0af7651916cd43dd", "actor": "user:bench"}}'::jsonb
  FROM generate_series($1::bigint, $2::bigint - 1) AS g
"""


class RawSystem:
    """INSERTs into a copy of eventstore.events: the cost of the table itself."""

    name = "raw asyncpg"
    lock = False

    def __init__(self, url: str) -> None:
        self.url = url

    async def open(self) -> None:
        await migrate(self.url)  # only to copy the events table's shape
        # Released without asyncpg's reset query, like eventstore.connect() does: the fastest
        # way to use asyncpg's pool.
        self.pool = await asyncpg.create_pool(
            self.url, min_size=4, max_size=max(WRITER_COUNTS) + 2, reset=keep_session
        )
        await self.pool.execute(
            "CREATE SCHEMA IF NOT EXISTS raw; DROP TABLE IF EXISTS raw.events;"
            "CREATE TABLE raw.events (LIKE eventstore.events INCLUDING ALL)"
        )

    async def close(self) -> None:
        await self.pool.close()

    async def append(self, stream: str, version: int, events: list[OrderPlaced]) -> None:
        data = [msgspec.json.encode(e).decode() for e in events]
        metadata = msgspec.json.encode(METADATA).decode()
        args = (f"order-{stream}", version, [uuid.uuid4() for _ in events], data, metadata)
        if not self.lock:
            await self.pool.execute(RAW_INSERT, *args)
            return
        async with self.pool.acquire() as connection, connection.transaction():
            await connection.execute("LOCK TABLE raw.events IN EXCLUSIVE MODE")
            await connection.execute(RAW_INSERT, *args)

    async def read_everything(self, on_page: Callable[[int], None]) -> int:
        total, after = 0, (0, 0)
        while rows := await self.pool.fetch(RAW_READ, *after, PAGE):
            for row in rows:
                DECODER.decode(row[7])
            total += len(rows)
            after = (rows[-1][3], rows[-1][2])
            on_page(total)
        return total

    async def seed(self, count: int) -> None:
        async with self.pool.acquire() as connection:
            await connection.execute("TRUNCATE raw.events")
            for start in range(0, count, 20_000):
                await connection.execute(
                    SEED_EVENTSTORE.replace("eventstore.events", "raw.events"),
                    start,
                    min(start + 20_000, count),
                )
            await connection.execute("VACUUM ANALYZE raw.events")


async def keep_session(_connection: Any) -> None:
    pass


class RawLockedSystem(RawSystem):
    name = "raw + lock"
    lock = True


RAW_INSERT = """
INSERT INTO raw.events (stream_id, category, version, event_id, event_type, schema_version, data, metadata)
SELECT $1, 'order', $2 + e.ord - 1, e.id, 'order_placed', 1, e.data, $5::jsonb
  FROM unnest($3::uuid[], $4::jsonb[]) WITH ORDINALITY AS e (id, data, ord)
"""
RAW_READ = """
SELECT stream_id, version, position, transaction_id, event_id, event_type, schema_version, data, metadata,
       recorded_at
  FROM raw.events WHERE (transaction_id, position) > ($1::xid8, $2::bigint)
 ORDER BY transaction_id, position LIMIT $3
"""


class EventsourcingSystem:
    """eventsourcing's PostgresApplicationRecorder, called from threads (it is synchronous)."""

    name = "eventsourcing"

    def __init__(self, url: str) -> None:
        self.url = url
        self.executor = ThreadPoolExecutor(max_workers=max(WRITER_COUNTS) + 2)

    async def open(self) -> None:
        from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore

        parts = urlsplit(self.url)
        self.datastore = PostgresDatastore(
            dbname=parts.path.lstrip("/"),
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 5432,
            user=parts.username or "",
            password=parts.password or "",
            pool_size=max(WRITER_COUNTS) + 1,
        )
        self.recorder = PostgresApplicationRecorder(self.datastore, events_table_name="stored_events")
        await self._run(self.recorder.create_table)
        self.ids: dict[str, uuid.UUID] = {}

    async def close(self) -> None:
        await self._run(self.datastore.close)
        self.executor.shutdown()

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    def _stored(self, stream: str, version: int, events: list[OrderPlaced]) -> list[Any]:
        from eventsourcing.persistence import StoredEvent

        originator = self.ids.setdefault(stream, uuid.uuid4())
        return [
            StoredEvent(originator, version + i, "bench:OrderPlaced", msgspec.json.encode(e))
            for i, e in enumerate(events)
        ]

    async def append(self, stream: str, version: int, events: list[OrderPlaced]) -> None:
        await self._run(self.recorder.insert_events, self._stored(stream, version, events))

    async def read_everything(self, on_page: Callable[[int], None]) -> int:
        def read() -> int:
            total, last = 0, 0
            while page := self.recorder.select_notifications(last, PAGE, inclusive_of_start=False):
                for notification in page:
                    DECODER.decode(notification.state)
                total += len(page)
                last = page[-1].id
                on_page(total)
            return total

        total: int = await self._run(read)
        return total

    async def seed(self, count: int) -> None:
        connection = await asyncpg.connect(self.url)
        try:
            await connection.execute("TRUNCATE stored_events")
            for start in range(0, count, 20_000):
                await connection.execute(SEED_EVENTSOURCING, start, min(start + 20_000, count))
            await connection.execute("VACUUM ANALYZE stored_events")
        finally:
            await connection.close()


SEED_EVENTSOURCING = f"""
INSERT INTO stored_events (originator_id, originator_version, topic, state)
SELECT md5('seed' || (g / 100))::uuid, g % 100, 'bench:OrderPlaced',
       convert_to(({SEED_PAYLOAD})::text, 'UTF8')
  FROM generate_series($1::bigint, $2::bigint - 1) AS g
"""

type System = EventStoreSystem | RawSystem | EventsourcingSystem


# --- measurements ---------------------------------------------------------------------------


async def timed_appends(
    system: System, writers: int, batch: int, seconds: float, tag: str
) -> tuple[int, float]:
    """Each writer appends ``batch`` events at a time to its own stream until the time is up.

    Returns (appends, elapsed seconds).
    """
    deadline = time.perf_counter() + seconds
    counts = [0] * writers

    async def writer(w: int) -> None:
        stream, version = f"w{tag}-{writers}-{batch}-{w}", 0
        while time.perf_counter() < deadline:
            await system.append(stream, version, [order(version + i) for i in range(batch)])
            version += batch
            counts[w] += 1

    started = time.perf_counter()
    await asyncio.gather(*(writer(w) for w in range(writers)))
    return sum(counts), time.perf_counter() - started


async def read_rate(system: System, expected: int) -> tuple[float, float]:
    """Events/s reading the whole log, and the highest RSS (MiB) seen while reading."""
    last_report = [time.perf_counter()]
    peak = [rss_mib()]

    def on_page(total: int) -> None:
        if total % (50 * PAGE) == 0:
            peak[0] = max(peak[0], rss_mib())
        if time.perf_counter() - last_report[0] > 2:
            last_report[0] = time.perf_counter()
            progress(f"    {system.name}: {total:,} read, RSS {rss_mib():,.1f} MiB")

    started = time.perf_counter()
    total = await system.read_everything(on_page)
    elapsed = time.perf_counter() - started
    assert total == expected, f"{system.name} read {total:,} events, expected {expected:,}"
    return total / elapsed, peak[0]


def percentiles(samples: list[float]) -> tuple[float, float]:
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return cuts[49] * 1000, cuts[98] * 1000


async def eventstore_latency(system: EventStoreSystem, samples: int, interval: float) -> tuple[float, float]:
    sent: dict[uuid.UUID, float] = {}
    latencies: list[float] = []
    done = asyncio.Event()
    tail = LogPosition.START
    while page := await system.store.read_all(tail, limit=10_000):
        tail = page[-1].log_position

    async def subscribe() -> None:
        async with contextlib.aclosing(system.store.subscribe_all(tail, poll_interval=1.0)) as subscription:
            async for event in subscription:
                if event.event_id in sent:
                    latencies.append(time.perf_counter() - sent[event.event_id])
                    if len(latencies) == samples:
                        done.set()
                        return

    subscriber = asyncio.create_task(subscribe())
    await asyncio.sleep(0.5)
    for n in range(samples):
        event = NewEvent(data=order(n), metadata=METADATA)
        sent[event.event_id] = time.perf_counter()
        await system.store.append(f"order-latency-{n % 10}", [event])
        await asyncio.sleep(interval)
    async with asyncio.timeout(30):
        await done.wait()
    await subscriber
    return percentiles(latencies)


async def raw_latency(system: RawSystem, samples: int, interval: float) -> tuple[float, float]:
    """INSERT + pg_notify in one statement; the listener fetches and decodes the row."""
    sent: dict[str, float] = {}
    latencies: list[float] = []
    done = asyncio.Event()
    listener = await asyncpg.connect(system.url)
    reader = await asyncpg.connect(system.url)
    pending: asyncio.Queue[str] = asyncio.Queue()

    def on_notify(_c: object, _p: int, _ch: str, payload: str) -> None:
        pending.put_nowait(payload)

    async def consume() -> None:
        while len(latencies) < samples:
            event_id = await pending.get()
            row = await reader.fetchrow(
                "SELECT data FROM raw.events WHERE event_id = $1", uuid.UUID(event_id)
            )
            DECODER.decode(row["data"])
            latencies.append(time.perf_counter() - sent[event_id])
        done.set()

    await listener.add_listener("raw_events", on_notify)
    consumer = asyncio.create_task(consume())
    try:
        for n in range(samples):
            event_id = uuid.uuid4()
            sent[str(event_id)] = time.perf_counter()
            await system.pool.execute(RAW_INSERT_NOTIFY, f"order-latency-{n}", event_id, order_json(n))
            await asyncio.sleep(interval)
        async with asyncio.timeout(30):
            await done.wait()
    finally:
        consumer.cancel()
        await listener.close()
        await reader.close()
    return percentiles(latencies)


RAW_READ_ONE = "SELECT data FROM raw.events WHERE event_id = $1"


def order_json(n: int) -> str:
    return msgspec.json.encode(order(n)).decode()


RAW_INSERT_NOTIFY = """
WITH inserted AS (
    INSERT INTO raw.events
           (stream_id, category, version, event_id, event_type, schema_version, data, metadata)
    VALUES ($1, 'order', 0, $2, 'order_placed', 1, $3, '{}') RETURNING event_id
) SELECT pg_notify('raw_events', event_id::text) FROM inserted
"""


async def eventsourcing_latency(
    system: EventsourcingSystem, samples: int, interval: float
) -> tuple[float, float]:
    sent: dict[tuple[uuid.UUID, int], float] = {}
    latencies: list[float] = []
    last = await system._run(system.recorder.max_notification_id) or 0
    originator = uuid.uuid4()
    stop = threading.Event()

    def subscribe() -> None:
        with system.recorder.subscribe(gt=last) as subscription:
            for notification in subscription:
                DECODER.decode(notification.state)
                key = (notification.originator_id, notification.originator_version)
                if key in sent:
                    latencies.append(time.perf_counter() - sent[key])
                if len(latencies) == samples or stop.is_set():
                    subscription.stop()

    thread = threading.Thread(target=subscribe)
    thread.start()
    await asyncio.sleep(0.5)
    from eventsourcing.persistence import StoredEvent

    for n in range(samples):
        stored = StoredEvent(originator, n, "bench:OrderPlaced", msgspec.json.encode(order(n)))
        sent[(originator, n)] = time.perf_counter()
        await system._run(system.recorder.insert_events, [stored])
        await asyncio.sleep(interval)
    for _ in range(300):
        if len(latencies) >= samples:
            break
        await asyncio.sleep(0.1)
    stop.set()
    await asyncio.to_thread(thread.join, 10)
    return percentiles(latencies)


# --- running it all ---------------------------------------------------------------------------


def host_description() -> str:
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next(
        (line.split(":", 1)[1].strip() for line in cpuinfo if "model name" in line), platform.processor()
    )
    meminfo = Path("/proc/meminfo").read_text().splitlines()
    mem_kib = int(next(line.split()[1] for line in meminfo if line.startswith("MemTotal")))
    return (
        f"machine: {os.cpu_count()} CPUs ({cpu}), {mem_kib / 1024 / 1024:.1f} GiB RAM, "
        f"{platform.system()} {platform.release()}"
    )


async def machine(url: str) -> list[str]:
    connection = await asyncpg.connect(url)
    try:
        version = await connection.fetchval("SHOW server_version")
        settings = await connection.fetch(
            "SELECT name, setting FROM pg_settings WHERE name IN "
            "('shared_buffers', 'synchronous_commit', 'fsync', 'wal_sync_method', 'max_connections')"
        )
    finally:
        await connection.close()
    return [
        host_description(),
        f"PostgreSQL {version} ({', '.join(f'{s["name"]}={s["setting"]}' for s in settings)}), same host",
        f"Python {platform.python_version()}, asyncpg {asyncpg.__version__}, msgspec {msgspec.__version__}",
    ]


def fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "n/a"
    return f"{value:,.1f}{unit}" if value < 100 else f"{value:,.0f}{unit}"


def ratio(ours: float | None, theirs: float | None, lower_is_better: bool = False) -> str:
    if not ours or not theirs:
        return ""
    return f"{(theirs / ours if lower_is_better else ours / theirs):.2f}x"


async def main(args: argparse.Namespace) -> None:
    server = args.database_url
    header = await machine(server)
    for line in header:
        progress(line)
    results: dict[str, dict[str, float]] = {}
    memory: tuple[float, float, float, float] | None = None

    kinds = [EventStoreSystem, EventsourcingSystem, RawSystem, RawLockedSystem]
    async with contextlib.AsyncExitStack() as stack:
        systems: list[System] = []
        for kind in kinds:
            url = await stack.enter_async_context(
                scratch_database(server, f"bench_{kind.name.replace(' ', '_').replace('+', 'p')}")
            )
            system = kind(url)
            await system.open()
            stack.push_async_callback(system.close)
            systems.append(system)
            results[system.name] = {}

        # Writes: the systems take turns in short slices, `rounds` times per scenario, and
        # each rate is total appends / total time. A noisy neighbour (disk, CPU) then
        # hurts every system alike instead of whichever happened to run at the time.
        for writers in WRITER_COUNTS:
            for batch in BATCH_SIZES:
                key = f"appends/s, {writers} writer(s) x {batch} event(s)"
                totals = {system.name: [0, 0.0] for system in systems}
                for run in range(args.rounds):
                    for system in systems:
                        count, elapsed = await timed_appends(system, writers, batch, args.seconds, str(run))
                        totals[system.name][0] += count
                        totals[system.name][1] += elapsed
                        progress(f"  [{system.name}] {key}: {count / elapsed:,.0f} (slice {run + 1})")
                for name, (count, elapsed) in totals.items():
                    results[name][key] = count / elapsed
                    progress(f"  [{name}] {key}: {count / elapsed:,.0f} overall")

        # Reads: the same events seeded into each system's table.
        read_systems = [s for s in systems if not isinstance(s, RawLockedSystem)]
        for system in read_systems:
            progress(f"  [{system.name}] seeding {args.read_events:,} events")
            await system.seed(args.read_events)
        for system in read_systems:
            progress(f"  [{system.name}] reading {args.read_events:,} events")
            before = rss_mib()
            rate, peak = await read_rate(system, args.read_events)
            if isinstance(system, EventStoreSystem):
                memory = (before, peak, rss_mib(), float(args.read_events))
            results[system.name]["read_all events/s (decoded)"] = rate
            progress(f"  [{system.name}] read_all: {rate:,.0f} events/s")

        for system in read_systems:
            every = f"1 every {args.interval * 1000:.0f} ms"
            progress(f"  [{system.name}] subscriber latency ({args.latency_samples} events, {every})")
            if isinstance(system, EventStoreSystem):
                p50, p99 = await eventstore_latency(system, args.latency_samples, args.interval)
            elif isinstance(system, EventsourcingSystem):
                p50, p99 = await eventsourcing_latency(system, args.latency_samples, args.interval)
            else:
                p50, p99 = await raw_latency(system, args.latency_samples, args.interval)
            results[system.name]["subscriber latency p50 (ms)"] = p50
            results[system.name]["subscriber latency p99 (ms)"] = p99
            progress(f"  [{system.name}] p50 {p50:.2f} ms, p99 {p99:.2f} ms")

    print_table(header, results, memory)


def print_table(
    header: list[str], results: dict[str, dict[str, float]], memory: tuple[float, float, float, float] | None
) -> None:
    ours, es, raw, locked = (
        results[name] for name in ("eventstore", "eventsourcing", "raw asyncpg", "raw + lock")
    )
    print()
    for line in header:
        print(f"- {line}")
    print()
    print(
        "| measurement | eventstore | eventsourcing | eventstore / eventsourcing "
        "| raw asyncpg | eventstore / raw | raw + lock |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for key in ours:
        lower = "latency" in key
        mine = ours.get(key)
        print(
            f"| {key} | {fmt(mine)} | {fmt(es.get(key))} | {ratio(mine, es.get(key), lower)} "
            f"| {fmt(raw.get(key))} | {ratio(mine, raw.get(key), lower)} | {fmt(locked.get(key))} |"
        )
    if memory is not None:
        before, peak, after, events = memory
        print(
            f"\nRSS while reading {events:,.0f} events through read_all: {before:,.1f} MiB before, "
            f"{peak:,.1f} MiB at most during, {after:,.1f} MiB after."
        )
    print("\nRatios are eventstore's advantage: >1 means eventstore is faster (or, for latency, quicker).")
    print("100-event rows count appends; multiply by 100 for events/s.")


def default_url() -> str | None:
    if os.environ.get("DATABASE_URL"):
        return os.environ["DATABASE_URL"]
    env = Path(__file__).resolve().parent.parent / ".devstack" / "env"
    if env.is_file():
        for line in env.read_text().splitlines():
            if line.startswith("DATABASE_URL="):
                return line.split("=", 1)[1].strip().strip("'\"")
    return None


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--database-url", default=default_url(), help="server to use (default: $DATABASE_URL)"
    )
    parser.add_argument("--seconds", type=float, default=2.0, help="length of one write slice")
    parser.add_argument("--rounds", type=int, default=4, help="slices per system and write scenario")
    parser.add_argument("--read-events", type=int, default=1_000_000)
    parser.add_argument("--latency-samples", type=int, default=500)
    parser.add_argument("--interval", type=float, default=0.01, help="seconds between latency appends")
    arguments = parser.parse_args()
    if not arguments.database_url:
        sys.exit("DATABASE_URL is not set: start the local stack with ./dev up")
    asyncio.run(main(arguments))
