"""What the relay reports on /status and /metrics."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

import msgspec
from eventstore import Lag, checkpoint_lag
from eventstore.types import Pool
from servicekit.metrics import RateWindow

from relay_service.topics import CHANNELS

__all__ = ["RelayReport", "RelayStatus", "published_lag"]

Role = Literal["starting", "standby", "leader"]


class RelayReport(msgspec.Struct, frozen=True, kw_only=True):
    """The relay's answer on `/status`; `lag_*` is null while PostgreSQL does not answer."""

    role: Role
    kafka_connected: bool
    published_total: int
    events_per_second: float
    last_position: int | None
    lag_events: int | None
    lag_seconds: float | None
    last_error: str | None
    last_error_at: datetime | None


class RelayStatus(msgspec.Struct, kw_only=True):
    """Mutable state shared by the publishing loop and the HTTP endpoints."""

    role: Role = "starting"
    kafka_connected: bool = False
    published_total: int = 0
    last_position: int | None = None
    last_recorded_at: datetime | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None
    _window: RateWindow = msgspec.field(default_factory=RateWindow)

    def published(self, count: int, position: int, recorded_at: datetime) -> None:
        self.published_total += count
        self.last_position = position
        self.last_recorded_at = recorded_at
        self.kafka_connected = True
        self._window.add(count)

    def failed(self, error: BaseException) -> None:
        self.kafka_connected = False
        self.last_error = f"{type(error).__name__}: {error}"
        self.last_error_at = datetime.now(UTC)

    def rate(self, seconds: float = 10.0) -> float:
        """Events published per second over the last `seconds`."""
        return self._window.rate(seconds)

    def report(self, lag_events: int | None, lag_seconds: float | None) -> RelayReport:
        """The current state with the lag measured by the caller."""
        return RelayReport(
            role=self.role,
            kafka_connected=self.kafka_connected,
            published_total=self.published_total,
            events_per_second=round(self.rate(), 1),
            last_position=self.last_position,
            lag_events=lag_events,
            lag_seconds=lag_seconds,
            last_error=self.last_error,
            last_error_at=self.last_error_at,
        )


async def published_lag(database: Pool, checkpoint: str) -> Lag:
    """How far the relay is behind: the events of the categories it publishes after its checkpoint.

    Other services keep streams in the same store (the saga's) that the relay never publishes and
    so never checkpoints past: counted, an idle stack would show them as lag for ever.
    """
    return await checkpoint_lag(database, checkpoint, categories=list(CHANNELS))
