"""Command throughput and latency through the real HTTP server, next to the same work done directly.

    .venv/bin/python bench/command_bench.py [--seconds 10] [--clients 32] [--workload place lifecycle]
        [--cached-catalogue] [--settled 0]

Needs DATABASE_URL and REDIS_URL (the environment, or .devstack/env after `./dev up`).
Each run gets a database of its own on that server, dropped afterwards.

Compared in one run, at the same concurrency, with the same pool size:
  direct  `eventstore.execute` in this process, reading what the service reads first: the
          products of an order's lines (their stock streams: prices come from the catalogue),
          the order a reservation names (it must be for that order's line), through a state
          cache as the service does (`eventstore.StateCache`); then load the
          stream, decide, append (the practical limit of the write path: no HTTP, no auth, no
          idempotency key; a new order's stream is loaded too, two round trips that find
          nothing, which the service skips for the stream ids it makes up)
  cached  (with --cached-catalogue, place and lifecycle only) the same as direct with the
          catalogue read once before the run instead of per command: the cost of the reads
  http    the command service as its own process (uvicorn, 1 or more workers) with everything
          on: JWT verification, Redis rate limiting, Idempotency-Key written in the append's
          own statement, OpenTelemetry tracing of HTTP and asyncpg (recorded, not exported),
          JSON access log off

Workloads:
  place      every command places a new order (a new stream)
  lifecycle  each client places an order, then cancels it (half the commands load and
             extend an existing stream)
  reserve    every command reserves one unit of the same SKU (one stream, plenty of stock)
             for an order of one unit of it placed before the run (--reserve-orders of them
             per path): contention. The direct path retries a lost race up to 5 times, the
             service's default, and counts the commands that still lost as errors; the service
             also queues the commands of one stream within each worker, so only workers race

--settled N: before the run, N orders have been reserved and shipped from sku-1, so its
state (which remembers every order's reservation) is as big as a busy product's.

The HTTP clients are a minimal keep-alive HTTP/1.1 client on asyncio streams, so that
on a small machine the load generator takes as little CPU from the server as possible.
Progress goes to stderr, the table to stdout. Not a test: the numbers depend on the
machine, printed in the header.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shlex
import signal
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
from command_service.related import Related
from eventstore import Metadata, NewEvent, PostgresEventStore, StateCache, connect, execute, load, migrate
from fulfilment.deciders import ORDERS, STOCK
from fulfilment.events import StockReservationCommitted, StockReserved
from fulfilment.orders import CancelOrder, OrderLine, PlaceOrder
from fulfilment.registry import build_registry
from fulfilment.rules import check_reservation
from fulfilment.stock import ReceiveStock, RegisterProduct, ReserveStock, StockItem
from fulfilment.values import order_stream, stock_stream
from servicekit.tokens import mint
from testkit.databases import scratch_database
from testkit.harness import free_port

SECRET = "benchmark-secret-that-is-long-enough-for-hs256"  # noqa: S105 - a throwaway key for a local run
ISSUER, AUDIENCE = "https://bench.local", "command-api"
POOL_SIZE = 16
MAX_ATTEMPTS = 5  # the command service's default
HOT_SKU = "hot-1"
# The products every order is for, at their catalogue prices (EUR cents).
PRICES = {"sku-1": 1999, "sku-2": 500}
LINES = (OrderLine(sku="sku-1", quantity=2), OrderLine(sku="sku-2", quantity=1))
PLACE_BODY = json.dumps(
    {"lines": [{"sku": line.sku, "quantity": line.quantity} for line in LINES], "currency": "EUR"}
).encode()


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def server_urls() -> tuple[str, str]:
    values = dict(os.environ)
    env_file = Path(__file__).resolve().parents[1] / ".devstack" / "env"
    if env_file.is_file():
        for line in env_file.read_text().splitlines():
            key, _, value = line.partition("=")
            if value and key not in values:
                values[key] = shlex.split(value)[0]
    try:
        return values["DATABASE_URL"], values["REDIS_URL"]
    except KeyError as missing:
        sys.exit(f"set {missing.args[0]} (or run ./dev up)")


@dataclass
class Run:
    name: str
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    elapsed: float = 0.0

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.elapsed if self.elapsed else 0.0

    def percentile(self, p: float) -> float:
        if len(self.latencies) < 2:
            return float("nan")
        return statistics.quantiles(self.latencies, n=100, method="inclusive")[int(p) - 1] * 1000


async def drive(run: Run, clients: int, seconds: float, one_round: Callable[[int], Awaitable[int]]) -> None:
    """`clients` loops each running `one_round(client)` (which returns its command count) for `seconds`."""
    deadline = time.perf_counter() + seconds

    async def client(number: int) -> None:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            try:
                commands = await one_round(number)
            except Exception as error:
                run.errors += 1
                if run.errors <= 3:
                    progress(f"  {run.name}: {error!r}")
                continue
            # A round of n commands counts as n commands of equal share of the round's time.
            share = (time.perf_counter() - started) / max(commands, 1)
            run.latencies.extend([share] * commands)

    started = time.perf_counter()
    await asyncio.gather(*(client(n) for n in range(clients)))
    run.elapsed += time.perf_counter() - started


type OneRound = Callable[[int], Awaitable[int]]


@dataclass(frozen=True)
class Setup:
    """What a run's database holds before it starts."""

    workload: str
    settled: int = 0
    reserve_orders: int = 0


