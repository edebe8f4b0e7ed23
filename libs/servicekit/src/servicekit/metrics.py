"""Prometheus metrics: one registry per app, exposed on `GET /metrics` by prometheus-client.

Each app has its own `CollectorRegistry`, so several apps in one process (tests) each
show only their own series. Values cheaper to read at scrape time (a lag from a query)
are refreshed by an async `refresh` callback before rendering. Each uvicorn worker has
its own registry: run one worker per container where exact totals matter.
"""

from __future__ import annotations

import bisect
import itertools
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator

from litestar import Response, get
from litestar.handlers import HTTPRouteHandler
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["HttpMetrics", "RateWindow", "metrics_route", "new_registry"]

type Refresh = Callable[[], Awaitable[None]]


class RateWindow:
    """A running total's recent samples, to tell its rate per second (`/status`'s events per second)."""

    def __init__(self, samples: int = 120) -> None:
        self.total = 0
        self._samples: deque[tuple[float, int]] = deque(maxlen=samples)

    def add(self, count: int) -> None:
        self.total += count
        self._samples.append((time.monotonic(), self.total))

    def rate(self, seconds: float = 10.0) -> float:
        """How much the total grew per second over the last `seconds` (at least one second)."""
        now = time.monotonic()
        recent = next(((t, n) for t, n in self._samples if now - t <= seconds), None)
        if recent is None:
            return 0.0
        return (self.total - recent[1]) / max(now - recent[0], 1.0)


def new_registry() -> CollectorRegistry:
    """A registry of the app's own (no process-wide collectors such as the default GC ones)."""
    return CollectorRegistry(auto_describe=True)


_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, math.inf)
# Each bucket's `le` label as prometheus-client writes it ("1.0", "+Inf").
_LE = tuple("+Inf" if math.isinf(bound) else repr(bound) for bound in _BUCKETS)


class HttpMetrics(Collector):
    """Request counts (`http_requests_total`) per route template, method and status, and durations
    (`http_request_duration_seconds`, a histogram) per route template and method.

    Kept as plain numbers and turned into prometheus-client's metric families when scraped,
    rather than as its `Counter` and `Histogram`: those take a lock for each increment (the
    histogram's bucket too), which cost about 7 µs per request, as much as a fast route's own
    work. The app serves requests on one event loop thread, the only writer, so nothing here
    needs a lock; a scrape reads whole numbers that are at worst a request behind.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self._answered: dict[tuple[str, str, int], int] = {}
        # Per (method, route): the count of each bucket (not yet cumulative), then the sum.
        self._durations: dict[tuple[str, str], list[float]] = {}
        registry.register(self)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one answered request and its duration."""
        key = (method, route, status)
        self._answered[key] = self._answered.get(key, 0) + 1
        durations = self._durations.get((method, route))
        if durations is None:
            durations = self._durations[(method, route)] = [0.0] * (len(_BUCKETS) + 1)
        # The first bucket whose upper bound is at least `seconds`, as prometheus-client counts.
        durations[bisect.bisect_left(_BUCKETS, seconds)] += 1
        durations[-1] += seconds

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "http_requests", "HTTP requests answered", labels=["method", "route", "status"]
        )
        for (method, route, status), count in list(self._answered.items()):
            requests.add_metric([method, route, str(status)], count)
        yield requests
        duration = HistogramMetricFamily(
            "http_request_duration_seconds", "Time to answer an HTTP request", labels=["method", "route"]
        )
        for (method, route), durations in list(self._durations.items()):
            cumulative = list(itertools.accumulate(durations[:-1]))
            buckets = list(zip(_LE, cumulative, strict=True))
            duration.add_metric([method, route], buckets, sum_value=durations[-1])
        yield duration


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
