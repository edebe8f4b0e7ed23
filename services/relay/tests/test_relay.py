"""The relay against real PostgreSQL and Kafka, in-process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import jsonschema
import msgspec
import pytest
import yaml
from aiokafka import AIOKafkaProducer, ConsumerRecord
from aiokafka.admin import AIOKafkaAdminClient
from eventstore import EventRegistry, NewEvent, PostgresEventStore, checkpoint_lag
from fulfilment.events import StockReceived
from relay_service.publisher import Relay, make_producer
from relay_service.settings import RelaySettings
from relay_service.status import RelayStatus, published_lag
from relay_service.topics import CHANNELS

from services.relay.tests.conftest import (
    assert_complete_without_skips,
    collect,
    header,
    registered,
    stock_events,
    versions_by_stream,
)

ROOT = Path(__file__).resolve().parents[3]


@contextlib.asynccontextmanager
async def running(relay: Relay) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(relay.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def wait_for(condition: Any, timeout: float = 30.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 - polling the relay's status is the point
            await asyncio.sleep(0.05)


async def test_publishes_every_event_once_in_stream_order(
    store: PostgresEventStore, relay_settings: RelaySettings
) -> None:
    streams = [f"stock-sku{n}" for n in range(5)]
    for stream in streams:
        await store.append(stream, stock_events(stream.removeprefix("stock-"), 30))
    relay = Relay(relay_settings, store)
    async with running(relay):
        records = await collect(
            relay_settings.kafka_bootstrap_servers,
            [f"{relay_settings.relay_topic_prefix}stock"],
            expected=150,
        )
        await wait_for(lambda: relay.status.published_total == 150)
    assert len(records) == 150
    assert versions_by_stream(records) == {stream: list(range(30)) for stream in streams}
    assert len({header(r, "ce_id") for r in records}) == 150
    checkpoint = await store.load_checkpoint(relay_settings.relay_checkpoint)
    assert checkpoint is not None
    assert checkpoint.position == max(int(header(r, "ce_position")) for r in records)


async def test_every_published_message_matches_its_schema_and_asyncapi_channel(
    store: PostgresEventStore, relay_settings: RelaySettings
) -> None:
    # The contract external consumers code against, checked on what the relay really sends.
    await store.append("stock-mug", stock_events("mug", 3))
    relay = Relay(relay_settings, store)
    async with running(relay):
        records = await collect(
            relay_settings.kafka_bootstrap_servers, [f"{relay_settings.relay_topic_prefix}stock"], expected=3
        )
    assert len(records) == 3
    document = yaml.safe_load((ROOT / "asyncapi.yaml").read_text())
    for record in records:
        assert_matches_contract(record, document, relay_settings.relay_topic_prefix)


def assert_matches_contract(
    record: ConsumerRecord[bytes, bytes], document: dict[str, Any], prefix: str
) -> None:
    name, version = header(record, "ce_type"), header(record, "ce_schemaversion")
    payload = json.loads(record.value)
    schema = json.loads((ROOT / "schemas" / f"{name}.v{version}.json").read_text())
    jsonschema.validate(payload, schema)
    # asyncapi.yaml: the channel for this topic lists the message, whose headers and payload validate.
    channel = next(
        c for c in document["channels"].values() if prefix + c["address"].split(".", 1)[1] == record.topic
    )
    assert name in channel["messages"]
    message = document["components"]["messages"][name]
    headers = {key: value.decode() for key, value in record.headers}
    jsonschema.validate(headers, message["headers"])
    jsonschema.validate(payload, {"$ref": message["payload"]["$ref"], "components": document["components"]})
    assert record.key == header(record, "ce_subject").encode()


async def test_every_topic_of_the_contract_exists_soon_after_start_even_with_an_empty_store(
    store: PostgresEventStore, relay_settings: RelaySettings
) -> None:
    # A consumer that subscribes before the first payment must find fulfilment.payment.
    document = yaml.safe_load((ROOT / "asyncapi.yaml").read_text())
    declared = {c["address"].removeprefix("fulfilment.") for c in document["channels"].values()}
    assert declared == set(CHANNELS)
    wanted = {relay_settings.relay_topic_prefix + category for category in declared}
    relay = Relay(relay_settings, store)
    admin = AIOKafkaAdminClient(bootstrap_servers=relay_settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        async with running(relay):
            await wait_for(lambda: relay.status.kafka_connected)
            existing = set(await admin.list_topics())
        assert wanted <= existing
        described = await admin.describe_topics(sorted(wanted))
        assert {len(topic["partitions"]) for topic in described} == {relay_settings.relay_partitions}
    finally:
        await admin.close()
    assert relay.status.published_total == 0


async def test_payloads_at_the_current_schema_version_are_published_as_the_store_holds_them(
    store: PostgresEventStore, pool: asyncpg.Pool[Any], relay_settings: RelaySettings
) -> None:
    await store.append("stock-mug", stock_events("mug", 3))
    relay = Relay(relay_settings, store)
    async with running(relay):
        records = await collect(
            relay_settings.kafka_bootstrap_servers, [f"{relay_settings.relay_topic_prefix}stock"], expected=3
        )
    stored = {
        str(row["event_id"]): row["data"]
        for row in await pool.fetch("SELECT event_id, data::text AS data FROM eventstore.events")
    }
    assert len(records) == 3
    for record in records:
        assert record.value == stored[header(record, "ce_id")].encode()
        current = {"ProductRegistered": "2", "StockReceived": "1"}[header(record, "ce_type")]
        assert header(record, "ce_schemaversion") == current


class GreetedV1(msgspec.Struct, frozen=True, tag="Greeted"):
    name: str


class Greeted(msgspec.Struct, frozen=True, tag="Greeted"):
    name: str
    loud: bool


def greeted_v2_registry() -> EventRegistry:
    """Today's code: `Greeted` is at schema v2, with the upcaster from v1."""
    registry = EventRegistry()
    registry.register(Greeted, name="Greeted", version=2)

    @registry.upcaster("Greeted", from_version=1)
    def _add_loud(payload: dict[str, Any]) -> dict[str, Any]:
        return {**payload, "loud": False}

    return registry


