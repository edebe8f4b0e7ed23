"""The relay as a real process: SIGKILL mid-backlog, Kafka and PostgreSQL outages it recovers from
by itself, failover between two relays."""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import msgspec
import pytest
from eventstore import LogPosition, NewEvent, PostgresEventStore
from fulfilment.events import StockReceived
from relay_service.settings import RelaySettings
from testkit.harness import ServiceProcess, TcpProxy, free_port

from services.relay.tests.conftest import assert_complete_without_skips, collect, stock_events

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[3]


class RelayProcess(ServiceProcess):
    """`python -m relay_service` with the test's settings, its output in a log file."""

    def __init__(self, settings: RelaySettings, log: Path) -> None:
        port = free_port()
        env = {
            **os.environ,
            "DATABASE_URL": settings.database_url,
            "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
            "RELAY_TOPIC_PREFIX": settings.relay_topic_prefix,
            "RELAY_PARTITIONS": str(settings.relay_partitions),
            "RELAY_LOCK_KEY": str(settings.relay_lock_key),
            "RELAY_STANDBY_POLL": "0.2",
            "RELAY_MAX_BACKOFF": "1",
            "RELAY_ACK_TIMEOUT": "3",
            "RELAY_PORT": str(port),
        }
        super().__init__("relay_service", env, port=port, log=log)

    def start(self) -> RelayProcess:
        super().start()
        return self

    async def health(self, path: str = "/status") -> tuple[int, dict[str, Any]]:
        response = await self.get(path)
        return response.status_code, response.json()

    async def wait(self, condition: Any, timeout: float = 60.0, path: str = "/status") -> dict[str, Any]:
        """Poll the status endpoint until condition(status_code, body) holds."""
        body: dict[str, Any] = await self.wait_for(condition, path=path, timeout=timeout)
        return body


@pytest.fixture
def relays() -> Iterator[list[RelayProcess]]:
    """The relays a test starts; killed at the end whatever happened."""
    started: list[RelayProcess] = []
    yield started
    for relay in started:
        relay.kill()


async def test_sigkill_in_the_middle_of_a_backlog_loses_nothing(
    store: PostgresEventStore, relay_settings: RelaySettings, relays: list[RelayProcess], tmp_path: Path
) -> None:
    streams, per_stream = 300, 200
    expected = {f"stock-k{n}": per_stream for n in range(streams)}
    for stream in expected:
        await store.append(stream, stock_events(stream.removeprefix("stock-"), per_stream))
    total = streams * per_stream

    first = RelayProcess(relay_settings, tmp_path / "first.log").start()
    relays.append(first)
    await first.wait(lambda _, body: body["published_total"] >= 2000)
    first.kill()
    checkpoint = await store.load_checkpoint(relay_settings.relay_checkpoint)
    assert checkpoint is not None
    published_before_kill = len(await store.read_all(LogPosition.START, limit=total))
    remaining = await store.read_all(checkpoint, limit=total)
    assert 0 < len(remaining) < published_before_kill, "the kill must land mid-backlog"

    second = RelayProcess(relay_settings, tmp_path / "second.log").start()
    relays.append(second)
    records = await collect(
        relay_settings.kafka_bootstrap_servers,
        [f"{relay_settings.relay_topic_prefix}stock"],
        expected=total,
        timeout=120,
    )
    assert_complete_without_skips(records, expected)
    await second.wait(lambda _, body: body["lag_events"] == 0)


async def test_a_kafka_outage_makes_the_relay_unhealthy_then_it_catches_up_without_gaps(
    store: PostgresEventStore, relay_settings: RelaySettings, relays: list[RelayProcess], tmp_path: Path
) -> None:
    kafka = OwnKafka(tmp_path / "stack")
    bootstrap = kafka.up()
    settings = msgspec.structs.replace(relay_settings, kafka_bootstrap_servers=bootstrap)
    relay = RelayProcess(settings, tmp_path / "relay.log").start()
    relays.append(relay)
    written: dict[str, int] = {}
    stop = asyncio.Event()

    async def write() -> None:
        n = 0
        await store.append("stock-outage", stock_events("outage", 1))
        while not stop.is_set():
            n += 1
            await store.append(
                "stock-outage", [NewEvent(data=StockReceived(sku="outage", quantity=1, on_hand=n))]
            )
            written["stock-outage"] = n + 1
            await asyncio.sleep(0.02)

    writer = asyncio.create_task(write())
    try:
        await relay.wait(lambda code, _: code == 200, path="/health/ready")
        await relay.wait(lambda _, body: body["published_total"] >= 20)
        kafka.down()
        unhealthy = await relay.wait(lambda code, _: code == 503, path="/health/ready", timeout=60)
        assert unhealthy["checks"]["publishing"].startswith("leader: "), unhealthy
        assert unhealthy["checks"]["postgres"] == "ok"
        # Unready as soon as the broker stops answering; the error once the ack times out.
        report = await relay.wait(lambda _, body: body["last_error"], timeout=60)
        assert report["kafka_connected"] is False
        await asyncio.sleep(3)  # writes go on while Kafka is away
        kafka.up()
        await relay.wait(lambda code, _: code == 200, path="/health/ready", timeout=90)
        stop.set()
        await writer
        await relay.wait(lambda _, body: body["lag_events"] == 0)
        records = await collect(
            bootstrap, [f"{settings.relay_topic_prefix}stock"], expected=written["stock-outage"]
        )
        assert_complete_without_skips(records, written)
    finally:
        stop.set()
        await writer
        kafka.down()


