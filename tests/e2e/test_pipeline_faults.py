"""The whole pipeline under order load while each service and each server is SIGKILLed in turn.

The local stack's CLI runs a stack of the test's own on a port offset:
PostgreSQL, Redis, Kafka and the six services (command, relay, projector,
query, saga, sandbox), each service under the stack's supervisor. Staff
register products and receive stock; customers place orders and cancel some.
Meanwhile each service is killed (its supervisor restarts it) and then each
server is killed and started again by the test. A few hostile records go into
the order topic. After the faults the load stops, every unsettled command is
sent again with its key, and the pipeline gets a bounded time to settle.

The search engine: the short run (the default) uses the shared one under a key
prefix of its own and never kills it, because an OpenSearch of its own takes
30 s to start on a quiet machine and more than a minute on a busy one, twice
(at the start and after its kill), which would double the run. The long run
(FAULT_RUN_SECONDS > 0, or FAULT_RUN_OWN_SEARCH=1) starts an OpenSearch of its
own (about 1 GB of heap) and kills it too.

The checks compare what clients were told, and what the query service shows,
with a fold of the event store's tables written here, independently of the
projection and saga code (docs/failure-modes.md, "Fault test"):

1. no acknowledged command lost, none applied twice;
2. every saga done within SAGA_BOUND seconds of the load's end, its outcome the order's status;
3. every confirmed order paid for its total and every line committed;
4. no stock or money held for an order that is not confirmed;
5. the read models (every order, every SKU, the counts) equal the fold, read through the query service;
6. every poison record in the dead-letter topics of both consumers of the order topic.
7. at the end every service's /health/live and /health/ready answer 200 (a loop that died quietly
   shows on live).

Every check runs and the failure lists each one that failed, with counts and
examples, and the restarts and last exits the supervisors saw.

FAULT_RUN_SECONDS (default 0: one round of faults) keeps the load and the
rounds of faults going that long.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from readmodels.search import connect_search
from testkit.harness import token_factory

from deploy.local.components import Layout
from deploy.local.stack import read_env
from deploy.local.supervisor import read_state

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("command", "relay", "projector", "query", "saga", "sandbox")
RUN_SECONDS = float(os.environ.get("FAULT_RUN_SECONDS", "0"))
OWN_SEARCH = RUN_SECONDS > 0 or os.environ.get("FAULT_RUN_OWN_SEARCH") == "1"
SERVERS = ("postgres", "redis", "kafka", *(("opensearch",) if OWN_SEARCH else ()))
# Seconds after the load ends (every part is back by then) for every saga to be done: the payment
# deadline (SAGA_PAYMENT_TIMEOUT, 15 s here) plus a breaker's reset and a few timer wake-ups, with
# room for a busy machine.
SAGA_BOUND = 90.0
READ_MODEL_BOUND = 60.0  # seconds more for the read models to show the fold
RECOVERY_BOUND = 120.0  # a part not ready this long after its restart is reported, and the run goes on
ORDER_TOPIC, PROJECTOR_DLQ, SAGA_DLQ = "fulfilment.order", "fulfilment.projector.dlq", "saga.dead-letters"
OUTCOME_TO_STATUS = {
    "confirmed": "confirmed",
    "rejected": "rejected",
    "cancelled": "cancelled",
    "aborted": "rejected",
}


# --- the stack of the test's own ---------------------------------------------------------------


class OwnStack:
    """Servers and services of the test's own, run by the local stack's CLI in a folder of its own."""

    def __init__(self, folder: Path, shared_search: str | None, prefix: str) -> None:
        self.folder = folder
        self.logs_kept = folder / "logs"
        self.env = {key: value for key, value in os.environ.items() if not key.endswith(("_URL", "_SERVERS"))}
        if shared_search is not None:  # `up` then uses it instead of starting one
            self.env.update(SEARCH_URL=shared_search, OPENSEARCH_URL=shared_search)
        # Every port above Linux's ephemeral range (32768-60999), and Zipkin's 59411 + offset a port.
        offset = random.randrange(5570, 6120, 2)
        self.env.update(
            DEVSTACK_DIR=str(folder),
            DEVSTACK_PORT_OFFSET=str(offset),
            SEARCH_ENGINE="opensearch",
            LOG_LEVEL="WARNING",
            ACCESS_LOG="false",
            RATE_LIMIT_PER_SECOND="100000",
            RATE_LIMIT_BURST="100000",
            COMMAND_RATE_LIMIT_PER_SECOND="100000",
            COMMAND_RATE_LIMIT_BURST="100000",
            SAGA_PAYMENT_TIMEOUT="15",
            RELAY_MAX_BACKOFF="1",
            PROJECTOR_KEY_PREFIX=prefix,
            QUERY_KEY_PREFIX=prefix,
        )
        shared_cache = ROOT / ".devstack" / "cache"  # reuse the downloaded Kafka and OpenSearch
        if shared_cache.is_dir():
            folder.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileExistsError):
                (folder / "cache").symlink_to(shared_cache)

    def _run(self, command: str, *names: str) -> None:
        result = subprocess.run(
            [sys.executable, "-m", "deploy.local", command, "--only", *names],
            cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        assert result.returncode == 0, (
            f"`{command} --only {' '.join(names)}`:\n{result.stdout}{result.stderr}"
        )

    async def up(self, *names: str) -> None:
        await asyncio.to_thread(self._run, "up", *names)

    async def down(self) -> None:
        await asyncio.to_thread(self._run, "down", *SERVICES, *SERVERS)

    def url(self, variable: str) -> str:
        return read_env(Layout(self.folder))[variable]

    def kill_server(self, name: str) -> None:
        """SIGKILL the server's whole process group, as a crash or the OOM killer would."""
        pid = int((self.folder / "run" / f"{name}.pid").read_text().split()[0])
        os.killpg(pid, signal.SIGKILL)

    def service_pid(self, name: str) -> int | None:
        state = read_state(self.folder / "run" / f"{name}.state")
        return None if state is None else state.pid

    def kill_service(self, name: str) -> int:
        """SIGKILL the service process (not its supervisor, which restarts it)."""
        pid = self.service_pid(name)
        assert pid is not None, f"{name} has no running process to kill"
        os.kill(pid, signal.SIGKILL)
        return pid

    def supervision(self) -> str:
        """Each service's restarts and last exit, for the failure message."""
        lines = []
        for name in SERVICES:
            state = read_state(self.folder / "run" / f"{name}.state")
            if state is None:
                lines.append(f"  {name}: no supervisor state")
                continue
            last = state.last_exit
            exit_text = "" if last is None else f"; last exit {last.description}: {last.last_line[:200]}"
            lines.append(f"  {name}: restarts {state.restarts}{exit_text}")
        return "\n".join(lines)


