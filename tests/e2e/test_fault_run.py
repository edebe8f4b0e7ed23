"""The fault run: under a steady load of commands, each part of the write path is SIGKILLed and restarted.

The command service and the relay run as processes of this test; PostgreSQL and
Kafka are servers of its own (the local stack's CLI on a port offset), so killing
them disturbs no other test. Clients behave as the OpenAPI document tells them:
a 503, 409 or 429, or no answer at all, is retried later with the same
Idempotency-Key. At the end every key is settled and the checks are the
invariants seen from outside:

- every acknowledged write (2xx) is in the store, at the version and position it was acknowledged with;
- no Idempotency-Key took effect twice (one event per key);
- no request was answered 500;
- Kafka holds every stored event, and each stream's events in version order.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import random
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer
from testkit.harness import ServiceProcess, TokenFactory, free_port, token_factory

from deploy.local.components import Layout
from deploy.local.stack import read_env
from services.command.tests.support import command_headers

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SECRET = "fault-run-secret-that-is-long-enough-for-hs256"
ISSUER, AUDIENCE = "https://issuer.faults", "fulfilment-faults"
WORKERS = 4
RETRYABLE = {409, 429, 503}


class OwnServers:
    """PostgreSQL and Kafka of the test's own, run by the local stack's CLI in a folder of its own."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.env = {
            key: value
            for key, value in os.environ.items()
            if key not in {"DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL", "SEARCH_URL"}
        }
        # Above Linux's ephemeral range and random, so runs side by side never meet.
        offset = random.randrange(5570, 6120, 2)  # above the ephemeral range
        self.env.update(DEVSTACK_DIR=str(folder), DEVSTACK_PORT_OFFSET=str(offset))
        shared_cache = ROOT / ".devstack" / "cache" / "kafka"  # reuse downloaded jars
        if shared_cache.exists():
            (folder / "cache").mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileExistsError):
                (folder / "cache" / "kafka").symlink_to(shared_cache)

    def _run(self, command: str, *names: str) -> None:
        result = subprocess.run(
            [sys.executable, "-m", "deploy.local", command, "--only", *names],
            cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=240, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr

    async def up(self, *names: str) -> None:
        await asyncio.to_thread(self._run, "up", *names)

    async def down(self) -> None:
        await asyncio.to_thread(self._run, "down", "postgres", "kafka")

    def kill(self, name: str) -> None:
        """SIGKILL the server's whole process group, as a crash or the OOM killer would."""
        pid = int((self.folder / "run" / f"{name}.pid").read_text().split()[0])
        os.killpg(pid, signal.SIGKILL)

    def url(self, variable: str) -> str:
        return read_env(Layout(self.folder))[variable]


@dataclass
class Write:
    """One command with its key: sent until a 2xx answer acknowledges it."""

    path: str
    body: dict[str, Any]
    key: str = field(default_factory=lambda: str(uuid.uuid4()))
    acknowledged: dict[str, Any] | None = None


@dataclass
class Load:
    """A steady stream of stock commands from a few clients; what they sent and what they were told."""

    url: str
    token: str
    writes: list[Write] = field(default_factory=list)
    pending: list[Write] = field(default_factory=list)
    statuses: dict[int | str, int] = field(default_factory=dict)
    skus: list[str] = field(default_factory=list)
    running: bool = True

    async def send(self, client: httpx.AsyncClient, write: Write) -> None:
        try:
            response = await client.post(
                write.path, json=write.body, headers=command_headers(self.token, write.key)
            )
        except httpx.TransportError as error:  # the service was killed mid-request, or is down
            outcome: int | str = type(error).__name__
        else:
            outcome = response.status_code
            if response.is_success:
                write.acknowledged = response.json()
                if write.path == "/products":
                    self.skus.append(write.body["sku"])
                return
            if response.status_code in RETRYABLE:
                assert response.headers.get("Retry-After"), response.text
        self.statuses[outcome] = self.statuses.get(outcome, 0) + 1
        self.pending.append(write)
        await asyncio.sleep(0.2)  # as Retry-After asks, and kinder than hammering a service that is down

    def next_write(self, worker: int, serial: int) -> Write:
        if self.pending:
            return self.pending.pop(0)  # a careful client retries with the same key
        if not self.skus or serial % 4 == 0:
            product = {
                "sku": f"F{worker}-{serial}",
                "name": f"fault item {worker}-{serial}",
                "unit_price": 100 + serial,
                "currency": "EUR",
            }
            write = Write("/products", product)
        else:
            write = Write(f"/products/{random.choice(self.skus)}/receipts", {"quantity": 1})
        self.writes.append(write)
        return write

    async def worker(self, worker: int) -> None:
        async with httpx.AsyncClient(base_url=self.url, timeout=10) as client:
            for serial in itertools.count():
                if not self.running:
                    return
                await self.send(client, self.next_write(worker, serial))
                await asyncio.sleep(0.02)

    async def settle(self, timeout: float = 120) -> None:
        """After the faults: send every unacknowledged write again until each is acknowledged."""
        async with httpx.AsyncClient(base_url=self.url, timeout=10) as client, asyncio.timeout(timeout):
            while self.pending:
                await self.send(client, self.pending.pop(0))
                if self.pending:
                    await asyncio.sleep(0.05)


@pytest.fixture
async def servers() -> AsyncIterator[OwnServers]:
    # Not under pytest's temporary folder: every pytest session that starts makes its parent
    # private again (mode 0700), and PostgreSQL, run as the service user, could not restart.
    folder = ROOT / ".devstack" / "faults" / uuid.uuid4().hex[:8]
    own = OwnServers(folder)
    try:
        await own.up("postgres", "kafka")
        yield own
    finally:
        await own.down()
        shutil.rmtree(folder, ignore_errors=True)


def service(module: str, env: dict[str, str], log: Path) -> ServiceProcess:
    port = free_port()
    variable = "COMMAND_PORT" if module == "command_service" else "RELAY_PORT"
    return ServiceProcess(module, {**os.environ, **env, variable: str(port)}, port=port, log=log).start()


async def test_nothing_acknowledged_is_lost_when_each_part_is_killed_under_load(
    servers: OwnServers, redis_url: str, tmp_path: Path
) -> None:
    database_url = servers.url("DATABASE_URL")
    bootstrap = servers.url("KAFKA_BOOTSTRAP_SERVERS")
    prefix = f"faults{uuid.uuid4().hex[:6]}."
    common = {"DATABASE_URL": database_url, "LOG_LEVEL": "WARNING"}
    command = service(
        "command_service",
        {
            **common,
            "REDIS_URL": redis_url,
            "JWT_SECRET": SECRET,
            "JWT_ISSUER": ISSUER,
            "JWT_AUDIENCE": AUDIENCE,
            "RATE_LIMIT_PER_SECOND": "10000",
            "RATE_LIMIT_BURST": "10000",
        },
        tmp_path / "command.log",
    )
    await command.ready()
    relay = service(
        "relay_service",
        {
            **common,
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "RELAY_TOPIC_PREFIX": prefix,
            "RELAY_PARTITIONS": "3",
            "RELAY_MAX_BACKOFF": "1",
            "RELAY_ACK_TIMEOUT": "5",
            "RELAY_STANDBY_POLL": "0.2",
        },
        tmp_path / "relay.log",
    )
    tokens: TokenFactory = token_factory(secret=SECRET, issuer=ISSUER, audience=AUDIENCE)
    load = Load(command.url, tokens("staff-faults", roles=("staff",)))
    workers = [asyncio.create_task(load.worker(n)) for n in range(WORKERS)]
    try:
        await relay.ready()
        await asyncio.sleep(3)
        for process in (relay, command):
            process.kill()
            await asyncio.sleep(1)
            process.start()
            await process.ready(timeout=90)
            await asyncio.sleep(2)
        for name in ("kafka", "postgres"):
            servers.kill(name)
            await asyncio.sleep(2)
            await servers.up(name)
            await command.ready(timeout=90)
            await relay.ready(timeout=120)
            await asyncio.sleep(2)
    finally:
        load.running = False
        await asyncio.gather(*workers)
    await load.settle()
    try:
        await relay.wait_for(lambda _, body: body["lag_events"] == 0, path="/status", timeout=120)
        stored = await stored_events(database_url)
        published = await published_versions(bootstrap, f"{prefix}stock", expected=len(stored))
    finally:
        relay.kill()
        command.kill()

    assert all(write.acknowledged is not None for write in load.writes)
    assert 500 not in load.statuses, (load.statuses, command.log_tail())
    assert load.statuses, "no fault reached a client: the run proved nothing"
    # Every acknowledged write is stored where its answer said.
    by_place = {(event["stream_id"], event["version"]): event for event in stored}
    for write in load.writes:
        assert write.acknowledged is not None
        place = (write.acknowledged["stream_id"], write.acknowledged["version"])
        assert place in by_place, write
        assert by_place[place]["position"] == write.acknowledged["position"], write
    # One event per key: as many registrations and receipts as keys, no more.
    registrations = sum(write.path == "/products" for write in load.writes)
    receipts = len(load.writes) - registrations
    types = [event["event_type"] for event in stored]
    assert (types.count("ProductRegistered"), types.count("StockReceived")) == (registrations, receipts)
    # Kafka: complete, and each stream in version order (a redelivery may repeat, never skip).
    versions: dict[str, int] = {}
    for event in stored:
        versions[event["stream_id"]] = max(versions.get(event["stream_id"], -1), event["version"])
    assert {stream: sorted(set(seen)) for stream, seen in published.items()} == {
        stream: list(range(last + 1)) for stream, last in versions.items()
    }
    for stream, seen in published.items():
        for before, after in itertools.pairwise(seen):
            assert after == before + 1 or after <= before, (stream, seen)


async def stored_events(database_url: str) -> list[dict[str, Any]]:
    connection = await asyncpg.connect(database_url)
    try:
        rows = await connection.fetch(
            "SELECT stream_id, version, position, event_type FROM eventstore.events ORDER BY position"
        )
    finally:
        await connection.close()
    return [dict(row) for row in rows]


async def published_versions(bootstrap: str, topic: str, *, expected: int) -> dict[str, list[int]]:
    """Each stream's versions in the order Kafka holds them, read until `expected` distinct events came."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    seen: dict[str, list[int]] = {}
    distinct: set[str] = set()
    try:
        async with asyncio.timeout(120):
            while len(distinct) < expected:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    for record in records:
                        headers = {name: value.decode() for name, value in record.headers}
                        distinct.add(headers["ce_id"])
                        seen.setdefault(headers["ce_subject"], []).append(int(headers["ce_streamversion"]))
    finally:
        await consumer.stop()
    return seen
