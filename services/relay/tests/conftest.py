"""Fixtures for the relay: a fresh event store database and a Kafka namespace per test."""

from __future__ import annotations

import asyncio
import itertools
import random
import uuid
from collections.abc import AsyncIterator, Iterable
from typing import Any

import asyncpg
import msgspec
import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord
from eventstore import EventRegistry, NewEvent, PostgresEventStore, connect, migrate
from fulfilment import superseded
from fulfilment.events import ProductRegistered, StockReceived
from fulfilment.registry import build_registry
from relay_service.settings import RelaySettings


@pytest.fixture
async def store_url(fresh_database_url: str) -> str:
    await migrate(fresh_database_url)
    return fresh_database_url


@pytest.fixture
async def pool(store_url: str) -> AsyncIterator[asyncpg.Pool[Any]]:
    pool = await connect(store_url, min_size=1, max_size=20)
    yield pool
    await pool.close()


@pytest.fixture
async def store(pool: asyncpg.Pool[Any]) -> AsyncIterator[PostgresEventStore]:
    store = PostgresEventStore(pool, build_registry())
    yield store
    await store.close()


@pytest.fixture
def relay_settings(store_url: str, kafka_bootstrap_servers: str) -> RelaySettings:
    """Settings whose topics and lock no other test shares."""
    return RelaySettings(
        database_url=store_url,
        kafka_bootstrap_servers=kafka_bootstrap_servers,
        relay_topic_prefix=f"t{uuid.uuid4().hex[:10]}.",
        relay_partitions=3,
        relay_lock_key=random.randrange(1, 2**62),
        relay_standby_poll=0.2,
        relay_max_backoff=1.0,
    )


def unpriced_products_registry() -> EventRegistry:
    """The registry as it was before products had prices: `ProductRegistered` at schema version 1."""
    registry = EventRegistry()
    registry.register(superseded.ProductRegistered, name="ProductRegistered", version=1)
    return registry


async def append_unpriced_registration(store: PostgresEventStore, sku: str, name: str) -> None:
    """Register `sku` as a store written before prices existed holds it: a version 1 payload."""
    old = PostgresEventStore(store.pool, unpriced_products_registry())
    try:
        await old.append(f"stock-{sku}", [superseded.ProductRegistered(sku=sku, name=name)])
    finally:
        await old.close()


def registered(sku: str, name: str) -> ProductRegistered:
    """A product registered with a price, as the command service registers them."""
    return ProductRegistered(sku=sku, name=name, unit_price=1250, currency="EUR")


def stock_events(sku: str, count: int) -> list[NewEvent]:
    """A registration and `count - 1` receipts: a stream whose versions are easy to check."""
    events: list[msgspec.Struct] = [registered(sku, f"product {sku}")]
    events += [StockReceived(sku=sku, quantity=1, on_hand=n) for n in range(1, count)]
    return [NewEvent(data=event) for event in events]


async def collect(
    bootstrap_servers: str, topics: Iterable[str], *, expected: int, timeout: float = 60.0
) -> list[ConsumerRecord[bytes, bytes]]:
    """Read the topics from the beginning until `expected` distinct events arrived or `timeout` passed.

    Distinct by `ce_id`: after a crash the relay re-sends, and duplicates must not
    make the count look complete while events are still missing.
    """
    consumer = AIOKafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap_servers,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        metadata_max_age_ms=1000,
    )
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    distinct: set[str] = set()
    try:
        async with asyncio.timeout(timeout):
            while len(distinct) < expected:
                batch = await consumer.getmany(timeout_ms=500)
                for partition in batch.values():
                    records += partition
                    distinct.update(header(record, "ce_id") for record in partition)
    except TimeoutError:
        pass
    finally:
        await consumer.stop()
    return records


def header(record: ConsumerRecord[bytes, bytes], name: str) -> str:
    return dict(record.headers)[name].decode()


def versions_by_stream(records: Iterable[ConsumerRecord[bytes, bytes]]) -> dict[str, list[int]]:
    """Each stream's versions in the order they arrived."""
    seen: dict[str, list[int]] = {}
    for record in records:
        seen.setdefault(header(record, "ce_subject"), []).append(int(header(record, "ce_streamversion")))
    return seen


def assert_complete_without_skips(records: list[Any], expected: dict[str, int]) -> None:
    """Every version of every stream arrived; duplicates only as replays, never a skip forward."""
    by_stream: dict[str, list[int]] = {}
    for record in records:
        by_stream.setdefault(header(record, "ce_subject"), []).append(int(header(record, "ce_streamversion")))
    assert {stream: sorted(set(v)) for stream, v in by_stream.items()} == {
        stream: list(range(count)) for stream, count in expected.items()
    }
    for stream, versions in by_stream.items():
        for before, after in itertools.pairwise(versions):
            assert after == before + 1 or after <= before, (stream, before, after)
