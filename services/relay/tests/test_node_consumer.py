"""The JavaScript example consumer (examples/node-consumer), run with node against a real relay's output.

It was written from asyncapi.yaml alone; here it must print every sample event
once, in stream order, although the relay delivered some twice, and skip a record
of a type the document did not declare, or of a schema version above the document's.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from eventstore import PostgresEventStore
from relay_service.examples import sample_events
from relay_service.publisher import Relay
from relay_service.settings import RelaySettings
from relay_service.topics import contract_topics

from services.relay.tests.conftest import collect

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "node-consumer"


def node_consumer() -> list[str]:
    """`node consumer.mjs`, its dependencies installed from the lock file on first use."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.fail("Node.js and npm are needed to run the example consumer: apt-get install nodejs npm")
    if not (EXAMPLE / "node_modules" / "kafkajs").exists():
        subprocess.run(
            [npm, "ci", "--silent", "--no-audit", "--no-fund"], cwd=EXAMPLE, check=True, timeout=300
        )
    return [node, str(EXAMPLE / "consumer.mjs")]


async def relay_until(settings: RelaySettings, store: PostgresEventStore, distinct: int, total: int) -> None:
    """Run a relay until Kafka holds `distinct` events in `total` records (redeliveries included)."""
    task = asyncio.create_task(Relay(settings, store).run())
    try:
        async with asyncio.timeout(60):
            while True:
                records = await collect(
                    settings.kafka_bootstrap_servers,
                    contract_topics(settings.relay_topic_prefix),
                    expected=distinct,
                )
                if len(records) >= total:
                    return
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_the_node_example_prints_each_event_once_in_stream_order(
    store: PostgresEventStore, relay_settings: RelaySettings
) -> None:
    command = node_consumer()
    samples = sample_events()
    for stream, events in samples.items():
        await store.append(stream, events)
    expected = sum(len(events) for events in samples.values())
    await relay_until(relay_settings, store, expected, expected)
    # A redelivery, as after a relay crash: the checkpoint is behind what Kafka has.
    await store.save_checkpoint(relay_settings.relay_checkpoint, (await store.read_all())[0].log_position)
    await relay_until(relay_settings, store, expected, 2 * expected - 1)
    # A record of a type the document never declared (as a future version of the suite might send).
    producer = AIOKafkaProducer(bootstrap_servers=relay_settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        await producer.send_and_wait(
            f"{relay_settings.relay_topic_prefix}stock",
            b'{"type": "StockCounted"}',
            key=b"stock-blue-mug",
            headers=[("ce_type", b"StockCounted"), ("ce_schemaversion", b"1"), ("ce_position", b"999")],
        )
        # And a known type at a schema version above the one the consumer was written for.
        await producer.send_and_wait(
            f"{relay_settings.relay_topic_prefix}stock",
            b'{"type": "ProductRegistered"}',
            key=b"stock-blue-mug",
            headers=[("ce_type", b"ProductRegistered"), ("ce_schemaversion", b"3"), ("ce_position", b"1000")],
        )
    finally:
        await producer.stop()

    topics = ",".join(sorted(contract_topics(relay_settings.relay_topic_prefix)))
    example = await asyncio.create_subprocess_exec(
        *command, "--brokers", relay_settings.kafka_bootstrap_servers,
        "--group", f"node-example-{uuid.uuid4().hex[:8]}", "--topics", topics, "--from-beginning",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert example.stdout is not None
    lines: list[str] = []
    try:
        async with asyncio.timeout(90):
            while len(lines) < expected:
                line = (await example.stdout.readline()).decode()
                assert line, "the example ended early"
                lines.append(line)
        await asyncio.sleep(2)  # anything printed now would be a duplicate
    finally:
        example.send_signal(signal.SIGTERM)
        rest, errors = await example.communicate()
    lines += [line for line in rest.decode().splitlines() if line]
    assert await example.wait() == 0

    printed: dict[str, list[tuple[int, str]]] = {}
    for line in lines:
        _position, event_type, at, schema, _payload = line.split(" ", 4)
        stream, version = at.rsplit("@", 1)
        assert schema == "(schema"
        printed.setdefault(stream, []).append((int(version), event_type))
    assert printed == {
        stream: [(version, type(event.data).__name__) for version, event in enumerate(events)]
        for stream, events in samples.items()
    }
    first = next(line for line in lines if " OrderPlaced " in line)
    assert '"customer_id":"alice"' in first
    assert "skipped StockCounted schema v1 at position 999" in errors.decode()
    assert "skipped ProductRegistered schema v3 at position 1000" in errors.decode()
    registered = next(line for line in lines if " ProductRegistered " in line)
    assert "(schema v2)" in registered
    assert '"currency":"EUR"' in registered