async def ready(url: str, path: str = "/health/ready", timeout: float = RECOVERY_BOUND) -> float | None:
    """Seconds until url+path answers 2xx, or None when it did not within timeout."""
    began = time.monotonic()
    async with httpx.AsyncClient(timeout=2) as client:
        while time.monotonic() - began < timeout:
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(url + path)).is_success:
                    return time.monotonic() - began
            await asyncio.sleep(0.5)
    return None


# --- the load ----------------------------------------------------------------------------------


@dataclass
class Write:
    """One command with its key: sent until it is acknowledged (2xx) or refused (another 4xx)."""

    kind: str  # register, receive, place, cancel
    path: str
    body: dict[str, Any] | None
    token: str
    key: str = field(default_factory=lambda: str(uuid.uuid4()))
    acknowledged: dict[str, Any] | None = None
    refused: int | None = None


@dataclass
class Load:
    """Staff keep the catalogue stocked; customers place orders and cancel some."""

    url: str
    staff: str
    customers: list[str]
    writes: list[Write] = field(default_factory=list)
    pending: list[Write] = field(default_factory=list)
    outcomes: Counter[int | str] = field(default_factory=Counter)
    skus: list[str] = field(default_factory=list)
    running: bool = True

    async def send(self, client: httpx.AsyncClient, write: Write) -> None:
        headers = {"Authorization": f"Bearer {write.token}", "Idempotency-Key": write.key}
        try:
            response = await client.post(write.path, json=write.body, headers=headers)
        except httpx.TransportError as error:  # the service was killed mid-request, or is down
            self.outcomes[type(error).__name__] += 1
            self.pending.append(write)
            return
        self.outcomes[response.status_code] += 1
        if response.is_success:
            write.acknowledged = response.json()
            if write.kind == "register":
                self.skus.append(write.body["sku"])  # type: ignore[index]
            elif write.kind == "place" and random.random() < 0.25:
                asyncio.get_running_loop().call_later(random.uniform(0, 3), self.cancel, write)
        elif response.status_code in (429, 503) or (
            response.status_code == 409 and response.headers.get("Retry-After")
        ):
            self.pending.append(write)  # as the OpenAPI document says: later, with the same key
        else:
            write.refused = response.status_code  # a 500 among them fails the run

    def cancel(self, placed: Write) -> None:
        if not self.running or placed.acknowledged is None:
            return
        order_id = placed.acknowledged["order_id"]
        self.writes.append(
            Write("cancel", f"/orders/{order_id}/cancel", {"reason": "changed my mind"}, placed.token)
        )
        self.pending.append(self.writes[-1])

    def _new(self, kind: str, path: str, body: dict[str, Any] | None, token: str) -> Write:
        write = Write(kind, path, body, token)
        self.writes.append(write)
        return write

    async def staff_worker(self) -> None:
        async with httpx.AsyncClient(base_url=self.url, timeout=10) as client:
            for serial in itertools.count():
                if not self.running:
                    return
                if len(self.skus) < 8 or serial % 10 == 0:
                    sku = f"FLT-{serial}"
                    body = {
                        "sku": sku,
                        "name": f"fault item {serial}",
                        "unit_price": 100 + serial,
                        "currency": "EUR",
                    }
                    write = self._new("register", "/products", body, self.staff)
                else:
                    sku = random.choice(self.skus)
                    write = self._new("receive", f"/products/{sku}/receipts", {"quantity": 3}, self.staff)
                await self.send(client, write)
                await asyncio.sleep(0.3)

    async def customer_worker(self, customer: str) -> None:
        async with httpx.AsyncClient(base_url=self.url, timeout=10) as client:
            while self.running:
                if self.pending:
                    await self.send(client, self.pending.pop(0))
                    await asyncio.sleep(0.2)  # kinder than hammering a service that is down
                    continue
                if len(self.skus) < 2:
                    await asyncio.sleep(0.2)
                    continue
                lines = [
                    {"sku": sku, "quantity": random.randint(1, 2)} for sku in random.sample(self.skus, 2)
                ]
                write = self._new("place", "/orders", {"lines": lines, "currency": "EUR"}, customer)
                await self.send(client, write)
                await asyncio.sleep(0.4)

    async def settle(self, timeout: float = 120) -> list[Write]:
        """After the faults: send every unsettled write again; return those still unsettled."""
        async with httpx.AsyncClient(base_url=self.url, timeout=10) as client:
            deadline = time.monotonic() + timeout
            while self.pending and time.monotonic() < deadline:
                await self.send(client, self.pending.pop(0))
                await asyncio.sleep(0.05)
        return list(self.pending)


