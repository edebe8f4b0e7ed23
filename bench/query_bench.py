"""Query service throughput and latency through the real HTTP server, next to a bare handler.

    .venv/bin/python bench/query_bench.py [--orders 20000] [--seconds 15] [--rounds 10]

Needs REDIS_URL and SEARCH_URL (the environment, or .devstack/env after `./dev up`).
The read models are written straight into Redis and the search engine in the
projector's shapes, under a key prefix of this run's own, and removed afterwards.

Compared in one run:
  order by id, 32 clients, the three servers up at once and driven in turn, `--rounds`
  slices of `--seconds / --rounds` each; with each server's own CPU per request (Linux)
    bare   a Litestar app with one handler, as its own uvicorn process: HGETALL of the
           order's key, return the hash as JSON (the practical limit of Litestar + Redis:
           no JWT, no rate limit, no generation lookup, no tracing, no problem table),
           with the query service's Redis client settings (timeouts, decoded replies;
           both parse replies with hiredis when it is installed, as it is here)
    query  the query service as its own process with everything on: JWT verification,
           Redis rate limiting per subject, the live generation resolved per request,
           the ETag, a server span per request, JSON access log off; three ways:
             as shipped: no exporter configured (OTEL_EXPORTER=none), so nothing is recorded,
               though every trace is sampled for the services downstream;
             every trace recorded and exported: OTEL_EXPORTER=otlp to a local OTLP/HTTP
               sink (a process of its own that decodes each batch and counts its spans);
             1% recorded and exported: the same, with
               OTEL_TRACES_SAMPLER=parentbased_traceidratio, OTEL_TRACES_SAMPLER_ARG=0.01
  search, 16 clients, against the query service
    text    `q=<a word of a product name>`, newest first
    filter  `status=confirmed&total_min=..&total_max=..`, by total
    first   page 1 of an unfiltered search, newest first
    deep    page 50 of the same search (a cursor handed out by page 49)

Then the server's CPU time per order-by-id request, the ASGI app called directly in
this process (no sockets, no load generator): bare, and the query service as shipped
and with every trace exported to the sink (the exporting thread's CPU included: the
spans are flushed before the clock stops). A shared machine disturbs this far less
than throughput.

The clients are a minimal keep-alive HTTP/1.1 client on asyncio streams, so the load
generator takes as little CPU from the servers as possible. Not a test: the numbers
depend on the machine, printed in the header.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import random
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import msgspec
from litestar import Litestar, get
from query_service.app import create_app
from query_service.settings import QuerySettings
from readmodels.keyspace import INITIAL_GENERATION, Keyspace
from readmodels.orders import (
    ORDER_INDEX_SETTINGS,
    ORDER_MAPPINGS,
    OrderDocument,
    OrderLineDocument,
    orders_alias,
    orders_index,
)
from readmodels.search import BulkWrite, connect_search
from redis.asyncio import Redis
from servicekit.tokens import mint
from testkit.harness import free_port, lifespan_of

SECRET = "benchmark-secret-that-is-long-enough-for-hs256"  # noqa: S105 - a throwaway key for a local run
ISSUER, AUDIENCE = "https://bench.local", "query-api"
WORDS = ["blue", "green", "steel", "oak", "linen", "glass", "copper", "stone", "wool", "clay"]
THINGS = ["mug", "teapot", "kettle", "bowl", "plate", "lamp", "chair", "rug", "vase", "jar"]
STATUSES = ["pending", "confirmed", "rejected", "cancelled"]
CUSTOMERS = 500

BARE_APP = """
import sys
import uvicorn
from litestar import Litestar, get
from redis.asyncio import Redis

redis = Redis.from_url(sys.argv[2], decode_responses=True, socket_timeout=1.0, socket_connect_timeout=1.0)
base = sys.argv[3]

@get("/orders/{order_id:str}")
async def order(order_id: str) -> dict[str, str]:
    return await redis.hgetall(base + order_id)

uvicorn.run(Litestar([order], openapi_config=None), port=int(sys.argv[1]), log_level="warning",
            loop="uvloop", http="httptools", access_log=False)
"""

# A stand-in for an OpenTelemetry collector: takes OTLP/HTTP trace exports, counts their spans
# per service name, and tells the counts at GET /spans.
SINK_APP = """
import json, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest, ExportTraceServiceResponse)

counts, lock = {}, threading.Lock()
ANSWER = ExportTraceServiceResponse().SerializeToString()

