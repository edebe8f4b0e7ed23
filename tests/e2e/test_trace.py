"""End to end: one placed order is one trace in Zipkin, from the HTTP command to the saga's commands.

A Zipkin of the test's own (on a free port, never the shared stack's) receives
the spans of the six services, run as processes with `OTEL_EXPORTER=zipkin`
against the shared PostgreSQL, Redis, Kafka and search engine under names of
their own. A customer places one order; once the saga is done, the test reads
the trace through Zipkin's API (`/api/v2/trace/{id}`) and checks its shape:

* the root is the command service's `POST /orders` server span, with the event
  store's `eventstore append` of the order's stream as its child (one span per
  store operation; no span per SQL statement unless `OTEL_TRACE_SQL` is set);
* the projector's `project <event>` spans and the saga's `saga consume` span are
  children of the span whose `traceparent` the event carries (the request's);
* the saga's `saga drive` continues the saga's trace, each `saga step` is its child,
  and each command the saga sends is a command-service server span, child of its step;
  the events those commands append are projected in the same trace.

The relay's `relay publish` span is not in that trace: one span confirms a batch
of events from many requests, so it is the root of a trace of its own, linked to
the trace of each event (`relay_service.publisher`). Zipkin has no links; the
kit's exporter writes them as `links[i].traceId` / `links[i].spanId` tags, and
the test finds the publish of the order's events by them.

`render` prints the trace as an indented tree, as docs/observability.md shows it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from eventstore import migrate
from testkit.harness import ServiceProcess, free_port, running_service, token_factory

from deploy.local import zipkin
from deploy.local.components import Layout
from deploy.local.stack import ROOT as STACK_ROOT
from services.command.tests.support import command_headers, register_products

pytestmark = pytest.mark.slow

SECRET = "trace-secret-that-is-long-enough-for-hs256!"
ISSUER, AUDIENCE = "https://issuer.trace", "fulfilment-trace"
PROVIDER_SECRET = "sandbox-webhook-secret-0123456789"
POT = {"sku": "TRACE-POT", "name": "Traced tea pot", "unit_price": 3990, "currency": "EUR"}
STARTUP = 180.0  # seconds for a service to be ready
type Span = dict[str, Any]


# --- Zipkin of the test's own -------------------------------------------------------------------


@pytest.fixture(scope="module")
def zipkin_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Zipkin server of the test's own on a free port; its jar from the local stack's cache."""
    layout = Layout(tmp_path_factory.mktemp("zipkin-stack"))
    shared = STACK_ROOT / "cache"  # downloaded once, kept for the stack and the next run
    shared.mkdir(parents=True, exist_ok=True)
    layout.root.mkdir(parents=True, exist_ok=True)
    (layout.root / "cache").symlink_to(shared)
    server = zipkin.component(port=free_port())
    server.prepare(layout)
    launch = server.launch(layout)
    log = layout.root / "zipkin.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            launch.argv,
            env={**os.environ, **launch.env},
            cwd=launch.cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + server.start_timeout
        while not server.is_ready(server.url):
            assert process.poll() is None, f"zipkin exited:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"zipkin not ready:\n{log.read_text()[-3000:]}"
            time.sleep(0.5)
        yield server.url
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# --- the six services ----------------------------------------------------------------------------


class Suite:
    """The running services the test talks to."""

    def __init__(self, command: ServiceProcess, saga: ServiceProcess) -> None:
        self.command = command
        self.saga = saga