# --- the fold of the event store ---------------------------------------------------------------


@dataclass
class Order:
    customer: str
    lines: dict[str, int]  # sku -> quantity
    total: int
    status: str = "pending"
    version: int = 0


@dataclass
class Fold:
    """What the event store says, folded here from its rows, not by the projection code."""

    events: list[dict[str, Any]]
    orders: dict[str, Order] = field(default_factory=dict)
    on_hand: Counter[str] = field(default_factory=Counter)
    held: Counter[tuple[str, str]] = field(default_factory=Counter)  # (sku, order) -> units reserved
    committed: Counter[tuple[str, str]] = field(default_factory=Counter)
    sku_version: dict[str, int] = field(default_factory=dict)
    requested: dict[str, int] = field(default_factory=dict)  # order -> amount
    taken: set[str] = field(default_factory=set)  # authorised and not refunded

    @classmethod
    def of(cls, events: list[dict[str, Any]]) -> Fold:
        fold = cls(events)
        for event in events:
            fold.apply(event)
        return fold

    def apply(self, event: dict[str, Any]) -> None:
        kind, data, stream = event["event_type"], event["data"], event["stream_id"]
        order = str(data.get("order_id", ""))
        sku = str(data.get("sku", "")).lower()
        if stream.startswith("stock-"):
            self.sku_version[stream.removeprefix("stock-")] = event["version"]
        if kind == "OrderPlaced":
            lines = {line["sku"].lower(): line["quantity"] for line in data["lines"]}
            self.orders[order] = Order(data["customer_id"], lines, data["total"])
        elif kind in ("OrderConfirmed", "OrderRejected", "OrderCancelled"):
            self.orders[order].status = kind.removeprefix("Order").lower()
        if stream.startswith("order-"):
            self.orders[stream.removeprefix("order-")].version = event["version"]
        elif kind == "ProductRegistered":
            self.on_hand[sku] += 0
        elif kind == "StockReceived":
            self.on_hand[sku] += data["quantity"]
        elif kind == "StockReserved":
            self.held[sku, order] += data["quantity"]
        elif kind == "StockReservationReleased":
            self.held[sku, order] -= data["quantity"]
        elif kind == "StockReservationCommitted":
            self.held[sku, order] -= data["quantity"]
            self.committed[sku, order] += data["quantity"]
            self.on_hand[sku] -= data["quantity"]
        elif kind == "PaymentRequested":
            self.requested[order] = data["amount"]
        elif kind == "PaymentAuthorized":
            self.taken.add(order)
        elif kind == "PaymentRefunded":
            self.taken.discard(order)

    def available(self, sku: str) -> int:
        return self.on_hand[sku] - sum(units for (held_sku, _), units in self.held.items() if held_sku == sku)

    def counts(self) -> dict[str, int]:
        found = Counter(order.status for order in self.orders.values())
        return {status: found.get(status, 0) for status in ("pending", "confirmed", "rejected", "cancelled")}


