"""End to end: an HTTP command becomes a CloudEvent on Kafka, trace context and all.

The command service and the relay run as real processes on real sockets, against
real PostgreSQL, Redis and Kafka. The checks are the suite's invariants seen from
outside: the response's position and version are the message's, and the
request's `traceparent` trace id and correlation id travel into the Kafka headers
(invariant 8).
"""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaConsumer
from eventstore import migrate
from testkit.harness import running_service, token_factory

from services.command.tests.support import command_headers

pytestmark = pytest.mark.slow

SECRET = "e2e-secret-that-is-long-enough-for-hs256!"
ISSUER, AUDIENCE = "https://issuer.e2e", "fulfilment-e2e"


@pytest.fixture
async def processes(
    fresh_database_url: str, redis_url: str, kafka_bootstrap_servers: str, tmp_path: Path
) -> AsyncIterator[dict[str, str]]:
    """Start both services; yield their URLs and the relay's topic prefix."""
    await migrate(fresh_database_url)
    prefix = f"e2e{uuid.uuid4().hex[:8]}."
    command_env = {
        "DATABASE_URL": fresh_database_url,
        "REDIS_URL": redis_url,
        "JWT_SECRET": SECRET,
        "JWT_ISSUER": ISSUER,
        "JWT_AUDIENCE": AUDIENCE,
    }
    relay_env = {
        "DATABASE_URL": fresh_database_url, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap_servers,
        "RELAY_TOPIC_PREFIX": prefix, "RELAY_LOCK_KEY": str(random.randrange(1, 2**62)),
    }  # fmt: skip
    async with (
        running_service(
            "command_service", command_env, log=tmp_path / "command.log", port_variable="COMMAND_PORT"
        ) as command,
        running_service(
            "relay_service", relay_env, log=tmp_path / "relay.log", port_variable="RELAY_PORT"
        ) as relay,
    ):
        yield {
            "command": command.url,
            "relay": relay.url,
            "prefix": prefix,
            "bootstrap": kafka_bootstrap_servers,
        }


async def test_a_command_arrives_on_kafka_with_its_trace_and_correlation(processes: dict[str, str]) -> None:
    trace_id = uuid.uuid4().hex
    traceparent = f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01"
    correlation = f"e2e-{uuid.uuid4()}"
    token = token_factory(secret=SECRET, issuer=ISSUER, audience=AUDIENCE)("staff-e2e", roles=("staff",))
    async with httpx.AsyncClient(base_url=processes["command"], timeout=10) as client:
        response = await client.post(
            "/products",
            json={"sku": "E2E-Mug", "name": "End-to-end mug", "unit_price": 1250, "currency": "EUR"},
            headers=command_headers(token, traceparent=traceparent, **{"X-Correlation-Id": correlation}),
        )
    assert response.status_code == 201, response.text
    accepted = response.json()
    assert accepted["stream_id"] == "stock-e2e-mug"

    consumer = AIOKafkaConsumer(
        f"{processes['prefix']}stock",
        bootstrap_servers=processes["bootstrap"],
        group_id=None,
        auto_offset_reset="earliest",
        metadata_max_age_ms=500,
    )
    await consumer.start()
    try:
        async with asyncio.timeout(30):
            records = []
            while not records:
                batch = await consumer.getmany(timeout_ms=500)
                records = [record for partition in batch.values() for record in partition]
    finally:
        await consumer.stop()

    assert len(records) == 1
    record = records[0]
    headers = {name: value.decode() for name, value in record.headers}
    assert record.key == b"stock-e2e-mug"
    assert headers["ce_type"] == "ProductRegistered"
    assert headers["ce_schemaversion"] == "2"
    payload = json.loads(record.value)
    assert (payload["sku"], payload["unit_price"], payload["currency"]) == ("e2e-mug", 1250, "EUR")
    assert headers["ce_subject"] == accepted["stream_id"]
    assert int(headers["ce_streamversion"]) == accepted["version"]
    assert int(headers["ce_position"]) == accepted["position"]
    assert headers["ce_traceparent"].split("-")[1] == trace_id  # the request's trace, the service's span
    assert headers["ce_correlationid"] == correlation
    assert headers["ce_actor"].endswith("staff-e2e")