@pytest.fixture
async def suite(
    zipkin_url: str,
    fresh_database_url: str,
    redis_url: str,
    kafka_bootstrap_servers: str,
    search_url: str,
    tmp_path: Path,
) -> AsyncIterator[Suite]:
    await migrate(fresh_database_url)
    tag = uuid.uuid4().hex[:8]
    topics, keys = f"trace{tag}.", f"trace{tag}-"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap_servers)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(f"{topics}{name}", 3, 1) for name in ("order", "stock", "payment")]
        )
    finally:
        await admin.close()
    tracing = {
        "OTEL_EXPORTER": "zipkin",
        "OTEL_EXPORTER_ZIPKIN_ENDPOINT": f"{zipkin_url}/api/v2/spans",
        # The batch processor's default waits 5 s between exports.
        "OTEL_BSP_SCHEDULE_DELAY": "200",
    }
    jwt = {"JWT_SECRET": SECRET, "JWT_ISSUER": ISSUER, "JWT_AUDIENCE": AUDIENCE}
    servers = {
        "DATABASE_URL": fresh_database_url, "REDIS_URL": redis_url,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap_servers, "SEARCH_URL": search_url,
    }  # fmt: skip
    async with contextlib.AsyncExitStack() as stack:

        async def process(module: str, port_variable: str, **env: str) -> ServiceProcess:
            name = module.split(".")[-1].removesuffix("_service")
            return await stack.enter_async_context(
                running_service(
                    module,
                    {**servers, **tracing, **jwt, **env},
                    log=tmp_path / f"{name}.log",
                    port_variable=port_variable,
                    ready=False,
                )
            )

        command = await process("command_service", "COMMAND_PORT")
        relay = await process(
            "relay_service",
            "RELAY_PORT",
            RELAY_TOPIC_PREFIX=topics,
            RELAY_PARTITIONS="3",
            RELAY_LOCK_KEY=str(random.randrange(1, 2**62)),
        )
        projector = await process(
            "projector_service",
            "PROJECTOR_PORT",
            PROJECTOR_TOPIC_PREFIX=topics,
            PROJECTOR_GROUP_PREFIX=f"{topics}projector.",
            PROJECTOR_DEAD_LETTER_TOPIC=f"{topics}projector.dlq",
            PROJECTOR_KEY_PREFIX=keys,
            PROJECTOR_PARTITIONS="3",
        )
        query = await process("query_service", "QUERY_PORT", QUERY_KEY_PREFIX=keys)
        sandbox = await process(
            "saga_service.sandbox",
            "SANDBOX_PORT",
            SANDBOX_SECRET=PROVIDER_SECRET,
            SANDBOX_LATENCY_MS="10",
            SANDBOX_JITTER_MS="0",
        )
        saga = await process(
            "saga_service",
            "SAGA_PORT",
            SAGA_COMMAND_URL=command.url,
            SAGA_PROVIDER_URL=sandbox.url,
            SAGA_PROVIDER_SECRET=PROVIDER_SECRET,
            SAGA_TOPIC_PREFIX=topics,
            SAGA_GROUP_ID=f"saga-{topics}",
            SAGA_DEAD_LETTER_TOPIC=f"{topics}saga.dead-letters",
        )
        everything = [command, relay, projector, query, sandbox, saga]
        # Six start-ups at once on a busy machine: give them time. The query service is live, not
        # ready, until the projector made its index.
        await asyncio.gather(*(p.ready(STARTUP) for p in everything if p is not query))
        await query.wait_for(lambda status, _: status == 200, path="/health/live", timeout=STARTUP)
        yield Suite(command, saga)


# --- Zipkin's API --------------------------------------------------------------------------------


async def trace_of(zipkin_url: str, trace_id: str) -> list[Span]:
    async with httpx.AsyncClient(base_url=zipkin_url, timeout=10) as client:
        response = await client.get(f"/api/v2/trace/{trace_id}")
    if response.status_code == 404:
        return []
    assert response.status_code == 200, response.text
    spans: list[Span] = response.json()
    return spans


async def settled_trace(
    zipkin_url: str, trace_id: str, *, quiet: float = 3.0, timeout: float = 60.0
) -> list[Span]:
    """The trace once no span has been added to it for `quiet` seconds (late exports settle)."""
    deadline = time.monotonic() + timeout
    spans: list[Span] = []
    last_change = time.monotonic()
    while time.monotonic() < deadline:
        now = await trace_of(zipkin_url, trace_id)
        if len(now) != len(spans):
            spans, last_change = now, time.monotonic()
        elif spans and time.monotonic() - last_change >= quiet:
            return spans
        await asyncio.sleep(0.5)
    raise AssertionError(f"trace {trace_id} still growing after {timeout:g} s:\n{render(spans)}")