async def stored_events(database_url: str) -> list[dict[str, Any]]:
    connection = await asyncpg.connect(database_url)
    try:
        rows = await connection.fetch(
            "SELECT stream_id, version, position, event_type, data::text AS data FROM eventstore.events "
            "ORDER BY transaction_id, position"
        )
    finally:
        await connection.close()
    return [{**dict(row), "data": json.loads(row["data"])} for row in rows]


async def sagas(database_url: str) -> dict[str, tuple[str, ...]]:
    """Each saga's (phase, outcome, parked step and code, reason) from the saga's own view table."""
    connection = await asyncpg.connect(database_url)
    try:
        rows = await connection.fetch(
            "SELECT saga_id::text AS id, phase, coalesce(outcome, '') AS outcome, "
            "coalesce(parked_step || ' ' || parked_code, '') AS parked, coalesce(reason, '') AS reason "
            "FROM saga.sagas"
        )
    finally:
        await connection.close()
    return {row["id"]: (row["phase"], row["outcome"], row["parked"], row["reason"][:80]) for row in rows}


# --- poison records ----------------------------------------------------------------------------


POISON: tuple[tuple[bytes, list[tuple[str, bytes]]], ...] = (
    (b"\xff\xfe\x00 not even text", []),
    (b'{"order_id": "not json', [("ce_type", b"OrderPlaced")]),
    (b'{"hello": "world"}', [("ce_type", b"OrderPlaced"), ("ce_specversion", b"1.0")]),
    (b'{"order_id": "00000000-0000-0000-0000-000000000000"}', [("ce_type", b"OrderTeleported")]),
    (b"{}", [("ce_type", b"\xff\xfe"), ("ce_dataschemaversion", b"99")]),
)


