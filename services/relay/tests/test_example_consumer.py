"""The example external consumer (examples/print_events.py) reads what the relay publishes."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from aiokafka import AIOKafkaProducer
from eventstore import NewEvent, PostgresEventStore
from fulfilment.events import StockReceived
from relay_service.publisher import Relay
from relay_service.settings import RelaySettings

from services.relay.tests.conftest import collect, stock_events

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "print_events.py"


async def test_the_example_prints_each_event_once_even_when_redelivered(
    store: PostgresEventStore, relay_settings: RelaySettings
) -> None:
    await store.append("stock-ex", stock_events("ex", 3))
    topic = f"{relay_settings.relay_topic_prefix}stock"
    task = asyncio.create_task(Relay(relay_settings, store).run())
    await collect(relay_settings.kafka_bootstrap_servers, [topic], expected=3)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    # A redelivery, as after a relay crash: the checkpoint is behind what Kafka has.
    await store.save_checkpoint(relay_settings.relay_checkpoint, (await store.read_all())[0].log_position)
    await store.append("stock-ex", [NewEvent(data=StockReceived(sku="ex", quantity=1, on_hand=3))])
    task = asyncio.create_task(Relay(relay_settings, store).run())
    async with asyncio.timeout(60):
        records = await collect(relay_settings.kafka_bootstrap_servers, [topic], expected=4)
        while len(records) < 6:  # all but the first event come twice
            records = await collect(relay_settings.kafka_bootstrap_servers, [topic], expected=4)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)

    # Something no relay would publish: reported, skipped, not fatal.
    producer = AIOKafkaProducer(bootstrap_servers=relay_settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"\xff not json", key=b"stock-ex")
    finally:
        await producer.stop()

    for _ in range(2):  # each run reads from the beginning again, then ends by itself
        example = await asyncio.create_subprocess_exec(
            sys.executable, str(EXAMPLE), "--bootstrap", relay_settings.kafka_bootstrap_servers,
            "--topics", topic, "--from-beginning",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=os.environ.copy(),
        )  # fmt: skip
        async with asyncio.timeout(60):
            out, err = await example.communicate()
        assert example.returncode == 0, err.decode()
        lines = [line for line in out.decode().splitlines() if line]
        assert [line.split()[1:3] for line in lines] == [
            ["ProductRegistered", "stock-ex@0"],
            ["StockReceived", "stock-ex@1"],
            ["StockReceived", "stock-ex@2"],
            ["StockReceived", "stock-ex@3"],
        ], err.decode()
        assert "skipped an unreadable record at" in err.decode()
