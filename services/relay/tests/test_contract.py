"""What asyncapi.yaml promises, checked against a real relay, store and Kafka.

The document's examples are the relay's envelope of sample events
(`relay_service.examples`); here the same samples are appended to a real store
and published by a real relay, and what Kafka holds must equal the examples
except for what every event gets anew. The topics' retention is the configured
one, and each `ce_dataschema` resolves to the schema at the relay's HTTP port.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import msgspec
import yaml
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from eventstore import NewEvent, PostgresEventStore
from fulfilment.events import StockReceived
from fulfilment.registry import build_registry
from relay_service.app import create_app
from relay_service.asyncapi import VARYING_HEADERS
from relay_service.examples import sample_events
from relay_service.publisher import Relay
from relay_service.settings import RelaySettings
from relay_service.topics import contract_topics
from testkit.harness import lifespan_of

from services.relay.tests.conftest import append_unpriced_registration, collect

ROOT = Path(__file__).resolve().parents[3]


def document_examples() -> dict[str, dict[str, Any]]:
    document = yaml.safe_load((ROOT / "asyncapi.yaml").read_text())
    return {name: message["examples"][0] for name, message in document["components"]["messages"].items()}


async def test_what_the_relay_publishes_equals_the_documents_examples(
    store: PostgresEventStore, relay_settings: RelaySettings
) -> None:
    samples = sample_events()
    for stream, events in samples.items():
        await store.append(stream, events)
    expected = sum(len(events) for events in samples.values())
    task = asyncio.create_task(Relay(relay_settings, store).run())
    try:
        records = await collect(
            relay_settings.kafka_bootstrap_servers,
            contract_topics(relay_settings.relay_topic_prefix),
            expected=expected,
        )
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    examples = document_examples()
    published: dict[str, dict[str, Any]] = {}
    for record in records:
        headers = {name: value.decode() for name, value in record.headers}
        assert record.key is not None
        assert record.key.decode() == headers["ce_subject"]
        published[headers["ce_type"]] = {"headers": headers, "payload": msgspec.json.decode(record.value)}
    assert set(published) == set(examples)
    for name, example in examples.items():
        real = published[name]
        assert real["payload"] == example["payload"], name
        for header in VARYING_HEADERS:
            assert real["headers"].pop(header), (name, header)
            assert example["headers"].pop(header), (name, header)
        assert real["headers"] == example["headers"], name


async def test_topics_are_created_with_the_configured_retention(
    store: PostgresEventStore, relay_settings: RelaySettings
) -> None:
    three_days = 3 * 24 * 3600 * 1000
    settings = msgspec.structs.replace(relay_settings, relay_retention_ms=three_days)
    task = asyncio.create_task(Relay(settings, store).run())
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        topics = contract_topics(settings.relay_topic_prefix)
        async with asyncio.timeout(60):
            while True:
                if topics <= set(await admin.list_topics()):
                    break
                await asyncio.sleep(0.2)
        responses = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic, {"retention.ms": None}) for topic in topics]
        )
    finally:
        await admin.close()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    retention = {
        resource[3]: entry[1]
        for response in responses
        for resource in response.resources
        for entry in resource[4]
        if entry[0] == "retention.ms"
    }
    assert retention == dict.fromkeys(topics, str(three_days))


async def test_each_dataschema_uri_resolves_at_the_relay(
    store_url: str, relay_settings: RelaySettings
) -> None:
    app = create_app(relay_settings, registry=build_registry())
    examples = document_examples()
    async with lifespan_of(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8003") as client:
            for name, example in examples.items():
                uri = example["headers"]["ce_dataschema"]
                assert uri.startswith(relay_settings.relay_dataschema_base)
                response = await client.get(uri)
                assert response.status_code == 200, uri
                assert response.headers["content-type"].startswith("application/schema+json")
                committed = json.loads((ROOT / "schemas" / uri.rsplit("/", 1)[1]).read_text())
                assert response.json() == committed, name
            # Every schema file is served, the versions no message is sent at any more among them.
            for path in sorted((ROOT / "schemas").glob("*.json")):
                served = await client.get(f"/schemas/{path.name}")
                assert served.status_code == 200, path.name
                assert served.json() == json.loads(path.read_text()), path.name
            first = (await client.get("/schemas/ProductRegistered.v1.json")).json()
            missing = await client.get("/schemas/OrderPlaced.v99.json")
            traversal = await client.get("/schemas/..%2Fpyproject.toml")
    assert set(first["$defs"]["ProductRegistered"]["required"]) == {"type", "sku", "name"}
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    assert traversal.status_code == 404


async def test_a_replay_relay_republishes_the_whole_log_into_topics_of_its_own(
    store: PostgresEventStore, relay_settings: RelaySettings
) -> None:
    # The replay path the document gives consumers who need more than the topics keep.
    for stream, events in sample_events().items():
        await store.append(stream, events)
    expected = sum(len(events) for events in sample_events().values())
    live = asyncio.create_task(Relay(relay_settings, store).run())
    replay_settings = msgspec.structs.replace(
        relay_settings,
        relay_topic_prefix=f"replay-{relay_settings.relay_topic_prefix}",
        relay_checkpoint="replay",
        relay_lock_key=relay_settings.relay_lock_key + 1,
    )
    try:
        await collect(
            relay_settings.kafka_bootstrap_servers,
            contract_topics(relay_settings.relay_topic_prefix),
            expected=expected,
        )
        replay = asyncio.create_task(Relay(replay_settings, store).run())
        try:
            records = await collect(
                replay_settings.kafka_bootstrap_servers,
                contract_topics(replay_settings.relay_topic_prefix),
                expected=expected,
            )
        finally:
            replay.cancel()
            await asyncio.gather(replay, return_exceptions=True)
    finally:
        live.cancel()
        await asyncio.gather(live, return_exceptions=True)
    ids = {dict(record.headers)["ce_id"].decode() for record in records}
    assert ids == {str(event.event_id) for events in sample_events().values() for event in events}


async def test_a_registration_stored_at_version_1_is_published_upcast_to_version_2(
    store: PostgresEventStore, relay_settings: RelaySettings
) -> None:
    await append_unpriced_registration(store, "old-lamp", "Old lamp")
    await store.append(
        "stock-old-lamp", [NewEvent(data=StockReceived(sku="old-lamp", quantity=2, on_hand=2))]
    )
    task = asyncio.create_task(Relay(relay_settings, store).run())
    try:
        records = await collect(
            relay_settings.kafka_bootstrap_servers, [f"{relay_settings.relay_topic_prefix}stock"], expected=2
        )
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    (stored, _) = await store.read_all_stored()
    assert (stored.event_type, stored.schema_version) == ("ProductRegistered", 1)
    registration = next(r for r in records if dict(r.headers)["ce_type"] == b"ProductRegistered")
    headers = {name: value.decode() for name, value in registration.headers}
    assert headers["ce_schemaversion"] == "2"
    assert headers["ce_dataschema"] == f"{relay_settings.relay_dataschema_base}ProductRegistered.v2.json"
    payload = msgspec.json.decode(registration.value)
    assert payload == {
        "type": "ProductRegistered",
        "sku": "old-lamp",
        "name": "Old lamp",
        "unit_price": None,
        "currency": None,
    }
    schema = json.loads((ROOT / "schemas" / "ProductRegistered.v2.json").read_text())
    jsonschema.validate(payload, schema)
