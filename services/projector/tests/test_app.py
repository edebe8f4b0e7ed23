"""The projector as a service of the suite: health checks, metrics, status, and each event's span."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import msgspec
from eventstore import Metadata, NewEvent, PostgresEventStore
from fulfilment.events import OrderPlaced
from fulfilment.registry import build_registry
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from projector_service.app import create_app
from projector_service.bootstrap import Projector
from projector_service.settings import ProjectorSettings
from readmodels.keyspace import wait_for_position
from relay_service.publisher import Relay
from testkit.harness import free_port, lifespan_of

from services.projector.tests.conftest import line
from services.projector.tests.test_consuming import relay

_ = relay
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


async def test_health_metrics_status_and_a_span_per_event_in_the_trace_that_caused_it(
    settings: ProjectorSettings, projector: Projector, store: PostgresEventStore, relay: Relay
) -> None:
    exporter = InMemorySpanExporter()
    app = create_app(settings, registry=build_registry(), span_exporter=exporter)
    order_id = uuid.uuid4()
    placed = OrderPlaced(
        order_id=order_id, customer_id="ann", lines=(line("mug"),), currency="EUR", total=250
    )
    metadata = Metadata(traceparent=f"00-{TRACE_ID}-00f067aa0ba902b7-01")
    result = await store.append(f"order-{order_id}", [NewEvent(data=placed, metadata=metadata)])
    async with lifespan_of(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://projector") as client:
            async with asyncio.timeout(60):
                while (ready := await client.get("/health/ready")).status_code != 200:  # noqa: ASYNC110
                    await asyncio.sleep(0.1)
            checks = {
                "startup": "ok",
                "loops": "ok",
                "redis": "ok",
                "search": "ok",
                "postgres": "ok",
                "consuming": "ok",
                "kafka": "ok",
            }
            assert ready.json() == {"status": "ok", "checks": checks}
            for name in ("redis", "search"):
                assert await wait_for_position(
                    projector.redis, projector.keyspace, name, result.positions[0], timeout=60
                )
            status = (await client.get("/status")).json()
            metrics = (await client.get("/metrics")).text
            live = await client.get("/health/live")
    assert live.json() == {"status": "ok", "checks": {"loops": "ok"}}
    assert status["projections"]["redis"]["applied_total"] == 1
    assert status["projections"]["search"]["lag_events"] == 0
    assert 'projector_events_total{projection="redis"} 1.0' in metrics
    assert 'projector_lag_events{projection="search"} 0.0' in metrics
    assert "projector_rebuild_progress" in metrics
    spans = [span for span in exporter.get_finished_spans() if span.name == "project OrderPlaced"]
    assert {format(span.context.trace_id, "032x") for span in spans} == {TRACE_ID}
    assert sorted(span.attributes["projection"] for span in spans if span.attributes) == ["redis", "search"]


async def test_started_with_redis_down_it_serves_and_readiness_names_redis_and_its_host(
    settings: ProjectorSettings,
) -> None:
    port = free_port()
    app = create_app(msgspec.structs.replace(settings, redis_url=f"redis://:secret@127.0.0.1:{port}/0"))
    async with lifespan_of(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://projector") as client:
            ready = await client.get("/health/ready")
            live = await client.get("/health/live")
    assert (ready.status_code, live.status_code) == (503, 200)
    assert ready.json()["checks"]["startup"].startswith(f"waiting for redis at 127.0.0.1:{port}: ")
    assert "secret" not in ready.text