async def write_poison(bootstrap: str, tag: str) -> list[str]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    keys = []
    try:
        for n, (value, headers) in enumerate(POISON):
            key = f"poison-{tag}-{n}"
            await producer.send_and_wait(ORDER_TOPIC, value, key=key.encode(), headers=headers)
            keys.append(key)
    finally:
        await producer.stop()
    return keys


async def dead_letter_keys(bootstrap: str, topic: str, wanted: set[str], timeout: float) -> set[str]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    found: set[str] = set()
    try:
        await consumer.start()
        deadline = time.monotonic() + timeout
        while not wanted <= found and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                found.update(record.key.decode(errors="replace") for record in records if record.key)
    except Exception as error:
        found.add(f"(could not read {topic}: {type(error).__name__}: {error})")
    finally:
        await consumer.stop()
    return found & wanted


# --- the test ----------------------------------------------------------------------------------


@pytest.fixture
async def stack(search_url: str) -> AsyncIterator[OwnStack]:
    # Not under pytest's temporary folder: every pytest session that starts makes its parent
    # private again (mode 0700), and PostgreSQL, run as the service user, could not restart.
    tag = uuid.uuid4().hex[:8]
    folder = ROOT / ".devstack" / "faults" / tag
    prefix = f"faults{tag}-"
    own = OwnStack(folder, None if OWN_SEARCH else search_url, prefix)
    own.logs_kept = ROOT / ".devstack" / "faults" / f"logs-{tag}"
    try:
        await own.up(*SERVERS, *(() if OWN_SEARCH else ("opensearch",)))
        await own.up(*SERVICES)
        yield own
    finally:
        with contextlib.suppress(AssertionError):
            await own.down()
        # The logs are the evidence of a failed run: kept beside the stack folders, the rest goes.
        shutil.copytree(folder / "logs", own.logs_kept, dirs_exist_ok=True)
        shutil.rmtree(folder, ignore_errors=True)
        if not OWN_SEARCH:  # the shared engine keeps running: take the test's indices away
            search = await connect_search(search_url)
            for index in await search.indices(f"{prefix}*"):
                await search.delete_index(index)
            await search.close()


class Report:
    """Every check's failure, collected so that one run names them all."""

    def __init__(self) -> None:
        self.failures: list[str] = []
        self.notes: list[str] = []

    def check(self, ok: bool, message: str) -> None:
        if not ok:
            self.failures.append(message)


def examples(items: Any, limit: int = 5) -> str:
    items = list(items)
    return f"{len(items)}, e.g. {items[:limit]}"


async def run_faults(stack: OwnStack, report: Report) -> None:
    """Kill each service (its supervisor restarts it), then each server (restarted here)."""
    for name in SERVICES:
        killed = stack.kill_service(name)
        began = time.monotonic()
        while stack.service_pid(name) in (None, killed) and time.monotonic() - began < 30:  # noqa: ASYNC110
            await asyncio.sleep(0.2)  # the supervisor writes its state file: nothing to wait on but that
        back = await ready(stack.url(f"{name.upper()}_URL"))
        report.check(back is not None, f"recovery: {name} not ready {RECOVERY_BOUND:.0f}s after SIGKILL")
        report.notes.append(f"{name} SIGKILLed, ready again after {time.monotonic() - began:.1f}s")
        await asyncio.sleep(1)
    for name in SERVERS:
        stack.kill_server(name)
        await asyncio.sleep(2)
        began = time.monotonic()
        await stack.up(name)
        for service in SERVICES:
            back = await ready(stack.url(f"{service.upper()}_URL"))
            report.check(
                back is not None,
                f"recovery: {service} not ready {RECOVERY_BOUND:.0f}s after {name} restarted",
            )
        report.notes.append(f"{name} SIGKILLed, every service ready {time.monotonic() - began:.1f}s after")
        await asyncio.sleep(1)