async def test_an_event_stored_at_an_older_version_is_published_upcast_with_the_version_sent(
    pool: asyncpg.Pool[Any], relay_settings: RelaySettings
) -> None:
    # Written by yesterday's code, when Greeted was at v1.
    yesterday = EventRegistry()
    yesterday.register(GreetedV1, name="Greeted", version=1)
    old_store = PostgresEventStore(pool, yesterday)
    # A type of the test's own, in a category the contract declares, so the relay publishes it.
    await old_store.append("stock-greeting", [NewEvent(data=GreetedV1(name="ada"))])
    await old_store.close()
    store = PostgresEventStore(pool, greeted_v2_registry())
    relay = Relay(relay_settings, store)
    try:
        async with running(relay):
            records = await collect(
                relay_settings.kafka_bootstrap_servers,
                [f"{relay_settings.relay_topic_prefix}stock"],
                expected=1,
            )
    finally:
        await store.close()
    assert len(records) == 1
    assert header(records[0], "ce_schemaversion") == "2"
    assert json.loads(records[0].value) == {"type": "Greeted", "name": "ada", "loud": False}


async def test_reconnecting_to_an_unreachable_kafka_leaves_no_producer_unclosed(
    store: PostgresEventStore, relay_settings: RelaySettings, caplog: pytest.LogCaptureFixture
) -> None:
    created: list[AIOKafkaProducer] = []

    def producer_factory(bootstrap_servers: str) -> AIOKafkaProducer:
        producer = make_producer(bootstrap_servers)
        created.append(producer)
        return producer

    unreachable = msgspec.structs.replace(relay_settings, kafka_bootstrap_servers="127.0.0.1:9")
    relay = Relay(unreachable, store, producer_factory=producer_factory)
    async with running(relay):
        await wait_for(lambda: len(created) >= 4)
    caplog.set_level(logging.ERROR, logger="asyncio")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        # What the garbage collector would run, some time later: aiokafka's own check,
        # which warns "Unclosed AIOKafkaProducer" (and logs it) for a producer never stopped.
        for producer in created:
            producer.__del__()
    assert [str(w.message) for w in caught if "Unclosed" in str(w.message)] == []
    assert "Unclosed" not in caplog.text


async def test_without_kafka_nothing_is_checkpointed_and_the_relay_reports_it(
    store: PostgresEventStore, relay_settings: RelaySettings
) -> None:
    await store.append("stock-mug", stock_events("mug", 2))
    unreachable = msgspec.structs.replace(relay_settings, kafka_bootstrap_servers="127.0.0.1:9")
    relay = Relay(unreachable, store)
    async with running(relay):
        await wait_for(lambda: relay.status.last_error is not None)
    assert relay.status.kafka_connected is False
    assert relay.status.role == "leader"
    assert "KafkaConnectionError" in (relay.status.last_error or "")
    assert await store.load_checkpoint(relay_settings.relay_checkpoint) is None


async def test_without_postgres_the_relay_keeps_retrying_and_reports_it(
    relay_settings: RelaySettings,
) -> None:
    unreachable = msgspec.structs.replace(relay_settings, database_url="postgresql://x:y@127.0.0.1:9/none")
    relay = Relay(unreachable, store=None)  # type: ignore[arg-type]  # never reached: no lock, no store
    async with running(relay) as task:
        await wait_for(lambda: relay.status.last_error is not None)
        await asyncio.sleep(0.5)
        assert not task.done()  # still trying, not crashed
    assert relay.status.role == "starting"
    assert "onnect" in (relay.status.last_error or "")