async def publishes_linked_to(zipkin_url: str, trace_id: str) -> list[Span]:
    """The relay's `relay publish` spans whose links name `trace_id`."""
    async with httpx.AsyncClient(base_url=zipkin_url, timeout=10) as client:
        response = await client.get(
            "/api/v2/traces",
            params={
                "serviceName": "relay",
                "spanName": "relay publish",
                "limit": 1000,
                "lookback": 3_600_000,
            },
        )
    assert response.status_code == 200, response.text
    return [
        span
        for trace in response.json()
        for span in trace
        if any(key.endswith(".traceId") and value == trace_id for key, value in span.get("tags", {}).items())
    ]


def render(spans: list[Span]) -> str:
    """The span tree: `service  name  [kind]`, children indented under their parent, by start time."""
    ids = {span["id"] for span in spans}
    children: dict[str | None, list[Span]] = {}
    for span in spans:
        parent = span.get("parentId")
        children.setdefault(parent if parent in ids else None, []).append(span)
    lines: list[str] = []

    def walk(parent: str | None, depth: int) -> None:
        for span in sorted(children.get(parent, []), key=lambda s: s.get("timestamp", 0)):
            kind = f" [{span['kind']}]" if span.get("kind") else ""
            service = span.get("localEndpoint", {}).get("serviceName", "?")
            lines.append(f"{'  ' * depth}{service}: {span.get('name')}{kind}")
            walk(span["id"], depth + 1)

    walk(None, 0)
    return "\n".join(lines)


def service(span: Span) -> str:
    return str(span.get("localEndpoint", {}).get("serviceName"))


def statement(span: Span) -> str:
    """The SQL of an asyncpg span (the old and the new semantic conventions' tag)."""
    tags = span.get("tags", {})
    return str(tags.get("db.statement") or tags.get("db.query.text") or "")


def named(spans: list[Span], service_name: str, prefix: str) -> list[Span]:
    return [
        span for span in spans if service(span) == service_name and span.get("name", "").startswith(prefix)
    ]


# --- the test ------------------------------------------------------------------------------------