async def prepare(store: PostgresEventStore, setup: Setup) -> list[uuid.UUID]:
    """Register the products (and for `reserve`, stock the hot SKU and place the orders to reserve for).

    Returns the ids of the orders placed for the `reserve` workload (none for the others).
    """
    for sku, price in PRICES.items():
        register = RegisterProduct(sku=sku, name=sku, unit_price=price, currency="EUR")
        await execute(store, STOCK, stock_stream(sku), register)
    if setup.settled:
        await settle_history(store, "sku-1", setup.settled)
    if setup.workload != "reserve":
        return []
    hot = stock_stream(HOT_SKU)
    await execute(store, STOCK, hot, RegisterProduct(sku=HOT_SKU, name="Hot", unit_price=100, currency="EUR"))
    for _ in range(10):
        await execute(store, STOCK, hot, ReceiveStock(sku=HOT_SKU, quantity=100_000))
    catalogue = await Related(store).stock_items([HOT_SKU])
    line = (OrderLine(sku=HOT_SKU, quantity=1),)
    order_ids = [uuid.uuid4() for _ in range(setup.reserve_orders)]

    async def place(chunk: list[uuid.UUID]) -> None:
        for order_id in chunk:
            command = PlaceOrder(
                order_id=order_id, customer_id="bench", lines=line, currency="EUR", catalogue=catalogue
            )
            await execute(store, ORDERS, order_stream(order_id), command)

    await asyncio.gather(*(place(order_ids[n::POOL_SIZE]) for n in range(POOL_SIZE)))
    return order_ids


async def settle_history(store: PostgresEventStore, sku: str, orders: int) -> None:
    """`orders` orders reserved and shipped from `sku`, appended in batches, then snapshotted."""
    stream = stock_stream(sku)
    await execute(store, STOCK, stream, ReceiveStock(sku=sku, quantity=orders))
    on_hand = orders
    for start in range(0, orders, 250):
        events: list[NewEvent] = []
        for _ in range(start, min(start + 250, orders)):
            order_id, on_hand = uuid.uuid4(), on_hand - 1
            reserved = StockReserved(sku=sku, order_id=order_id, quantity=1, available=on_hand)
            shipped = StockReservationCommitted(sku=sku, order_id=order_id, quantity=1, on_hand=on_hand)
            events += [NewEvent(data=reserved), NewEvent(data=shipped)]
        await store.append(stream, events)
    loaded = await load(store, STOCK, stream)
    assert loaded.state is not None
    await store.save_snapshot(stream, loaded.version, loaded.state)


