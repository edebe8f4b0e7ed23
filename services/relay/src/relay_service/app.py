"""The relay's process: the publishing loop plus /health and /metrics over HTTP."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from eventstore import EventRegistry, EventStoreError, PostgresEventStore, checkpoint_lag, connect, migrate
from litestar import Litestar, MediaType, Response, get

from relay_service.publisher import Relay
from relay_service.settings import RelaySettings
from relay_service.status import RelayStatus

__all__ = ["create_app"]


def create_app(settings: RelaySettings, registry: EventRegistry) -> Litestar:
    """Wire the relay: one pool, the store, the publishing task, the HTTP endpoints."""
    status = RelayStatus()
    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        await migrate(settings.database_url)
        pool = await connect(settings.database_url, min_size=1, max_size=4)
        state["pool"] = pool
        store = PostgresEventStore(pool, registry)
        task = asyncio.create_task(Relay(settings, store, status).run(), name="relay")
        state["task"] = task
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await store.close()
            await pool.close()

    @get("/health/live", operation_id="live", sync_to_thread=False)
    def live() -> Response[dict[str, str]]:
        # The publishing loop survives every failure it knows; if it ended anyway the
        # process is useless, and the supervisor should restart it.
        task: asyncio.Task[None] | None = state.get("task")
        if task is not None and task.done():
            error = task.exception() if not task.cancelled() else None
            return Response({"status": "dead", "error": repr(error)}, status_code=503)
        return Response({"status": "ok"})

    @get("/health/ready", operation_id="ready")
    async def ready() -> Response[dict[str, Any]]:
        # A standby is healthy: it is ready to take over. A leader is healthy
        # while Kafka accepts its messages.
        healthy = status.role == "standby" or (status.role == "leader" and status.kafka_connected)
        return Response(await _report(), status_code=200 if healthy else 503)

    @get("/health", operation_id="health")
    async def health() -> dict[str, Any]:
        return await _report()

    @get("/metrics", operation_id="metrics", media_type=MediaType.TEXT)
    async def metrics() -> str:
        report = await _report()
        lines = [
            "# TYPE relay_published_events_total counter",
            f"relay_published_events_total {report['published_total']}",
            "# TYPE relay_events_per_second gauge",
            f"relay_events_per_second {report['events_per_second']}",
            "# TYPE relay_lag_events gauge",
            f"relay_lag_events {report['lag_events']}",
            "# TYPE relay_lag_seconds gauge",
            f"relay_lag_seconds {report['lag_seconds']}",
            "# TYPE relay_leader gauge",
            f"relay_leader {int(report['role'] == 'leader')}",
            "# TYPE relay_kafka_connected gauge",
            f"relay_kafka_connected {int(report['kafka_connected'])}",
        ]
        return "\n".join(lines) + "\n"

    async def _report() -> dict[str, Any]:
        lag_events: int | None = None
        lag_seconds: float | None = None
        pool: asyncpg.Pool | None = state.get("pool")
        if pool is not None:
            with contextlib.suppress(EventStoreError):
                lag = await checkpoint_lag(pool, settings.relay_checkpoint)
                lag_events, lag_seconds = lag.events, lag.seconds
        return {
            "role": status.role,
            "kafka_connected": status.kafka_connected,
            "published_total": status.published_total,
            "events_per_second": round(status.rate(), 1),
            "last_position": status.last_position,
            "lag_events": lag_events,
            "lag_seconds": lag_seconds,
            "last_error": status.last_error,
            "last_error_at": status.last_error_at.isoformat() if status.last_error_at else None,
        }

    return Litestar(route_handlers=[live, ready, health, metrics], lifespan=[lifespan])
