"""Prometheus metrics: one registry per app, exposed on `GET /metrics` by prometheus-client.

Each app gets its own `CollectorRegistry` rather than the process-wide default,
so tests can build several apps in one process and each scrape shows exactly one
app's series. Values that are cheaper to read at scrape time than to keep
current (a lag computed by a query) are refreshed by an async `refresh` callback
just before the registry is rendered.

With several uvicorn workers each process has its own registry; a scrape sees
the worker that answered it. Run one worker per container (and scale containers)
where exact per-service totals matter.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from litestar import Response, get
from litestar.handlers import HTTPRouteHandler
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

__all__ = ["HttpMetrics", "metrics_route", "new_registry"]

type Refresh = Callable[[], Awaitable[None]]


def new_registry() -> CollectorRegistry:
    """A registry of the app's own (no process-wide collectors such as the default GC ones)."""
    return CollectorRegistry(auto_describe=True)


class HttpMetrics:
    """Request counts and durations per route template, method and status."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "http_requests",
            "HTTP requests answered",
            ["method", "route", "status"],
            registry=registry,
        )
        self.duration = Histogram(
            "http_request_duration_seconds",
            "Time to answer an HTTP request",
            ["method", "route"],
            registry=registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )

        # The series of each (method, route, status), found once: `labels()` takes a lock and
        # builds its key on every call, a noticeable share of a fast request's cost.
        self._series: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one answered request and its duration."""
        key = (method, route, status)
        series = self._series.get(key)
        if series is None:
            series = (self.requests.labels(method, route, str(status)), self.duration.labels(method, route))
            self._series[key] = series
        series[0].inc()
        series[1].observe(seconds)


def metrics_route(registry: CollectorRegistry, refresh: Refresh | None = None) -> HTTPRouteHandler:
    """`GET /metrics` in the Prometheus text format."""

    @get(
        "/metrics",
        operation_id="metrics",
        summary="Metrics in the Prometheus text format",
        security=[],
        tags=["health"],
        include_in_schema=False,
    )
    async def metrics() -> Response[bytes]:
        if refresh is not None:
            await refresh()
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return metrics