async def read_models(
    query: str, token: str, fold: Fold
) -> tuple[list[str], list[str], dict[str, Any] | str]:
    """The orders and SKUs the query service shows differently from the fold, and its counts."""
    wrong_orders: list[str] = []
    wrong_skus: list[str] = []
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=query, timeout=10, headers=headers) as client:
        for order_id, order in fold.orders.items():
            response = await client.get(f"/orders/{order_id}")
            if response.status_code != 200:
                wrong_orders.append(f"{order_id}: {response.status_code}")
                continue
            seen = response.json()
            want = (order.status, order.total, order.version, order.customer, order.lines)
            got = (
                seen["status"], seen["total"], seen["version"], seen["customer_id"],
                {line["sku"].lower(): line["quantity"] for line in seen["lines"]},
            )  # fmt: skip
            if want != got:
                wrong_orders.append(f"{order_id}: read {got[:3]}, store {want[:3]}")
        for sku, version in fold.sku_version.items():
            response = await client.get(f"/stock/{sku}")
            if response.status_code != 200:
                wrong_skus.append(f"{sku}: {response.status_code}")
                continue
            seen = response.json()
            want_sku = (fold.on_hand[sku], fold.available(sku), version)
            got_sku = (seen["on_hand"], seen["available"], seen["version"])
            if want_sku != got_sku:
                wrong_skus.append(f"{sku}: read (on_hand, available, version) {got_sku}, store {want_sku}")
        response = await client.get("/orders/counts")
        counts: dict[str, Any] | str = (
            response.json()["counts"]
            if response.status_code == 200
            else f"{response.status_code} {response.text}"
        )
    return wrong_orders, wrong_skus, counts


