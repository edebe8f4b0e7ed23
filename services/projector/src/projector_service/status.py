"""What each projection reports on /health and /metrics, kept by the consuming loop."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
from prometheus_client import CollectorRegistry, Counter, Gauge
from servicekit.metrics import RateWindow

__all__ = ["ProjectionStatus", "ProjectorMetrics"]


class ProjectorMetrics:
    """The projector's Prometheus metrics, in the app's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        labels = ["projection"]
        self.events = Counter(
            "projector_events", "Events applied (duplicates included)", labels, registry=self.registry
        )
        self.dead_letters = Counter(
            "projector_dead_letters",
            "Records sent to the dead-letter topic, by projection and reason class",
            ["projection", "reason"],
            registry=self.registry,
        )
        self.events_per_second = Gauge(
            "projector_events_per_second",
            "Events applied per second, last 10 s",
            labels,
            registry=self.registry,
        )
        self.lag_events = Gauge(
            "projector_lag_events", "Events in the store not yet applied", labels, registry=self.registry
        )
        self.lag_seconds = Gauge(
            "projector_lag_seconds", "Age of the oldest event not yet applied", labels, registry=self.registry
        )
        self.position = Gauge(
            "projector_position",
            "Every event at or below this position is applied",
            labels,
            registry=self.registry,
        )
        self.rebuild_progress = Gauge(
            "projector_rebuild_progress", "Fraction of the log a running rebuild has read", labels,
            registry=self.registry,
        )  # fmt: skip
        self.store_up = Gauge(
            "projector_store_up",
            "1 while the projection's stores accept writes",
            labels,
            registry=self.registry,
        )


class ProjectionStatus(msgspec.Struct, kw_only=True):
    """Mutable state of one projection, shared by its consumer and the HTTP endpoints."""

    name: str
    applied_total: int = 0
    dead_letters: int = 0
    unavailable: str | None = None  # why writes are paused, while they are
    last_error: str | None = None
    last_error_at: datetime | None = None
    consuming: bool = False
    _window: RateWindow = msgspec.field(default_factory=RateWindow)

    def applied(self, count: int) -> None:
        self.applied_total += count
        self.unavailable = None
        self._window.add(count)

    def paused(self, error: BaseException) -> None:
        self.unavailable = f"{type(error).__name__}: {error}"
        self.failed(error)

    def failed(self, error: BaseException) -> None:
        self.last_error = f"{type(error).__name__}: {error}"
        self.last_error_at = datetime.now(UTC)

    def rate(self, seconds: float = 10.0) -> float:
        """Events applied per second over the last `seconds`."""
        return self._window.rate(seconds)