async def test_of_two_relays_one_publishes_and_the_other_takes_over_when_it_stops(
    store: PostgresEventStore, relay_settings: RelaySettings
) -> None:
    topic = f"{relay_settings.relay_topic_prefix}stock"
    first, second = Relay(relay_settings, store, RelayStatus()), Relay(relay_settings, store, RelayStatus())
    await store.append("stock-a", stock_events("a", 5))
    first_task = asyncio.create_task(first.run())
    await wait_for(lambda: first.status.published_total == 5)
    async with running(second):
        await wait_for(lambda: second.status.role == "standby")
        await store.append("stock-a", [NewEvent(data=StockReceived(sku="a", quantity=1, on_hand=5))])
        await wait_for(lambda: first.status.published_total == 6)
        assert second.status.published_total == 0
        first_task.cancel()  # the leader goes away; its lock connection closes
        with contextlib.suppress(asyncio.CancelledError):
            await first_task
        await wait_for(lambda: second.status.role == "leader")
        await store.append("stock-a", [NewEvent(data=StockReceived(sku="a", quantity=1, on_hand=6))])
        await wait_for(lambda: second.status.published_total >= 1)
        records = await collect(relay_settings.kafka_bootstrap_servers, [topic], expected=7)
    assert_complete_without_skips(records, {"stock-a": 7})


async def test_events_of_concurrent_writers_with_open_transactions_are_all_published(
    store: PostgresEventStore, pool: asyncpg.Pool[Any], relay_settings: RelaySettings
) -> None:
    # The log's gap safety seen from Kafka: transactions that took a lower position but
    # commit later must still be published, while the relay is tailing the log.
    writers, per_writer = 8, 25

    async def writer(n: int) -> None:
        stream = f"stock-w{n}"
        await store.append(stream, [NewEvent(data=registered(f"w{n}", "w"))])
        for version in range(1, per_writer):
            async with pool.acquire() as connection, connection.transaction():
                await store.append(
                    stream,
                    [NewEvent(data=StockReceived(sku=f"w{n}", quantity=1, on_hand=version))],
                    version - 1,
                    connection=connection,
                )
                await asyncio.sleep(random.uniform(0, 0.02))  # hold the transaction open

    relay = Relay(relay_settings, store)
    async with running(relay):
        await asyncio.gather(*(writer(n) for n in range(writers)))
        records = await collect(
            relay_settings.kafka_bootstrap_servers,
            [f"{relay_settings.relay_topic_prefix}stock"],
            expected=writers * per_writer,
        )
    assert_complete_without_skips(records, {f"stock-w{n}": per_writer for n in range(writers)})


@pytest.fixture(autouse=True)
def _quiet_kafka_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("CRITICAL", logger="aiokafka")


class StepNoted(msgspec.Struct, frozen=True):
    """An event of another service's own streams, unknown to the relay's registry."""

    step: str


async def test_streams_of_categories_outside_the_contract_are_neither_published_nor_in_the_way(
    store: PostgresEventStore, relay_settings: RelaySettings
) -> None:
    other_registry = EventRegistry()
    other_registry.register(StepNoted)
    other = PostgresEventStore(store.pool, other_registry)
    await store.append("stock-before", stock_events("before", 2))
    await other.append("saga-1", [NewEvent(data=StepNoted(step="reserve"))])
    await store.append("stock-after", stock_events("after", 2))
    relay = Relay(relay_settings, store)
    async with running(relay):
        records = await collect(
            relay_settings.kafka_bootstrap_servers,
            [f"{relay_settings.relay_topic_prefix}stock"],
            expected=4,
        )
        await wait_for(lambda: relay.status.published_total == 4)
    assert versions_by_stream(records) == {"stock-before": [0, 1], "stock-after": [0, 1]}
    assert relay.status.last_error is None


async def test_the_lag_counts_only_what_the_relay_publishes(
    store: PostgresEventStore, relay_settings: RelaySettings
) -> None:
    # The saga's events come last, as on an idle stack: the relay never checkpoints past them, and
    # they are no lag of its.
    other_registry = EventRegistry()
    other_registry.register(StepNoted)
    other = PostgresEventStore(store.pool, other_registry)
    await store.append("stock-idle", stock_events("idle", 2))
    await other.append(
        "saga-1", [NewEvent(data=StepNoted(step="reserve")), NewEvent(data=StepNoted(step="pay"))]
    )
    relay = Relay(relay_settings, store)
    async with running(relay):
        await wait_for(lambda: relay.status.published_total == 2)
        lag = await published_lag(store.pool, relay_settings.relay_checkpoint)
    everything = await checkpoint_lag(store.pool, relay_settings.relay_checkpoint)
    assert (lag.events, lag.seconds) == (0, 0.0)
    assert everything.events == 2  # the saga's, which the relay is never handed
    await store.append("stock-after", stock_events("after", 1))
    assert (await published_lag(store.pool, relay_settings.relay_checkpoint)).events == 1