class Sink(BaseHTTPRequestHandler):
    def do_POST(self):
        batch = ExportTraceServiceRequest.FromString(self.rfile.read(int(self.headers["content-length"])))
        with lock:
            for spans in batch.resource_spans:
                name = next((a.value.string_value for a in spans.resource.attributes
                             if a.key == "service.name"), "?")
                counts[name] = counts.get(name, 0) + sum(len(s.spans) for s in spans.scope_spans)
        self._answer(ANSWER, "application/x-protobuf")

    def do_GET(self):
        with lock:
            self._answer(json.dumps(counts).encode(), "application/json")

    def _answer(self, body, kind):
        self.send_response(200)
        self.send_header("content-type", kind)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Sink).serve_forever()
"""


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


@dataclass
class Run:
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    seconds: float = 0.0
    server_cpu: float = 0.0  # seconds of the server process's CPU, where measured

    def merge(self, other: Run) -> None:
        self.latencies += other.latencies
        self.errors += other.errors
        self.seconds += other.seconds
        self.server_cpu += other.server_cpu

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000 if ordered else 0.0


class HttpClient:
    """One keep-alive HTTP/1.1 connection, one request at a time: just enough for this benchmark."""

    def __init__(self, port: int, token: str | None) -> None:
        self._port = port
        self._auth = f"Authorization: Bearer {token}\r\n".encode() if token else b""
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def get(self, path: str) -> tuple[int, bytes]:
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection("127.0.0.1", self._port)
        assert self._reader is not None
        self._writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\n".encode() + self._auth + b"\r\n")
        # The head in one read, not a line at a time: reading it costs the same however many
        # headers an answer has, so an answer with more of them does not slow its own load down.
        head = await self._reader.readuntil(b"\r\n\r\n")
        at = head.lower().find(b"\r\ncontent-length:")
        length = int(head[at + 17 : head.index(b"\r\n", at + 2)]) if at >= 0 else 0
        return int(head[9:12]), await self._reader.readexactly(length)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError):
                await self._writer.wait_closed()


async def drive(
    port: int, token: str | None, clients: int, seconds: float, path: Callable[[random.Random], str]
) -> Run:
    """`clients` connections, each sending `path(...)` requests back to back for `seconds`."""
    run = Run()
    connections = [HttpClient(port, token) for _ in range(clients)]
    deadline = time.monotonic() + seconds

    async def client(number: int) -> None:
        rng = random.Random(number)
        while time.monotonic() < deadline:
            started = time.perf_counter()
            status, _ = await connections[number].get(path(rng))
            if status == 200:
                run.latencies.append(time.perf_counter() - started)
            else:
                run.errors += 1

    started = time.monotonic()
    await asyncio.gather(*(client(n) for n in range(clients)))
    run.seconds = time.monotonic() - started
    for connection in connections:
        await connection.close()
    return run


def documents(count: int) -> list[OrderDocument]:
    rng = random.Random(7)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    out = []
    for n in range(count):
        lines = tuple(
            OrderLineDocument(
                sku=f"{word}-{thing}",
                product_name=f"{word.title()} {thing}",
                quantity=quantity,
                unit_price=price,
                line_total=quantity * price,
            )
            for word, thing, quantity, price in (
                (rng.choice(WORDS), rng.choice(THINGS), rng.randint(1, 4), rng.randint(100, 9000))
                for _ in range(rng.randint(1, 3))
            )
        )
        at = (start + timedelta(seconds=n * 7 + rng.random())).isoformat().replace("+00:00", "Z")
        out.append(
            OrderDocument(
                order_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                customer_id=f"customer-{rng.randrange(CUSTOMERS)}",
                status=rng.choice(STATUSES),
                lines=lines,
                total=sum(line.line_total for line in lines),
                currency="EUR",
                placed_at=at,
                updated_at=at,
                version=1,
                position=n,
            )
        )
    return out


async def seed(redis_url: str, search_url: str, prefix: str, orders: list[OrderDocument]) -> None:
    redis = Redis.from_url(redis_url)
    search = await connect_search(search_url)
    keyspace = Keyspace(prefix)
    keys = keyspace.models(INITIAL_GENERATION)
    index = orders_index(prefix, INITIAL_GENERATION)
    try:
        await search.create_index(index, mappings=ORDER_MAPPINGS, settings=ORDER_INDEX_SETTINGS)
        await search.point_alias(orders_alias(prefix), index)
        await redis.set(keys.built, "seeded")  # a whole generation, as the projector marks it
        await redis.set(keyspace.live("redis"), INITIAL_GENERATION)
        for start in range(0, len(orders), 2000):
            chunk = orders[start : start + 2000]
            await search.put_many(
                index, [BulkWrite(d.order_id, msgspec.to_builtins(d), d.version) for d in chunk]
            )
            pipe = redis.pipeline(transaction=False)
            for d in chunk:
                lines = [{"sku": x.sku, "quantity": x.quantity, "unit_price": x.unit_price,
                          "line_total": x.line_total} for x in d.lines]  # fmt: skip
                pipe.hset(
                    keys.order(d.order_id),
                    mapping={
                        "order_id": d.order_id,
                        "customer_id": d.customer_id,
                        "status": d.status,
                        "total": d.total,
                        "currency": d.currency,
                        "lines": msgspec.json.encode(lines),
                        "placed_at": d.placed_at,
                        "updated_at": d.updated_at,
                        "reason": "",
                        "version": d.version,
                    },
                )
            await pipe.execute()
        await search.refresh(index)
    finally:
        await search.close()
        await redis.aclose()


async def unseed(redis_url: str, search_url: str, prefix: str) -> None:
    redis = Redis.from_url(redis_url)
    search = await connect_search(search_url)
    try:
        batch = [key async for key in redis.scan_iter(match=f"{prefix}*", count=5000)]
        for start in range(0, len(batch), 5000):
            await redis.unlink(*batch[start : start + 5000])
        for index in await search.indices(f"{prefix}*"):
            await search.delete_index(index)
    finally:
        await search.close()
        await redis.aclose()


async def wait_until_answering(port: int, path: str) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        client = HttpClient(port, None)
        with contextlib.suppress(OSError, ValueError, IndexError, asyncio.IncompleteReadError):
            status, _ = await client.get(path)
            await client.close()
            if status == 200:
                return
        await asyncio.sleep(0.2)
    raise RuntimeError(f"nothing answered 200 on port {port}{path}")


@contextlib.asynccontextmanager
async def process(argv: list[str], env: dict[str, str], port: int, ready: str) -> AsyncIterator[int]:
    """The server process, started and answering; yields its pid."""
    started = await asyncio.create_subprocess_exec(*argv, env={**os.environ, **env})
    try:
        await wait_until_answering(port, ready)
        yield started.pid
    finally:
        started.terminate()
        await started.wait()


def cpu_seconds(pid: int) -> float:
    """User and system CPU a process has used so far (Linux /proc; 0 elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def cpu_per_request(app: Litestar, path: str, token: str, requests: int = 3000) -> float:
    """Milliseconds of this process's CPU per request, calling the ASGI app directly."""
    headers = [(b"authorization", f"Bearer {token}".encode()), (b"host", b"bench")]
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
        "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "", "headers": headers,
        "client": ("127.0.0.1", 1), "server": ("bench", 80),
    }  # fmt: skip

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def call() -> None:
        statuses: list[int] = []

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])

        await app(dict(scope), receive, send)  # type: ignore[arg-type]
        assert statuses == [200], statuses

    def flush() -> None:
        # The spans waiting in the exporting thread's queue go out now (none wait when nothing exports).
        app.state.observability.provider.force_flush()

    async with lifespan_of(app):
        for _ in range(200):
            await call()
        if hasattr(app.state, "observability"):
            flush()
        started = time.process_time()
        for _ in range(requests):
            await call()
        if hasattr(app.state, "observability"):
            flush()
        return (time.process_time() - started) / requests * 1000