type Catalogue = Callable[[], Awaitable[dict[str, StockItem]]]


async def catalogue_of(related: Related, cached: bool) -> Callable[[], Awaitable[dict[str, StockItem]]]:
    """How a place reads its lines' products: from the store each time, or once (`cached`)."""
    if cached:
        items = await related.stock_items(PRICES)

        async def once() -> dict[str, StockItem]:
            return items

        return once

    async def every_time() -> dict[str, StockItem]:
        return await related.stock_items(line.sku for line in LINES)

    return every_time


# --- direct: decide and append on the event store in this process -------------------------------


@contextlib.asynccontextmanager
async def direct(database_url: str, setup: Setup, *, cached: bool = False) -> AsyncIterator[OneRound]:
    pool = await connect(database_url, min_size=POOL_SIZE, max_size=POOL_SIZE)
    store = PostgresEventStore(pool, build_registry())
    metadata = Metadata(correlation_id="bench", actor="bench")
    workload = setup.workload
    orders = await prepare(store, setup)
    states = StateCache()  # as the service keeps one
    related = Related(store, states)
    catalogue = await catalogue_of(related, cached)

    async def one_round(client: int) -> int:
        if workload == "reserve":
            order_id = next_order(orders)
            check_reservation(await related.order(order_id), order_id, HOT_SKU, 1)
            reserve = ReserveStock(sku=HOT_SKU, order_id=order_id, quantity=1)
            stream = stock_stream(HOT_SKU)
            await execute(
                store, STOCK, stream, reserve, metadata=metadata, max_attempts=MAX_ATTEMPTS, cache=states
            )
            return 1
        order_id, customer = uuid.uuid4(), f"customer-{client}"
        place = PlaceOrder(
            order_id=order_id, customer_id=customer, lines=LINES, currency="EUR", catalogue=await catalogue()
        )
        await execute(store, ORDERS, order_stream(order_id), place, metadata=metadata, cache=states)
        if workload == "place":
            return 1
        cancel = CancelOrder(order_id=order_id, customer_id=customer)
        await execute(store, ORDERS, order_stream(order_id), cancel, metadata=metadata, cache=states)
        return 2

    try:
        yield one_round
    finally:
        await store.close()
        await pool.close()


def next_order(orders: list[uuid.UUID]) -> uuid.UUID:
    """An order placed before the run that nothing has reserved for yet."""
    if not orders:
        raise RuntimeError("no order left to reserve for: raise --reserve-orders")
    return orders.pop()


# --- http: the same through the command service ---------------------------------------------------