async def test_one_order_is_one_trace_from_the_http_command_to_the_sagas_commands(
    suite: Suite, zipkin_url: str
) -> None:
    tokens = token_factory(secret=SECRET, issuer=ISSUER, audience=AUDIENCE)
    staff = tokens("staff-1", ("staff",))
    async with httpx.AsyncClient(base_url=suite.command.url, timeout=10) as client:
        await register_products(client, staff, [POT])
        received = await client.post(
            f"/products/{POT['sku']}/receipts", json={"quantity": 5}, headers=command_headers(staff)
        )
        assert received.status_code == 200, received.text
        placed = await client.post(
            "/orders",
            json={"lines": [{"sku": POT["sku"], "quantity": 2}], "currency": "EUR"},
            headers=command_headers(tokens("alice")),
        )
    assert placed.status_code == 201, placed.text
    order_id = placed.json()["order_id"]
    # Without a caller's correlation id the request's trace id is its correlation id.
    trace_id = placed.headers["x-correlation-id"]
    assert len(trace_id) == 32

    staff_view = {"Authorization": f"Bearer {staff}"}
    deadline = time.monotonic() + 90
    view: Any = None
    while time.monotonic() < deadline:
        response = await suite.saga.get(f"/sagas/{order_id}", headers=staff_view)
        if response.status_code == 200 and (view := response.json())["phase"] == "done":
            break
        await asyncio.sleep(0.2)
    assert view is not None, f"no saga for {order_id}:\n{suite.saga.log_tail()}"
    assert view["phase"] == "done", f"saga not done: {view}\n{suite.saga.log_tail()}"

    # Zipkin keeps span and service names in lower case.
    spans = await settled_trace(zipkin_url, trace_id)
    tree = render(spans)
    print(f"\ntrace {trace_id}:\n{tree}")
    by_id = {span["id"]: span for span in spans}

    def parent(span: Span) -> Span:
        found = by_id.get(span.get("parentId", ""))
        assert found is not None, f"{span['name']} has no parent in the trace:\n{tree}"
        return found

    # The HTTP command is the root; the store's append of the order's stream its child.
    (root,) = [span for span in spans if "parentId" not in span]
    assert (service(root), root["name"], root["kind"]) == ("command", "post /orders", "SERVER"), tree
    appends = [
        span
        for span in named(spans, "command", "eventstore append")
        if span.get("parentId") == root["id"]
        and span["tags"].get("eventstore.stream", "").startswith("order-")
    ]
    assert len(appends) == 1, f"no single append of the order under the command's span:\n{tree}"
    # One span per store operation, not per SQL statement (OTEL_TRACE_SQL is off).
    assert not [span for span in spans if statement(span)], tree

    # The projector's writes (one span per projection: orders, stock) and the saga's consumption of
    # OrderPlaced continue the request's trace, from the traceparent the event carries.
    projected = named(spans, "projector", "project orderplaced")
    assert len(projected) == 2, tree
    assert all(parent(span) is root and span["kind"] == "CONSUMER" for span in projected), tree
    (consumed,) = named(spans, "saga", "saga consume orderplaced")
    assert parent(consumed) is root, tree

    # Each drive of the saga continues the saga's trace, begun by that consumption. How the steps
    # fall into drives depends on when the provider's webhook arrives (it kicks another drive).
    drives = named(spans, "saga", "saga drive")
    assert drives, tree
    assert all(parent(drive) is consumed for drive in drives), tree
    steps = sorted(named(spans, "saga", "saga step "), key=lambda span: span["timestamp"])
    assert [step["name"].removeprefix("saga step ") for step in steps] == [
        "reserve", "request-payment", "ask-provider", "record-authorization", "confirm", "commit",
    ], tree  # fmt: skip
    assert all(parent(step) in drives for step in steps), tree

    # Every command the saga sends is one command-service request, a child of its step (asking the
    # provider is no command); nothing else reaches the command service in this trace.
    commands = [span for span in spans if service(span) == "command" and span.get("kind") == "SERVER"]
    sent = {
        step["name"]: [span["name"] for span in commands if span.get("parentId") == step["id"]]
        for step in steps
    }
    assert sent == {
        "saga step reserve": ["post /products/{sku}/reservations"],
        "saga step request-payment": ["post /payments"],
        "saga step ask-provider": [],
        "saga step record-authorization": ["post /payments/{order_id}/authorization"],
        "saga step confirm": ["post /orders/{order_id}/confirm"],
        "saga step commit": ["post /products/{sku}/reservations/{order_id}/commit"],
    }, tree
    assert len(commands) == 1 + 5, tree
    # The events those commands append are projected, and consumed by the saga, in the same trace.
    for event, command in (
        ("stockreserved", "post /products/{sku}/reservations"),
        ("orderconfirmed", "post /orders/{order_id}/confirm"),
        ("stockreservationcommitted", "post /products/{sku}/reservations/{order_id}/commit"),
    ):
        projections = named(spans, "projector", f"project {event}")
        assert projections, tree
        assert all(parent(span)["name"] == command for span in projections), tree
    (confirmed,) = named(spans, "saga", "saga consume orderconfirmed")
    assert parent(confirmed)["name"] == "post /orders/{order_id}/confirm", tree

    # The relay's publish is a trace of its own, linked to this one (Zipkin keeps links as tags).
    assert not named(spans, "relay", "relay publish"), tree
    publishes = await publishes_linked_to(zipkin_url, trace_id)
    assert publishes, f"no relay publish span links to {trace_id}"
    for publish in publishes:
        assert "parentId" not in publish, publish
        assert publish["kind"] == "PRODUCER", publish
        linked = {
            value: publish["tags"][key.replace(".traceId", ".spanId")]
            for key, value in publish["tags"].items()
            if key.endswith(".traceId")
        }
        assert linked[trace_id] in by_id, f"the link names a span not in the trace: {publish['tags']}"