# Starting the stack, the faults, the settling and the bounds; more than the suite's default timeout.
@pytest.mark.timeout(1200 + RUN_SECONDS)
async def test_the_pipeline_loses_nothing_and_ends_consistent_when_each_part_is_killed_under_load(
    stack: OwnStack,
) -> None:
    report = Report()
    database_url, bootstrap = stack.url("DATABASE_URL"), stack.url("KAFKA_BOOTSTRAP_SERVERS")
    tokens = token_factory(
        secret=(stack.folder / "jwt-secret").read_text().strip(),
        issuer="fulfilment-local",
        audience="fulfilment",
    )
    staff = tokens("staff-faults", roles=("staff",))
    load = Load(
        stack.url("COMMAND_URL"), staff, [tokens(f"customer-{n}", roles=("customer",)) for n in range(3)]
    )
    workers = [asyncio.create_task(load.staff_worker())]
    workers += [asyncio.create_task(load.customer_worker(customer)) for customer in load.customers]
    poison = await write_poison(bootstrap, uuid.uuid4().hex[:8])
    began = time.monotonic()
    try:
        await asyncio.sleep(5)
        for _ in itertools.count():
            await run_faults(stack, report)
            if time.monotonic() - began >= RUN_SECONDS:
                break
    finally:
        load.running = False
        await asyncio.gather(*workers)
    report.notes.append(f"load and faults: {time.monotonic() - began:.0f}s")
    unsettled = await load.settle()
    load_ended = time.monotonic()

    # 2. Sagas: every placed order's saga done within the bound.
    events = await stored_events(database_url)
    fold = Fold.of(events)
    while time.monotonic() - load_ended < SAGA_BOUND:
        found = await sagas(database_url)
        if all(found.get(order, ("",))[0] == "done" for order in fold.orders):
            break
        await asyncio.sleep(1)
    report.notes.append(f"settling and sagas: {time.monotonic() - load_ended:.0f}s")
    found = await sagas(database_url)
    events = await stored_events(database_url)
    fold = Fold.of(events)

    # 1. Nothing acknowledged lost, nothing applied twice.
    report.check(
        not unsettled, f"client: writes never settled after the faults: {examples(w.path for w in unsettled)}"
    )
    report.check(load.outcomes[500] == 0, f"client: {load.outcomes[500]} answers were 500")
    report.check(
        len(load.outcomes) > 2, f"no fault reached a client, the run proved nothing: {dict(load.outcomes)}"
    )
    by_place = {(event["stream_id"], event["version"]): event for event in events}
    expected_type = {"register": "ProductRegistered", "receive": "StockReceived", "place": "OrderPlaced",
                     "cancel": "OrderCancelled"}  # fmt: skip
    acknowledged = [write for write in load.writes if write.acknowledged is not None]

    def stored_type(write: Write) -> str | None:
        assert write.acknowledged is not None
        place = (write.acknowledged["stream_id"], write.acknowledged["version"])
        return by_place.get(place, {}).get("event_type")

    lost = [write.key for write in acknowledged if stored_type(write) != expected_type[write.kind]]
    report.check(
        not lost, f"lost: acknowledged commands not in the store where acknowledged: {examples(lost)}"
    )
    places = Counter((w.acknowledged["stream_id"], w.acknowledged["version"]) for w in acknowledged)  # type: ignore[index]
    report.check(
        all(n == 1 for n in places.values()),
        f"two keys acknowledged at one place: {examples(p for p, n in places.items() if n > 1)}",
    )
    per_kind = Counter(event["event_type"] for event in events)
    for kind, event_type in expected_type.items():
        keys = sum(1 for write in acknowledged if write.kind == kind)
        report.check(
            per_kind[event_type] == keys,
            f"applied twice or lost: {per_kind[event_type]} {event_type} events for {keys} acknowledged keys",
        )

    # 2. Sagas done within the bound, their outcome the order's status.
    not_done = [order for order in fold.orders if found.get(order, ("",))[0] != "done"]
    report.check(
        not not_done,
        f"saga: not done {SAGA_BOUND:.0f}s after the load ended: "
        f"{examples((o, found.get(o)) for o in not_done)}",
    )
    mismatched = [
        (order_id, found[order_id][1], order.status, found[order_id][3])
        for order_id, order in fold.orders.items()
        if order_id in found and found[order_id][0] == "done"
        and OUTCOME_TO_STATUS.get(str(found[order_id][1])) != order.status
    ]  # fmt: skip
    report.check(not mismatched, f"saga: outcome differs from the order's status: {examples(mismatched)}")

    # 3. Confirmed orders paid in full and every line committed.
    confirmed = {order_id: order for order_id, order in fold.orders.items() if order.status == "confirmed"}
    unpaid = [
        o for o, order in confirmed.items() if o not in fold.taken or fold.requested.get(o) != order.total
    ]
    report.check(not unpaid, f"confirmed but not paid its total: {examples(unpaid)}")
    uncommitted = [
        (o, sku) for o, order in confirmed.items() for sku, units in order.lines.items()
        if fold.committed[sku, o] != units
    ]  # fmt: skip
    report.check(not uncommitted, f"confirmed with a line not committed: {examples(uncommitted)}")

    # 4. Nothing held for an order that is not confirmed.
    held_stock = [
        (sku, o, n, fold.orders[o].status, "saga " + found.get(o, ("none",))[0])
        for (sku, o), n in fold.held.items()
        if n and fold.orders[o].status != "confirmed"
    ]
    report.check(not held_stock, f"stock held for orders not confirmed: {examples(held_stock)}")
    held_money = [(o, fold.orders[o].status) for o in fold.taken if fold.orders[o].status != "confirmed"]
    report.check(
        not held_money, f"money taken and not refunded for orders not confirmed: {examples(held_money)}"
    )

    # 5. Read models equal to the fold, through the query service (given time to catch up).
    query = stack.url("QUERY_URL")
    deadline = time.monotonic() + READ_MODEL_BOUND
    reading = time.monotonic()
    while True:
        wrong_orders, wrong_skus, counts = await read_models(query, staff, fold)
        if (not wrong_orders and not wrong_skus and counts == fold.counts()) or time.monotonic() > deadline:
            break
        await asyncio.sleep(2)
    report.notes.append(f"read models compared after {time.monotonic() - reading:.0f}s")
    report.check(not wrong_orders, f"read model: orders differ from the store: {examples(wrong_orders)}")
    report.check(not wrong_skus, f"read model: SKUs differ from the store: {examples(wrong_skus)}")
    report.check(counts == fold.counts(), f"read model: counts {counts}, store {fold.counts()}")

    # Health at the end: a loop that died quietly shows on /health/live, a lost dependency on ready.
    async with httpx.AsyncClient(timeout=5) as client:
        for name in SERVICES:
            for path in ("/health/live", "/health/ready"):
                try:
                    answer = await client.get(stack.url(f"{name.upper()}_URL") + path)
                    outcome = f"{answer.status_code} {answer.text[:300]}"
                except httpx.HTTPError as error:
                    outcome = f"{type(error).__name__}: {error}"
                report.check(outcome.startswith("200"), f"health: {name} {path} after the run: {outcome}")

    # 6. Poison records dead-lettered by both consumers of the order topic.
    for topic in (PROJECTOR_DLQ, SAGA_DLQ):
        lettered = await dead_letter_keys(bootstrap, topic, set(poison), timeout=15)
        missing = sorted(set(poison) - lettered)
        report.check(
            not missing,
            f"dead letters: {len(missing)} of {len(poison)} poison records not in {topic}: {missing}",
        )

    summary = (
        f"{len(load.writes)} commands ({dict(Counter(w.kind for w in load.writes))}), "
        f"answers {dict(load.outcomes)}; "
        f"{len(fold.orders)} orders, store counts {fold.counts()}\n"
        + "\n".join(report.notes)
        + "\nsupervisors:\n"
        + stack.supervision()
        + f"\nlogs: {stack.logs_kept}"
    )
    print(summary)
    assert not report.failures, "\n".join(["failed checks:", *report.failures, "", summary])


