"""The order flow at the cost of its parts: the saga against a script sending the same commands.

    .venv/bin/python bench/flow_bench.py [--orders 300] [--clients 16] [--rate R] [--runs 3]

Each run starts its own command service, relay, payment sandbox (no latency) and,
for the saga side, the saga service as processes, on fresh databases and topics.
`--clients` clients place `--orders` orders of 2 lines as fast as they are taken
(or started at `--rate` per second). The saga side only places orders; the saga
drives each to confirmation (8 commands and a provider round trip). The script
side sends the flow's 8 commands itself: place, reserve twice, request payment,
record the authorisation, confirm, commit twice. A run ends when every order is
confirmed and the relay has published every event.

Reported per run and side: orders/s, p50/p99 from placing to confirmation, and
CPU (user + system) per order of every process, PostgreSQL backends split by the
database they serve (the store's, the saga's own) plus PostgreSQL's own
processes (WAL writer, checkpointer, ...). The sides alternate, run after run;
the summary gives the median and the spread (min-max) of each figure.

Needs the local stack (`./dev up --infra`) and its environment. Progress on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil  # type: ignore[import-untyped]
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from eventstore import migrate
from httpx_aiohttp import HttpxAiohttpClient
from testkit.databases import scratch_database
from testkit.harness import ServiceProcess, running_service, token_factory

SECRET = "bench-secret-that-is-long-enough-for-hs256"  # noqa: S105 - a local benchmark key
ISSUER, AUDIENCE = "bench", "bench"
PROVIDER_SECRET = "bench-provider-secret-0123"  # noqa: S105

# Orders of two lines drawn from this many products: two orders rarely contend for a stock stream.
PRICES = {f"P{n}": 100 + 10 * n for n in range(50)}

SIDES = ("script", "saga")


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


# --- CPU accounting -------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its live descendants (0 once it has gone)."""
    try:
        root = psutil.Process(pid)
        total = 0.0
        for process in (root, *root.children(recursive=True)):
            times = process.cpu_times()
            total += times.user + times.system
        return total
    except psutil.NoSuchProcess:
        return 0.0


def postgres_processes(backend_of: dict[int, str]) -> Iterator[tuple[str, psutil.Process]]:
    """Every PostgreSQL server process, labelled by the database its backend serves ("" for another
    database's), or `shared` for the server's own processes (WAL writer, checkpointer, ...)."""
    for process in psutil.process_iter(["name", "cmdline"]):
        name = process.info["name"] or ""
        if name.startswith("postgres") or (process.info["cmdline"] or [""])[0].startswith("postgres"):
            yield backend_of.get(process.pid, "postgres (shared)"), process


@dataclass
class CpuMeter:
    """Counts CPU per labelled part between `start` and `stop`."""

    processes: dict[str, int]
    databases: dict[str, str]  # database name -> label
    watcher: asyncpg.Connection[Any]
    before: dict[str, float] = field(default_factory=dict)
    xacts: dict[str, float] = field(default_factory=dict)
    seen: dict[int, tuple[str, float]] = field(default_factory=dict)

    async def _backends(self) -> dict[int, str]:
        rows = await self.watcher.fetch(
            "SELECT pid, datname FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND datname IS NOT NULL"
        )
        # Backends of other databases (other work on the same server) are left out.
        return {row["pid"]: self.databases.get(row["datname"], "") for row in rows}

    async def _postgres(self) -> dict[int, tuple[str, float]]:
        backends = await self._backends()
        sampled = {}
        for label, process in postgres_processes(backends):
            with contextlib.suppress(psutil.NoSuchProcess):
                times = process.cpu_times()
                if label:
                    sampled[process.pid] = (label, times.user + times.system)
        return sampled

    async def transactions(self) -> dict[str, float]:
        """Transactions committed per database (a statement outside a transaction is one)."""
        rows = await self.watcher.fetch(
            "SELECT datname, xact_commit FROM pg_stat_database WHERE datname = any($1::text[])",
            list(self.databases),
        )
        return {self.databases[row["datname"]]: float(row["xact_commit"]) for row in rows}

    async def start(self) -> None:
        self.xacts = await self.transactions()
        self.before = {name: cpu_seconds(pid) for name, pid in self.processes.items()}
        self.before["client"] = time.process_time()
        self.seen = await self._postgres()

    async def sample(self) -> None:
        """Remember backends that appeared since (their CPU counts from their start)."""
        for pid, (label, _) in (await self._postgres()).items():
            self.seen.setdefault(pid, (label, 0.0))

    async def stop(self) -> tuple[dict[str, float], dict[str, float]]:
        # Backends report their counts when idle, at most once a second.
        await asyncio.sleep(1.2)
        xacts = {
            label: count - self.xacts.get(label, 0.0) for label, count in (await self.transactions()).items()
        }
        used = {name: cpu_seconds(pid) - self.before[name] for name, pid in self.processes.items()}
        used["client"] = time.process_time() - self.before["client"]
        now = await self._postgres()
        for pid, (label, at_start) in self.seen.items():
            if pid in now:
                used[label] = used.get(label, 0.0) + now[pid][1] - at_start
        for pid, (label, cpu) in now.items():
            if pid not in self.seen:
                used[label] = used.get(label, 0.0) + cpu
        return used, xacts


