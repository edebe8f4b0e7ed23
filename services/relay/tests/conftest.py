"""Fixtures for the relay: a fresh event store database and a Kafka namespace per test."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator, Iterable
from typing import Any

import asyncpg
import msgspec
import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord
from eventstore import NewEvent, PostgresEventStore, connect, migrate
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
def store(pool: asyncpg.Pool[Any]) -> PostgresEventStore:
    return PostgresEventStore(pool, build_registry())


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


def stock_events(sku: str, count: int) -> list[NewEvent]:
    """A registration and `count - 1` receipts: a stream whose versions are easy to check."""
    events: list[msgspec.Struct] = [ProductRegistered(sku=sku, name=f"product {sku}")]
    events += [StockReceived(sku=sku, quantity=1, on_hand=n) for n in range(1, count)]
    return [NewEvent(data=event) for event in events]


async def collect(
    bootstrap_servers: str, topics: Iterable[str], *, expected: int, timeout: float = 60.0
) -> list[ConsumerRecord[bytes, bytes]]:
    """Read the topics from the beginning until `expected` records arrived or `timeout` passed."""
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
    try:
        async with asyncio.timeout(timeout):
            while len(records) < expected:
                batch = await consumer.getmany(timeout_ms=500)
                records += [record for partition in batch.values() for record in partition]
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
