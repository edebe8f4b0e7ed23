"""The relay as a service of the suite: its settings, logs, metrics, health and traces."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
from eventstore import EventRegistry, Metadata, NewEvent, PostgresEventStore
from fulfilment.registry import build_registry
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from relay_service.app import create_app
from relay_service.settings import RelaySettings
from testkit.harness import lifespan_of

from services.relay.tests.conftest import registered
from services.relay.tests.test_relay_process import RelayProcess

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


def test_a_bad_variable_stops_start_up_with_status_2_naming_it(relay_settings: RelaySettings) -> None:
    env = {
        **os.environ,
        "DATABASE_URL": relay_settings.database_url,
        "KAFKA_BOOTSTRAP_SERVERS": relay_settings.kafka_bootstrap_servers,
        "RELAY_PARTITIONS": "none",
    }
    result = subprocess.run(
        [sys.executable, "-m", "relay_service"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "RELAY_PARTITIONS" in result.stderr


async def test_the_process_logs_json_and_serves_prometheus_metrics(
    store: PostgresEventStore, relay_settings: RelaySettings, tmp_path: Path
) -> None:
    await store.append("stock-metrics", [NewEvent(data=registered("metrics", "Metrics"))])
    relay = RelayProcess(relay_settings, tmp_path / "relay.log").start()
    try:
        await relay.wait(lambda _, body: body["published_total"] == 1 and body["lag_events"] == 0)
        metrics = (await relay.get("/metrics")).text
    finally:
        await relay.stop()
    assert "# TYPE relay_published_events_total gauge" in metrics
    assert "relay_published_events_total 1.0" in metrics
    assert "relay_lag_events 0.0" in metrics
    assert "relay_leader 1.0" in metrics
    lines = [line for line in relay.log_lines() if line.strip()]
    assert lines, "the relay logged nothing"
    entries = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all({"ts", "level", "logger", "message"} <= entry.keys() for entry in entries)


async def test_readiness_names_each_check(store_url: str, relay_settings: RelaySettings) -> None:
    app = create_app(relay_settings, registry=build_registry())
    async with lifespan_of(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://relay") as client:
            async with asyncio.timeout(30):
                while True:
                    response = await client.get("/health/ready")
                    if response.status_code == 200:
                        break
                    await asyncio.sleep(0.1)
            assert response.json() == {
                "status": "ok",
                "checks": {"startup": "ok", "loops": "ok", "postgres": "ok", "publishing": "ok"},
            }
            live = await client.get("/health/live")
    assert live.json() == {"status": "ok", "checks": {"loops": "ok"}}


async def test_the_publishing_span_links_to_the_trace_that_caused_each_event(
    store: PostgresEventStore, relay_settings: RelaySettings
) -> None:
    exporter = InMemorySpanExporter()
    app = create_app(relay_settings, registry=build_registry(), span_exporter=exporter)
    traceparent = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
    metadata = Metadata(traceparent=traceparent, correlation_id="c-1")
    await store.append("stock-traced", [NewEvent(data=registered("traced", "T"), metadata=metadata)])
    async with lifespan_of(app):
        async with asyncio.timeout(30):
            while True:
                spans = [span for span in exporter.get_finished_spans() if span.name == "relay publish"]
                if spans:
                    break
                await asyncio.sleep(0.1)
    span = spans[0]
    assert [format(link.context.trace_id, "032x") for link in span.links] == [TRACE_ID]
    assert span.attributes is not None
    assert span.attributes["messaging.batch.message_count"] == 1


async def test_an_event_the_relay_cannot_publish_ends_its_loop_and_liveness_says_why(
    store: PostgresEventStore, relay_settings: RelaySettings
) -> None:
    # A relay whose registry lacks a stored event's type (an older build, say) cannot publish it or
    # anything after it: retrying would wait for ever behind it, so the loop ends, loudly.
    await store.append("stock-unknown", [NewEvent(data=registered("unknown", "Unknown"))])
    app = create_app(relay_settings, registry=EventRegistry())
    async with lifespan_of(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://relay") as client:
            async with asyncio.timeout(30):
                while (live := await client.get("/health/live")).status_code == 200:  # noqa: ASYNC110
                    await asyncio.sleep(0.1)
    assert live.status_code == 503
    assert "publishing failed" in live.json()["checks"]["loops"]
    assert "UnknownEventType" in live.json()["checks"]["loops"]