def test_the_fold_follows_an_order_s_stock_and_money_through_the_store_s_events() -> None:
    # The checks are only as good as the fold: a confirmed order, and a rejected one whose
    # reservation and payment were never undone.
    def event(stream: str, version: int, kind: str, **data: Any) -> dict[str, Any]:
        return {"stream_id": stream, "version": version, "event_type": kind, "data": data}

    good, bad = str(uuid.uuid4()), str(uuid.uuid4())
    lines = [{"sku": "FLT-1", "quantity": 2, "unit_price": 100, "line_total": 200}]
    fold = Fold.of([
        event("stock-flt-1", 0, "ProductRegistered", sku="flt-1"),
        event("stock-flt-1", 1, "StockReceived", sku="flt-1", quantity=5),
        event(f"order-{good}", 0, "OrderPlaced", order_id=good, customer_id="c", lines=lines, total=200),
        event(f"order-{bad}", 0, "OrderPlaced", order_id=bad, customer_id="c", lines=lines, total=200),
        event("stock-flt-1", 2, "StockReserved", sku="flt-1", order_id=good, quantity=2),
        event("stock-flt-1", 3, "StockReserved", sku="flt-1", order_id=bad, quantity=2),
        event(f"payment-{good}", 0, "PaymentRequested", order_id=good, amount=200),
        event(f"payment-{good}", 1, "PaymentAuthorized", order_id=good),
        event(f"payment-{bad}", 0, "PaymentRequested", order_id=bad, amount=200),
        event(f"payment-{bad}", 1, "PaymentAuthorized", order_id=bad),
        event(f"order-{good}", 1, "OrderConfirmed", order_id=good),
        event("stock-flt-1", 4, "StockReservationCommitted", sku="flt-1", order_id=good, quantity=2),
        event(f"order-{bad}", 1, "OrderRejected", order_id=bad),
    ])  # fmt: skip
    assert fold.counts() == {"pending": 0, "confirmed": 1, "rejected": 1, "cancelled": 0}
    assert (fold.orders[good].version, fold.orders[bad].version, fold.sku_version["flt-1"]) == (1, 1, 4)
    assert (fold.on_hand["flt-1"], fold.available("flt-1")) == (3, 1)
    assert fold.committed["flt-1", good] == 2
    assert {key: units for key, units in fold.held.items() if units} == {("flt-1", bad): 2}
    assert fold.taken == {good, bad}

    fold.apply(event("stock-flt-1", 5, "StockReservationReleased", sku="flt-1", order_id=bad, quantity=2))
    fold.apply(event(f"payment-{bad}", 2, "PaymentRefunded", order_id=bad, amount=200))
    assert (fold.available("flt-1"), fold.taken) == (3, {good})