async def cpu_table(
    redis_url: str, search_url: str, prefix: str, order_id: str, token: str, sink_port: int
) -> list[str]:
    # The query service's client settings (see BARE_APP).
    redis = Redis.from_url(redis_url, decode_responses=True, socket_timeout=1.0, socket_connect_timeout=1.0)
    base = Keyspace(prefix).models(INITIAL_GENERATION).order("")

    @get("/orders/{order_id:str}")
    async def bare(order_id: str) -> dict[str, str]:
        fields: dict[str, str] = await redis.hgetall(base + order_id)  # type: ignore[misc]
        return fields

    path = f"/orders/{order_id}"
    settings = {
        "redis_url": redis_url, "search_url": search_url, "query_key_prefix": prefix, "jwt_secret": SECRET,
        "jwt_issuer": ISSUER, "jwt_audience": AUDIENCE, "rate_limit_per_second": 1e9,
        "rate_limit_burst": 10**9, "access_log": False, "log_level": "WARNING",
    }  # fmt: skip
    try:
        bare_ms = await cpu_per_request(Litestar([bare], openapi_config=None), path, token)
        rows = [f"| bare Litestar + HGETALL | {bare_ms:.2f} | |"]
        # The exporter reads its endpoint from the standard variable, as in the service's own process.
        os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{sink_port}"
        exporters = (("as shipped (no exporter)", "none"), ("every trace exported", "otlp"))
        for name, exporter in exporters:
            app = create_app(msgspec.convert({**settings, "otel_exporter": exporter}, QuerySettings))
            ms = await cpu_per_request(app, path, token)
            rows.append(f"| query service, {name} | {ms:.2f} | {bare_ms / ms:.0%} |")
        return rows
    finally:
        await redis.aclose()