# --- the suite ------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def suite(
    store_url: str, saga_url: str | None, logs: Path, concurrency: int
) -> AsyncIterator[dict[str, ServiceProcess]]:
    """The command service, relay, sandbox and (given its database) the saga, as processes."""
    await migrate(store_url)
    kafka = os.environ["KAFKA_BOOTSTRAP_SERVERS"]
    prefix = f"flow{uuid.uuid4().hex[:8]}."
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(f"{prefix}{name}", 6, 1) for name in ("order", "stock", "payment")]
        )
    finally:
        await admin.close()
    jwt = {"JWT_SECRET": SECRET, "JWT_ISSUER": ISSUER, "JWT_AUDIENCE": AUDIENCE, "ACCESS_LOG": "false"}
    unlimited = {"COMMAND_RATE_LIMIT_PER_SECOND": "100000", "COMMAND_RATE_LIMIT_BURST": "100000"}
    async with contextlib.AsyncExitStack() as stack:

        async def start(name: str, module: str, env: dict[str, str], port: str) -> ServiceProcess:
            log = logs / f"{name}.log"
            return await stack.enter_async_context(
                running_service(module, env, log=log, port_variable=port, ready=False)
            )

        processes = {
            "command": await start(
                "command", "command_service", {"DATABASE_URL": store_url, **jwt, **unlimited}, "COMMAND_PORT"
            ),
            "relay": await start(
                "relay",
                "relay_service",
                {
                    "DATABASE_URL": store_url,
                    "RELAY_TOPIC_PREFIX": prefix,
                    "RELAY_LOCK_KEY": str(random.randrange(1, 2**62)),
                },
                "RELAY_PORT",
            ),
        }
        if saga_url is not None:
            processes["sandbox"] = await start(
                "sandbox",
                "saga_service.sandbox",
                {
                    "SANDBOX_SECRET": PROVIDER_SECRET,
                    "SANDBOX_LATENCY_MS": "0",
                    "SANDBOX_JITTER_MS": "0",
                    "ACCESS_LOG": "false",
                },
                "SANDBOX_PORT",
            )
            processes["saga"] = await start(
                "saga",
                "saga_service",
                {
                    "SAGA_DATABASE_URL": saga_url,
                    "SAGA_COMMAND_URL": processes["command"].url,
                    "SAGA_PROVIDER_URL": processes["sandbox"].url,
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
        await asyncio.gather(*(process.ready(120) for process in processes.values()))
        yield processes


def headers(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Idempotency-Key": str(uuid.uuid4())}


async def seed(client: httpx.AsyncClient, staff: str) -> None:
    for sku, price in PRICES.items():
        for path, body in (
            ("/products", {"sku": sku, "name": sku, "unit_price": price, "currency": "EUR"}),
            (f"/products/{sku}/receipts", {"quantity": 100_000}),
        ):
            response = await client.post(path, json=body, headers=headers(staff))
            response.raise_for_status()


def an_order() -> dict[str, Any]:
    """One unit each of two products; no prices: the catalogue's are paid."""
    return {
        "lines": [{"sku": sku, "quantity": 1} for sku in random.sample(list(PRICES), 2)],
        "currency": "EUR",
    }


def total_of(order: dict[str, Any]) -> int:
    return sum(PRICES[line["sku"]] * line["quantity"] for line in order["lines"])


async def offer(
    count: int, clients: int, rate: float | None, job: Callable[[], Coroutine[Any, Any, None]]
) -> None:
    """Run `job` `count` times: by `clients` workers back to back, or started at `rate` per second."""
    if rate is None:
        left = [count]

        async def worker() -> None:
            while left[0] > 0:
                left[0] -= 1
                await job()

        await asyncio.gather(*(worker() for _ in range(clients)))
        return
    began = time.monotonic()
    jobs: list[asyncio.Task[None]] = []
    for n in range(count):
        await asyncio.sleep(max(0.0, began + n / rate - time.monotonic()))
        jobs.append(asyncio.create_task(job()))
    await asyncio.gather(*jobs)


# --- one run --------------------------------------------------------------------------------------


@dataclass
class Outcome:
    side: str
    orders: int
    seconds: float
    durations: list[float]
    cpu: dict[str, float]
    transactions: dict[str, float]

    @property
    def rate(self) -> float:
        return self.orders / self.seconds

    def ms_per_order(self, part: str) -> float:
        return 1000 * self.cpu.get(part, 0.0) / self.orders

    def per_order(self, database: str) -> float:
        return self.transactions.get(database, 0.0) / self.orders

    @property
    def total_ms(self) -> float:
        return 1000 * sum(self.cpu.values()) / self.orders


async def place_orders(
    client: httpx.AsyncClient, customer: str, orders: int, clients: int, rate: float | None
) -> dict[str, float]:
    placed: dict[str, float] = {}

    async def place() -> None:
        begun = time.time()
        response = await client.post("/orders", json=an_order(), headers=headers(customer))
        response.raise_for_status()
        placed[response.json()["order_id"]] = begun

    await offer(orders, clients, rate, place)
    return placed


async def script_flows(
    client: httpx.AsyncClient, customer: str, service: str, orders: int, clients: int, rate: float | None
) -> list[float]:
    durations: list[float] = []

    async def post(path: str, body: Any, token: str) -> httpx.Response:
        response = await client.post(path, json=body, headers=headers(token))
        response.raise_for_status()
        return response

    async def flow() -> None:
        begun = time.time()
        body = an_order()
        order = (await post("/orders", body, customer)).json()["order_id"]
        for line in body["lines"]:
            await post(f"/products/{line['sku']}/reservations", {"order_id": order, "quantity": 1}, service)
        await post("/payments", {"order_id": order, "amount": total_of(body), "currency": "EUR"}, service)
        await post(f"/payments/{order}/authorization", {"provider_reference": "script"}, service)
        await post(f"/orders/{order}/confirm", None, service)
        for line in body["lines"]:
            await post(f"/products/{line['sku']}/reservations/{order}/commit", None, service)
        durations.append(time.time() - begun)

    await offer(orders, clients, rate, flow)
    return durations


async def sagas_done(saga_url: str, orders: int, meter: CpuMeter) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(saga_url)
    try:
        while True:
            rows = await connection.fetch(
                "SELECT saga_id::text AS id, outcome, extract(epoch FROM updated_at) AS done "
                "FROM saga.sagas WHERE phase = 'done'"
            )
            if len(rows) >= orders:
                break
            await meter.sample()
            await asyncio.sleep(0.2)
    finally:
        await connection.close()
    outcomes = {row["outcome"] for row in rows}
    assert outcomes == {"confirmed"}, f"sagas ended {outcomes}, not all confirmed"
    return rows


async def relay_caught_up(relay: ServiceProcess, store_url: str) -> float:
    """When the relay has published the last event of the store (wall clock)."""
    connection = await asyncpg.connect(store_url)
    try:
        last = await connection.fetchval("SELECT max(position) FROM eventstore.events")
    finally:
        await connection.close()
    while True:
        report = (await relay.get("/status")).json()
        if report["last_position"] is not None and report["last_position"] >= last:
            return time.time()
        await asyncio.sleep(0.05)


async def run_side(
    side: str, server: str, orders: int, clients: int, rate: float | None, watcher: asyncpg.Connection[Any]
) -> Outcome:
    tokens = token_factory(secret=SECRET, issuer=ISSUER, audience=AUDIENCE)
    customer, service = tokens("bench-customer", ["customer"]), tokens("bench-script", ["service"])
    with tempfile.TemporaryDirectory() as logs:
        async with (
            scratch_database(server, "flow") as store_url,
            scratch_database(server, "flow") as saga_url,
            suite(store_url, saga_url if side == "saga" else None, Path(logs), clients) as processes,
        ):
            command_url = processes["command"].url
            limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
            # The client the saga uses (httpx on aiohttp), so both sides pay the same per request.
            async with HttpxAiohttpClient(base_url=command_url, timeout=30, limits=limits) as client:
                await seed(client, tokens("bench-staff", ["staff"]))
                await relay_caught_up(processes["relay"], store_url)
                meter = CpuMeter(
                    processes={
                        name: process.process.pid for name, process in processes.items() if process.process
                    },
                    databases={
                        store_url.rsplit("/", 1)[1]: "postgres (store)",
                        saga_url.rsplit("/", 1)[1]: "postgres (saga)",
                    },
                    watcher=watcher,
                )
                await meter.start()
                started = time.time()
                if side == "saga":
                    placed = await place_orders(client, customer, orders, clients, rate)
                    rows = await sagas_done(saga_url, orders, meter)
                    durations = [float(row["done"]) - placed[row["id"]] for row in rows]
                    finished = max(float(row["done"]) for row in rows)
                else:
                    durations = await script_flows(client, customer, service, orders, clients, rate)
                    finished = time.time()
                await meter.sample()
                await relay_caught_up(processes["relay"], store_url)
                cpu, xacts = await meter.stop()
    return Outcome(side, orders, finished - started, durations, cpu, xacts)


# --- the report -----------------------------------------------------------------------------------

PARTS = (
    "client",
    "command",
    "relay",
    "postgres (store)",
    "saga",
    "postgres (saga)",
    "sandbox",
    "postgres (shared)",
)


def spread(values: list[float], digits: int = 1) -> str:
    middle = statistics.median(values)
    if len(values) == 1:
        return f"{middle:,.{digits}f}"
    return f"{middle:,.{digits}f} ({min(values):,.{digits}f}-{max(values):,.{digits}f})"


def report(outcomes: list[Outcome], orders: int, clients: int, rate: float | None) -> None:
    load = f"placed at {rate:g}/s" if rate else f"{clients} concurrent clients back to back"
    runs = len(outcomes) // len(SIDES)
    print(f"\nThe order flow: {orders} orders of 2 lines, {load}, {runs} runs per side, alternating.")
    print("Median (min-max) over the runs; CPU is user + system per order.\n")
    print("| measure | script | saga |\n|---|--:|--:|")
    by_side = {side: [o for o in outcomes if o.side == side] for side in SIDES}

    def row(label: str, measure: Callable[[Outcome], float], digits: int = 1) -> None:
        cells = [spread([measure(o) for o in by_side[side]], digits) for side in SIDES]
        print(f"| {label} | {' | '.join(cells)} |")

    row("orders/s", lambda o: o.rate)
    row("placed → confirmed p50, ms", lambda o: 1000 * percentile(o.durations, 0.5), 0)
    row("placed → confirmed p99, ms", lambda o: 1000 * percentile(o.durations, 0.99), 0)
    row("**CPU ms/order, all processes**", lambda o: o.total_ms)
    for part in PARTS:
        if any(o.cpu.get(part) for o in outcomes):
            row(f"CPU ms/order: {part}", functools.partial(Outcome.ms_per_order, part=part))
    for database in ("postgres (store)", "postgres (saga)"):
        row(
            f"transactions/order: {database.removeprefix('postgres ')}",
            functools.partial(Outcome.per_order, database=database),
        )
    row(
        "**saga overhead: saga + its PostgreSQL, ms/order**",
        lambda o: o.ms_per_order("saga") + o.ms_per_order("postgres (saga)"),
    )

    def median(side: str, measure: Callable[[Outcome], float]) -> float:
        return statistics.median(measure(o) for o in by_side[side])

    throughput = median("saga", lambda o: o.rate) / median("script", lambda o: o.rate)
    print(f"\nsaga / script throughput (medians): {throughput:.0%}")
    p99 = [median(side, lambda o: percentile(o.durations, 0.99)) for side in ("saga", "script")]
    print(f"saga / script p99 placed → confirmed (medians): {p99[0] / p99[1]:.2f}x")


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--orders", type=int, default=300)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument(
        "--rate", type=float, help="orders (flows) started per second (default: back to back)"
    )
    parser.add_argument("--runs", type=int, default=3, help="runs per side, alternating")
    parser.add_argument("--sides", default=",".join(SIDES), help="which sides to run (script,saga)")
    args = parser.parse_args()
    sides = [side for side in args.sides.split(",") if side]
    server = os.environ["DATABASE_URL"]
    watcher = await asyncpg.connect(server)
    outcomes = []
    try:
        for run in range(args.runs):
            for side in sides if run % 2 == 0 else reversed(sides):
                progress(f"run {run + 1}/{args.runs}: {side}, {args.orders} orders")
                outcome = await run_side(side, server, args.orders, args.clients, args.rate, watcher)
                progress(
                    f"  {outcome.rate:,.1f} orders/s, {outcome.total_ms:,.1f} CPU ms/order: "
                    + ", ".join(
                        f"{part} {outcome.ms_per_order(part):.1f}" for part in PARTS if part in outcome.cpu
                    )
                    + "; transactions/order: "
                    + ", ".join(f"{db} {n / outcome.orders:.1f}" for db, n in outcome.transactions.items())
                )
                outcomes.append(outcome)
    finally:
        await watcher.close()
    if set(sides) == set(SIDES):
        report(outcomes, args.orders, args.clients, args.rate)


if __name__ == "__main__":
    asyncio.run(main())
