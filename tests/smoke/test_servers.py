"""Each server the suite needs is real and answers a round trip."""

from __future__ import annotations

import uuid

import asyncpg
import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaTimeoutError, UnknownTopicOrPartitionError
from readmodels.search import connect_search


async def test_postgres_round_trip(database_url: str) -> None:
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute("CREATE TEMP TABLE round_trip (id uuid PRIMARY KEY, note text NOT NULL)")
        key = uuid.uuid4()
        await connection.execute("INSERT INTO round_trip VALUES ($1, $2)", key, "hello")
        assert await connection.fetchval("SELECT note FROM round_trip WHERE id = $1", key) == "hello"
        assert int(await connection.fetchval("SHOW server_version_num")) >= 130000  # xid8 needs 13+
    finally:
        await connection.close()


async def test_redis_round_trip(redis_url: str) -> None:
    client = aioredis.from_url(redis_url)
    key = f"smoke:{uuid.uuid4()}"
    try:
        await client.set(key, b"hello", ex=60)
        assert await client.get(key) == b"hello"
    finally:
        await client.delete(key)
        await client.aclose()


async def test_kafka_produce_consume_round_trip(kafka_bootstrap_servers: str) -> None:
    topic = f"smoke-{uuid.uuid4().hex[:12]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap_servers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
        producer = AIOKafkaProducer(
            bootstrap_servers=kafka_bootstrap_servers, acks="all", enable_idempotence=True
        )
        await producer.start()
        try:
            await producer.send_and_wait(topic, b"hello", key=b"order-1")
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=kafka_bootstrap_servers, auto_offset_reset="earliest", group_id=None
        )
        await consumer.start()
        try:
            batch = await consumer.getmany(timeout_ms=15_000)
        finally:
            await consumer.stop()
        records = [record for records in batch.values() for record in records]
        assert [(r.key, r.value) for r in records] == [(b"order-1", b"hello")]
    finally:
        await admin.delete_topics([topic])
        await admin.close()


async def test_kafka_refuses_to_auto_create_topics(kafka_bootstrap_servers: str) -> None:
    # The suite creates its topics itself; a typo must not silently create a new one.
    topic = f"never-created-{uuid.uuid4().hex[:8]}"
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap_servers, request_timeout_ms=3000)
    await producer.start()
    try:
        with pytest.raises((KafkaTimeoutError, UnknownTopicOrPartitionError)):
            await producer.send_and_wait(topic, b"lost")
    finally:
        await producer.stop()
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap_servers)
    await admin.start()
    try:
        assert topic not in await admin.list_topics()
    finally:
        await admin.close()


async def test_search_index_and_search_round_trip(search_engine_url: str) -> None:
    # Once on OpenSearch, once on Elasticsearch: the local stack runs both.
    client = await connect_search(search_engine_url)
    index = f"smoke-{uuid.uuid4().hex[:12]}"
    try:
        assert await client.create_index(index, mappings={"properties": {"sku": {"type": "keyword"}}})
        assert not await client.create_index(index)  # a second create reports that it existed
        await client.put(index, "1", {"sku": "SKU-1", "name": "blue mug"}, refresh=True)
        hits = await client.search(index, {"term": {"sku": "SKU-1"}})
        assert hits == [{"sku": "SKU-1", "name": "blue mug"}]
    finally:
        await client.delete_index(index)
        await client.close()


async def test_the_default_search_engine_answers(search_url: str) -> None:
    # SEARCH_URL, what the services use, names one of the two engines.
    client = await connect_search(search_url)
    try:
        assert client.engine in {"opensearch", "elasticsearch"}
        assert await client.health() in {"green", "yellow"}
    finally:
        await client.close()


async def test_prometheus_loads_the_suites_alerts_and_scrapes_the_six_services_and_the_exporters() -> None:
    import httpx
    from testkit.pytest_plugin import resolve_url

    url = resolve_url("PROMETHEUS_URL")
    async with httpx.AsyncClient(base_url=url, timeout=5) as client:
        rules = (await client.get("/api/v1/rules")).json()["data"]["groups"]
        targets = (await client.get("/api/v1/targets")).json()["data"]["activeTargets"]
    alerts = {rule["name"] for group in rules for rule in group["rules"] if rule["type"] == "alerting"}
    assert {"ServiceDown", "ProjectionLagging", "RelayNotPublishing"} <= alerts, sorted(alerts)
    assert {target["labels"]["job"] for target in targets} == {
        "command",
        "query",
        "relay",
        "projector",
        "saga",
        "sandbox",
        "postgres",
        "redis",
    }