async def test_an_idle_relay_reports_kafka_gone_and_back_without_waiting_for_a_send(
    store: PostgresEventStore, relay_settings: RelaySettings, relays: list[RelayProcess], tmp_path: Path
) -> None:
    # Nothing to publish, and an ack timeout that never comes into play: only watching
    # the broker itself can tell that it went away.
    kafka = OwnKafka(tmp_path / "stack")
    bootstrap = kafka.up()
    settings = msgspec.structs.replace(relay_settings, kafka_bootstrap_servers=bootstrap)
    relay = RelayProcess(settings, tmp_path / "relay.log")
    relay.env["RELAY_ACK_TIMEOUT"] = "600"
    relays.append(relay.start())
    try:
        await relay.wait(lambda code, _: code == 200, path="/health/ready")
        await relay.wait(lambda _, body: body["role"] == "leader" and body["kafka_connected"])
        kafka.down()
        await relay.wait(lambda code, _: code == 503, path="/health/ready", timeout=30)
        _, gone = await relay.health()
        assert gone["kafka_connected"] is False
        assert gone["role"] == "leader"
        assert gone["last_error"] is None  # nothing failed: the relay noticed by itself
        kafka.up()
        await relay.wait(lambda code, _: code == 200, path="/health/ready", timeout=90)
        _, back = await relay.health()
        assert back["kafka_connected"] is True
    finally:
        kafka.down()


async def test_two_relay_processes_one_publishes_and_the_other_takes_over_after_sigkill(
    store: PostgresEventStore, relay_settings: RelaySettings, relays: list[RelayProcess], tmp_path: Path
) -> None:
    a = RelayProcess(relay_settings, tmp_path / "a.log").start()
    b = RelayProcess(relay_settings, tmp_path / "b.log").start()
    relays += [a, b]
    await store.append("stock-fo", stock_events("fo", 10))
    roles = {}
    for relay in (a, b):
        body = await relay.wait(lambda _, body: body["role"] in {"leader", "standby"})
        roles[relay] = body["role"]
    assert sorted(roles.values()) == ["leader", "standby"]
    leader = next(r for r, role in roles.items() if role == "leader")
    standby = next(r for r, role in roles.items() if role == "standby")
    await leader.wait(lambda _, body: body["published_total"] == 10)
    _, standby_body = await standby.health()
    assert standby_body["published_total"] == 0

    leader.kill()
    await standby.wait(lambda _, body: body["role"] == "leader", timeout=30)
    await store.append("stock-fo", [NewEvent(data=StockReceived(sku="fo", quantity=1, on_hand=10))])
    await standby.wait(lambda _, body: body["lag_events"] == 0 and body["published_total"] >= 1)
    records = await collect(
        relay_settings.kafka_bootstrap_servers, [f"{relay_settings.relay_topic_prefix}stock"], expected=11
    )
    assert_complete_without_skips(records, {"stock-fo": 11})


class OwnKafka:
    """A Kafka broker of the test's own, started and stopped with the local stack's CLI."""

    def __init__(self, folder: Path) -> None:
        self.env = {key: value for key, value in os.environ.items() if key != "KAFKA_BOOTSTRAP_SERVERS"}
        # Above Linux's ephemeral range, and different for each test, so two runs side by side never meet.
        self.offset = random.randrange(5570, 6120, 2)  # above the ephemeral range
        self.env.update(DEVSTACK_DIR=str(folder), DEVSTACK_PORT_OFFSET=str(self.offset))
        # Reuse the main stack's downloaded jars instead of fetching them again.
        shared_cache = ROOT / ".devstack" / "cache" / "kafka"
        if shared_cache.exists():
            (folder / "cache").mkdir(parents=True, exist_ok=True)
            if not (folder / "cache" / "kafka").exists():
                (folder / "cache" / "kafka").symlink_to(shared_cache)

    def _run(self, command: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "deploy.local", command, "--only", "kafka"],
            cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=180, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    def up(self) -> str:
        self._run("up")
        return f"127.0.0.1:{59092 + self.offset}"

    def down(self) -> None:
        self._run("down")


async def test_the_relay_recovers_by_itself_from_a_postgres_outage(
    store: PostgresEventStore, relay_settings: RelaySettings, relays: list[RelayProcess], tmp_path: Path
) -> None:
    # The relay reaches PostgreSQL through a proxy the test cuts: every connection reset,
    # new ones refused, as when the server is killed; the shared server itself keeps running.
    target = urlsplit(relay_settings.database_url)
    proxy = await TcpProxy(target.hostname or "127.0.0.1", target.port or 5432).start()
    proxied = urlunsplit(target._replace(netloc=target.netloc.replace(f":{target.port}", f":{proxy.port}")))
    settings = msgspec.structs.replace(relay_settings, database_url=proxied)
    relay = RelayProcess(settings, tmp_path / "relay.log").start()
    relays.append(relay)
    try:
        await store.append("stock-pg", stock_events("pg", 5))
        await relay.wait(lambda _, body: body["published_total"] >= 5)
        await proxy.stop()
        down = await relay.wait(lambda code, _: code == 503, path="/health/ready", timeout=30)
        assert down["checks"]["postgres"] != "ok", down
        # Writes go on while the relay cannot read them.
        await store.append(
            "stock-pg", [NewEvent(data=StockReceived(sku="pg", quantity=1, on_hand=n)) for n in range(5, 10)]
        )
        await asyncio.sleep(2)
        assert relay.returncode is None
        await proxy.start()
        await relay.wait(lambda code, _: code == 200, path="/health/ready", timeout=90)
        await relay.wait(lambda _, body: body["role"] == "leader" and body["lag_events"] == 0, timeout=60)
        records = await collect(
            settings.kafka_bootstrap_servers, [f"{settings.relay_topic_prefix}stock"], expected=10
        )
        assert_complete_without_skips(records, {"stock-pg": 10})
    finally:
        await proxy.stop()