class HttpClient:
    """One keep-alive HTTP/1.1 connection, one request at a time: just enough for this benchmark."""

    def __init__(self, port: int, token: str) -> None:
        self._port = port
        self._auth = f"Authorization: Bearer {token}\r\n".encode()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
            f"Idempotency-Key: {uuid.uuid4()}\r\nContent-Length: {len(body)}\r\n"
        ).encode()
        # The server closes a connection left idle longer than its keep-alive timeout (uvicorn: 5 s),
        # which happens while the other paths take their turns: then connect again, once.
        for _ in range(2):
            if self._writer is None:
                self._reader, self._writer = await asyncio.open_connection("127.0.0.1", self._port)
            assert self._reader is not None
            try:
                self._writer.write(head + self._auth + b"\r\n" + body)
                status_line = await self._reader.readline()
            except ConnectionError:
                status_line = b""
            if status_line:
                break
            await self.close()
        else:
            raise ConnectionError("the server closed the connection without answering")
        assert self._reader is not None
        length = 0
        while (line := await self._reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
        payload = await self._reader.readexactly(length)
        return int(status_line.split()[1]), payload

    async def close(self) -> None:
        if self._writer is not None:
            writer, self._reader, self._writer = self._writer, None, None
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


async def start_service(
    database_url: str, redis_url: str, port: int, *, workers: int = 1, sample_ratio: float = 1.0
) -> asyncio.subprocess.Process:
    environment = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "JWT_ISSUER": ISSUER,
        "JWT_AUDIENCE": AUDIENCE,
        "JWT_SECRET": SECRET,
        "PORT": str(port),
        # The same number of connections in total as the direct run.
        "POOL_MIN_SIZE": str(POOL_SIZE // workers),
        "POOL_MAX_SIZE": str(POOL_SIZE // workers),
        "WORKERS": str(workers),
        # Every trace recorded at 1.0 (the default), else that share of the traces callers start.
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": str(sample_ratio),
        "RATE_LIMIT_PER_SECOND": "1000000",
        "RATE_LIMIT_BURST": "1000000",
        "ACCESS_LOG": "false",
        "LOG_LEVEL": "WARNING",
    }
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "command_service", env=environment)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /health/ready HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
            ready = (await reader.read()).startswith(b"HTTP/1.1 200")
            writer.close()
            if ready:
                return process
        except OSError:
            pass
        await asyncio.sleep(0.2)
    process.kill()
    raise RuntimeError("the command service did not become ready")


@contextlib.asynccontextmanager
async def http(
    database_url: str, redis_url: str, setup: Setup, clients: int, *, workers: int, sample_ratio: float
) -> AsyncIterator[OneRound]:
    workload = setup.workload
    pool = await connect(database_url, min_size=POOL_SIZE, max_size=POOL_SIZE)
    try:
        orders = await prepare(PostgresEventStore(pool, build_registry()), setup)
    finally:
        await pool.close()
    port = free_port()
    service = await start_service(database_url, redis_url, port, workers=workers, sample_ratio=sample_ratio)
    connections = [
        HttpClient(
            port,
            mint(
                subject=f"customer-{n}",
                roles=["customer", "service"],
                issuer=ISSUER,
                audience=AUDIENCE,
                key=SECRET,
                ttl_seconds=3600,
            ),
        )
        for n in range(clients)
    ]

    async def one_round(client: int) -> int:
        connection = connections[client]
        if workload == "reserve":
            reserve = json.dumps({"order_id": str(next_order(orders)), "quantity": 1}).encode()
            status, body = await connection.post(f"/products/{HOT_SKU}/reservations", reserve)
            if status != 200:
                raise RuntimeError(f"reserve: {status} {body[:200]!r}")
            return 1
        status, body = await connection.post("/orders", PLACE_BODY)
        if status != 201:
            raise RuntimeError(f"place order: {status} {body[:200]!r}")
        if workload == "place":
            return 1
        order_id = json.loads(body)["order_id"]
        status, body = await connection.post(f"/orders/{order_id}/cancel", b"{}")
        if status != 200:
            raise RuntimeError(f"cancel order: {status} {body[:200]!r}")
        return 2

    try:
        yield one_round
    finally:
        for connection in connections:
            await connection.close()
        service.send_signal(signal.SIGTERM)
        await asyncio.wait_for(service.wait(), 30)


# --- the run ----------------------------------------------------------------------------------------


async def fresh_database(stack: contextlib.AsyncExitStack, admin_url: str) -> str:
    """A migrated database of its own, dropped when `stack` closes."""
    url = await stack.enter_async_context(scratch_database(admin_url, "bench_command"))
    await migrate(url)  # the command service migrates its own schema when it starts
    return url


def machine(server_version: str) -> str:
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return (
        f"machine: {os.cpu_count()} CPUs (nproc), {cpu}; Python {platform.python_version()}; "
        f"PostgreSQL {server_version}; {POOL_SIZE} connections on every path"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--seconds", type=float, default=10.0, help="measured time per path (after 1 s warm-up)"
    )
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument(
        "--workload",
        nargs="+",
        choices=["place", "lifecycle", "reserve"],
        default=["place", "lifecycle", "reserve"],
    )
    parser.add_argument(
        "--workers", type=int, nargs="+", default=[1, 2], help="server processes, one row each"
    )
    parser.add_argument("--rounds", type=int, default=5, help="turns each path takes (the seconds are split)")
    parser.add_argument(
        "--sample-ratio",
        type=float,
        default=1.0,
        help="share of traces the server records (parentbased_traceidratio; 1.0: every trace)",
    )
    parser.add_argument(
        "--cached-catalogue",
        action="store_true",
        help="add a direct row that reads the catalogue once, not per order (place, lifecycle)",
    )
    parser.add_argument(
        "--settled", type=int, default=0, help="orders already reserved and shipped from sku-1"
    )
    parser.add_argument(
        "--reserve-orders",
        type=int,
        default=5000,
        help="orders placed before a reserve run, per path: more than the path reserves",
    )
    args = parser.parse_args()
    admin_url, redis_url = server_urls()
    connection = await asyncpg.connect(admin_url)
    server_version = await connection.fetchval("SHOW server_version")
    await connection.close()

    rows: list[tuple[str, Run]] = []
    for workload in args.workload:
        setup = Setup(workload, settled=args.settled, reserve_orders=args.reserve_orders)
        cached = ["cached"] if args.cached_catalogue and workload != "reserve" else []
        paths = ["direct", *cached, *(f"http x{workers}" for workers in args.workers)]
        # One stack: the databases, entered first, are dropped after the services using them stop.
        async with contextlib.AsyncExitStack() as stack:
            databases = [await fresh_database(stack, admin_url) for _ in paths]
            rounds: dict[str, OneRound] = {}
            for path, url in zip(paths, databases, strict=True):
                progress(f"{workload}: preparing {path}")
                if path in ("direct", "cached"):
                    rounds[path] = await stack.enter_async_context(
                        direct(url, setup, cached=path == "cached")
                    )
                else:
                    workers = int(path.rpartition("x")[2])
                    rounds[path] = await stack.enter_async_context(
                        http(
                            url,
                            redis_url,
                            setup,
                            args.clients,
                            workers=workers,
                            sample_ratio=args.sample_ratio,
                        )
                    )
            runs = {path: Run(path) for path in paths}
            for path in paths:  # warm-up: connections, caches, JIT-less but lazy imports
                await drive(Run(path), args.clients, 1.0, rounds[path])
            # The paths take turns in short slices, so a change in the machine's load (it may be
            # shared) hits them alike instead of skewing whichever ran at the time.
            slice_seconds = args.seconds / args.rounds
            for number in range(args.rounds):
                progress(f"{workload}: round {number + 1}/{args.rounds}")
                for path in paths:
                    await drive(runs[path], args.clients, slice_seconds, rounds[path])
        rows.extend((workload, runs[path]) for path in paths)

    print(machine(server_version))
    print(
        f"{args.clients} concurrent clients, {args.seconds:.0f} s per row in {args.rounds} turns; "
        f"http xN: N uvicorn worker processes; traces recorded: {args.sample_ratio:.0%}; "
        f"sku-1 has {args.settled} orders settled; load average {os.getloadavg()[0]:.1f}\n"
    )
    print("| workload  | path    | commands | commands/s | p50 ms | p99 ms | errors | http/direct |")
    print("|-----------|---------|---------:|-----------:|-------:|-------:|-------:|------------:|")
    direct_rates = {workload: run.rate for workload, run in rows if run.name == "direct"}
    for workload, run in rows:
        ratio = (
            f"{run.rate / direct_rates[workload]:.0%}"
            if run.name.startswith("http") and direct_rates[workload]
            else ""
        )
        print(
            f"| {workload:<9} | {run.name:<7} | {len(run.latencies):>8} | {run.rate:>10.0f} | "
            f"{run.percentile(50):>6.1f} | {run.percentile(99):>6.1f} | {run.errors:>6} | {ratio:>11} |"
        )


if __name__ == "__main__":
    asyncio.run(main())
