"""The store's spans: one per append and per stream read, in the caller's trace, none without a tracer."""

from __future__ import annotations

from typing import Any

import asyncpg
import msgspec
import pytest
from eventstore import EventRegistry, PostgresEventStore
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


class Deposited(msgspec.Struct, frozen=True):
    amount: int


@pytest.fixture
def registry() -> EventRegistry:
    registry = EventRegistry()
    registry.register(Deposited, name="deposited")
    return registry


async def test_an_append_and_a_read_are_one_span_each_under_the_callers_span(
    pool: asyncpg.Pool[Any], registry: EventRegistry
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    store = PostgresEventStore(pool, registry, tracer=tracer, notify=False)

    with tracer.start_as_current_span("request") as request:
        await store.append("account-1", [Deposited(1), Deposited(2)])
        await store.read_stream("account-1")
        await store.read_streams({"account-1": 0, "account-2": 0})

    spans = {span.name: span for span in exporter.get_finished_spans() if span.name != "request"}
    assert sorted(span.name for span in exporter.get_finished_spans()) == [
        "eventstore append",
        "eventstore read",
        "eventstore read",
        "request",
    ]
    append = spans["eventstore append"]
    assert append.parent is not None
    assert append.parent.span_id == request.get_span_context().span_id
    assert dict(append.attributes or {}) == {
        "db.system.name": "postgresql",
        "eventstore.stream": "account-1",
        "eventstore.events": 2,
    }


async def test_a_store_without_a_tracer_makes_no_spans(
    pool: asyncpg.Pool[Any], registry: EventRegistry
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with provider.get_tracer("test").start_as_current_span("request"):
        await PostgresEventStore(pool, registry, notify=False).append("account-1", [Deposited(1)])
    assert [span.name for span in exporter.get_finished_spans()] == ["request"]