def row(name: str, run: Run, base: Run | None = None) -> str:
    ratio = f"{run.rate / base.rate:.0%}" if base else ""
    answered = len(run.latencies) + run.errors
    cpu = f"{run.server_cpu / answered * 1000:.3f}" if run.server_cpu and answered else ""
    return (
        f"| {name} | {run.rate:,.0f} | {run.percentile(50):.1f} | {run.percentile(99):.1f} | "
        f"{run.errors} | {ratio} | {cpu} |"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--orders", type=int, default=20_000)
    parser.add_argument("--seconds", type=float, default=15.0, help="per contender, split over the rounds")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument(
        "--no-search", dest="search", action="store_false", help="only the reads by id (and CPU per request)"
    )
    args = parser.parse_args()
    redis_url, search_url = os.environ["REDIS_URL"], os.environ["SEARCH_URL"]
    prefix = f"bench{uuid.uuid4().hex[:8]}-"
    orders = documents(args.orders)
    progress(f"seeding {len(orders):,} orders under {prefix}")
    await seed(redis_url, search_url, prefix, orders)
    ids = [d.order_id for d in orders]
    token = mint(subject="bench-staff", roles=["staff"], issuer=ISSUER, audience=AUDIENCE, key=SECRET)
    results: dict[str, Run] = {}
    try:
        bare_port, query_port = free_port(), free_port()
        bare_argv = [
            sys.executable,
            "-c",
            BARE_APP,
            str(bare_port),
            redis_url,
            Keyspace(prefix).models(INITIAL_GENERATION).order(""),
        ]
        query_env = {
            "REDIS_URL": redis_url, "SEARCH_URL": search_url, "QUERY_PORT": str(query_port),
            "QUERY_KEY_PREFIX": prefix, "JWT_SECRET": SECRET, "JWT_ISSUER": ISSUER, "JWT_AUDIENCE": AUDIENCE,
            "RATE_LIMIT_PER_SECOND": "1000000", "RATE_LIMIT_BURST": "1000000", "ACCESS_LOG": "false",
            "LOG_LEVEL": "WARNING",
        }  # fmt: skip

        def by_id(rng: random.Random) -> str:
            return f"/orders/{rng.choice(ids)}"

        sink_port, exported_port, sampled_port = free_port(), free_port(), free_port()
        exporting = {"OTEL_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{sink_port}"}
        exported_env = {
            **query_env,
            **exporting,
            "QUERY_PORT": str(exported_port),
            "OTEL_SERVICE_NAME": "query-every-trace",
        }
        sampled_env = {
            **query_env,
            **exporting,
            "QUERY_PORT": str(sampled_port),
            "OTEL_SERVICE_NAME": "query-1-percent",
            "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
            "OTEL_TRACES_SAMPLER_ARG": "0.01",
        }
        query_argv = [sys.executable, "-m", "query_service"]
        async with (
            process([sys.executable, "-c", SINK_APP, str(sink_port)], {}, sink_port, "/spans"),
            process(bare_argv, {}, bare_port, f"/orders/{ids[0]}") as bare_pid,
            process(query_argv, query_env, query_port, "/health/ready") as query_pid,
            process(query_argv, exported_env, exported_port, "/health/ready") as exported_pid,
            process(query_argv, sampled_env, sampled_port, "/health/ready") as sampled_pid,
        ):
            # All three up at once, measured in many short alternating rounds: the machine's
            # other load drifts, and each contender should see the same share of it. Each
            # server's own CPU per request is measured too: it depends far less on that load.
            targets = {
                "bare": (bare_port, None, bare_pid),
                "query": (query_port, token, query_pid),
                "query-exported": (exported_port, token, exported_pid),
                "query-sampled": (sampled_port, token, sampled_pid),
            }
            for port, credentials, _ in targets.values():
                await drive(port, credentials, 32, 2, by_id)  # warm-up
            for round_number in range(args.rounds):
                progress(f"order by id, round {round_number + 1} of {args.rounds}: {', '.join(targets)}")
                for name, (port, credentials, pid) in targets.items():
                    used = cpu_seconds(pid)
                    run = await drive(port, credentials, 32, args.seconds / args.rounds, by_id)
                    run.server_cpu = cpu_seconds(pid) - used
                    results.setdefault(name, Run()).merge(run)
            deep = await deep_page_path(query_port, token, page=50)

            def text(rng: random.Random) -> str:
                return "/orders?" + urlencode({"q": rng.choice(WORDS), "limit": 20})

            def filtered(rng: random.Random) -> str:
                low = rng.randrange(0, 20_000)
                query = {"status": "confirmed", "total_min": low, "total_max": low + 5000, "sort": "-total"}
                return "/orders?" + urlencode(query)

            first = "/orders?limit=20"
            searches = (
                ("text", text),
                ("filter", filtered),
                ("first", lambda rng: first),
                ("deep", lambda rng: deep),
            )
            for name, path in searches if args.search else ():
                progress(f"search ({name}): query service, 16 clients")
                await drive(query_port, token, 16, 1, path)
                results[name] = await drive(query_port, token, 16, args.seconds, path)
            progress("CPU per request, in-process")
            cpu_rows = await cpu_table(redis_url, search_url, prefix, ids[0], token, sink_port)
            # By now the exporting threads have sent their last batches (they send at least every 5 s).
            exported = await spans_received(sink_port)
    finally:
        progress("removing the read models")
        await unseed(redis_url, search_url, prefix)
    print_table(args, results)
    answered = {name: len(results[name].latencies) for name in ("query-exported", "query-sampled")}
    print(
        f"\nSpans the sink received: every trace {exported.get('query-every-trace', 0):,} "
        f"(of {answered['query-exported']:,} requests measured, and the warm-up's), "
        f"1% {exported.get('query-1-percent', 0):,} (of {answered['query-sampled']:,})"
    )
    print("\n| app (order by id, in-process) | CPU ms / request | bare / app |")
    print("|---|---:|---:|")
    print("\n".join(cpu_rows))


async def spans_received(port: int) -> dict[str, int]:
    """The sink's count of spans received, per service name."""
    client = HttpClient(port, None)
    status, body = await client.get("/spans")
    await client.close()
    assert status == 200, body
    return msgspec.json.decode(body, type=dict[str, int])


async def deep_page_path(port: int, token: str, *, page: int) -> str:
    """The path of page `page` (20 orders each) of an unfiltered search, following the cursors."""
    client = HttpClient(port, token)
    cursor: Any = None
    for _ in range(page - 1):
        status, body = await client.get(
            "/orders?" + urlencode({"limit": 20, **({"cursor": cursor} if cursor else {})})
        )
        assert status == 200, body
        cursor = msgspec.json.decode(body)["next_cursor"]
    await client.close()
    return "/orders?" + urlencode({"limit": 20, "cursor": cursor})


def print_table(args: argparse.Namespace, results: dict[str, Run]) -> None:
    load = os.getloadavg()[0]
    print(
        f"\nMachine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"load average {load:.1f}; {args.orders:,} orders; {args.seconds:g} s per measurement\n"
    )
    print("| measurement | req/s | p50 ms | p99 ms | errors | vs bare | server CPU ms / request |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    print(row("order by id, bare Litestar + HGETALL (32 clients)", results["bare"]))
    contenders = (
        ("query", "as shipped, no exporter"),
        ("query-exported", "every trace exported"),
        ("query-sampled", "1% of traces exported"),
    )
    for name, title in contenders:
        print(row(f"order by id, query service, {title} (32 clients)", results[name], results["bare"]))
    searches = (
        ("text", "text"),
        ("filter", "filter, by total"),
        ("first", "page 1, unfiltered"),
        ("deep", "page 50 by cursor, unfiltered"),
    )
    for name, title in searches:
        if name in results:
            print(row(f"search: {title} (16 clients)", results[name]))


if __name__ == "__main__":
    asyncio.run(main())
