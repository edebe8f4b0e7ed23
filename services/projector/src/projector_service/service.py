"""The running projector: consumers, position trackers, the repair of lost models, and what health reports."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime
from typing import Any

from faststream.kafka import KafkaBroker
from opentelemetry.trace import Tracer
from prometheus_client import CollectorRegistry
from servicekit.metrics import new_registry

from projector_service.bootstrap import Projector
from projector_service.consumer import build_broker
from projector_service.deadletters import DeadLetterWriter, ensure_topics
from projector_service.repair import Repairer
from projector_service.runner import TRANSIENT, BatchRunner, retry_transient
from projector_service.status import ProjectionStatus, ProjectorMetrics

__all__ = ["ProjectorService"]

log = logging.getLogger(__name__)

LAG_LIMIT = 100_000  # counting further than this costs more than it tells

LAG = """
SELECT count(*), min(recorded_at) FROM (
    SELECT recorded_at FROM eventstore.events
     WHERE (transaction_id, position) > ($1::text::xid8, $2::bigint) AND category = ANY($3::text[])
     ORDER BY transaction_id, position
     LIMIT $4) pending
"""


class ProjectorService:
    """Starts and stops the consumers and trackers of every projection of one process."""

    def __init__(
        self,
        projector: Projector,
        *,
        registry: CollectorRegistry | None = None,
        tracer: Tracer | None = None,
        repair_interval: float = 1.0,
        repair_grace: float = 5.0,
    ) -> None:
        self.projector = projector
        self.repairer = Repairer(projector, interval=repair_interval, grace=repair_grace)
        settings = projector.settings
        self.metrics = ProjectorMetrics(registry or new_registry())
        self.statuses = {name: ProjectionStatus(name=name) for name in projector.names}
        self.broker: KafkaBroker
        dead_letters = DeadLetterWriter(self._publish_dead_letter)
        self.runners = [
            BatchRunner(
                projection,
                projector.trackers[name],
                dead_letters,
                projector.registry,
                self.statuses[name],
                self.metrics,
                projector.pool,
                max_attempts=settings.projector_max_attempts,
                max_backoff=settings.projector_max_backoff,
                tracer=tracer,
            )
            for name, projection in projector.projections.items()
        ]
        self.broker = build_broker(settings, self.runners)
        self._tasks: list[asyncio.Task[None]] = []
        self.started = False

    async def _publish_dead_letter(self, value: bytes, key: bytes | None, headers: dict[str, str]) -> None:
        await self.broker.publish(
            value, topic=self.projector.settings.projector_dead_letter_topic, key=key, headers=headers
        )

    async def start(self) -> None:
        """Prepare the live generations, then consume; waits for stores that are still down."""
        settings = self.projector.settings
        for name, projection in self.projector.projections.items():
            await retry_transient(
                projection.prepare, self.statuses[name], max_backoff=settings.projector_max_backoff
            )
        topics = {settings.projector_dead_letter_topic} | {
            f"{settings.projector_topic_prefix}{category}"
            for projection in self.projector.projections.values()
            for category in projection.categories
        }
        await ensure_topics(
            settings.kafka_bootstrap_servers, sorted(topics), partitions=settings.projector_partitions
        )
        await self.broker.start()
        for name, tracker in self.projector.trackers.items():
            self._tasks.append(asyncio.create_task(tracker.run(), name=f"track-{name}"))
        self._tasks.append(asyncio.create_task(self.repairer.run(), name="repair"))
        self.started = True
        for status in self.statuses.values():
            status.consuming = True

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.broker.stop()

    @property
    def tracker_tasks(self) -> list[asyncio.Task[None]]:
        """The tasks `start` started: the position trackers and the repair of lost models."""
        return list(self._tasks)

    def dead(self) -> str | None:
        """Why the process is useless (a tracker or the repair ended), or None while it lives."""
        for task in self._tasks:
            if task.done():
                error = task.exception() if not task.cancelled() else None
                return f"{task.get_name()} ended: {error!r}"
        return None

    async def checks(self) -> dict[str, str | None]:
        """Each store by name: None when it answers and its read model is whole, else why not.

        `redis` and `search` also name their projection's read model while it is being
        repaired (`repair.py`), so readiness says so without a check of its own.
        """
        results: dict[str, str | None] = {}

        async def check(name: str, probe: Any) -> None:
            try:
                async with asyncio.timeout(2):
                    await probe
                results[name] = None
            except Exception as error:  # any failure is the answer: the store is not usable
                results[name] = f"{type(error).__name__}: {error}"

        await asyncio.gather(
            check("redis", self.projector.redis.ping()),
            check("search", self.projector.search.health()),
            check("postgres", self.projector.pool.fetchval("SELECT 1")),
        )
        for name, why in self.repairing().items():
            rebuilding = f"the {name} read model is being rebuilt: {why}"
            results[name] = f"{results[name]}; {rebuilding}" if results.get(name) else rebuilding
        return results

    def repairing(self) -> dict[str, str]:
        """The projections whose read model lost its data and is being rebuilt, with why."""
        return dict(self.repairer.repairing)

    async def models_whole(self) -> str | None:
        """A readiness check of its own: None while every read model is whole, else which are not."""
        repairing = self.repairing()
        return "; ".join(f"{name} being rebuilt: {why}" for name, why in repairing.items()) or None

    async def report(self) -> dict[str, Any]:
        """The state of every projection, for /health and /metrics."""
        projections: dict[str, Any] = {}
        for name, status in self.statuses.items():
            tracker = self.projector.trackers[name]
            lag_events: int | None = None
            lag_seconds: float | None = None
            last = tracker.last
            if last is not None:
                with contextlib.suppress(*TRANSIENT, Exception):
                    row = await self.projector.pool.fetchrow(
                        LAG,
                        str(last.prefix.transaction_id),
                        last.prefix.position,
                        list(self.projector.projections[name].categories),
                        LAG_LIMIT,
                    )
                    count, oldest = (0, None) if row is None else (row[0], row[1])
                    lag_events = int(count)
                    lag_seconds = (datetime.now(UTC) - oldest).total_seconds() if oldest else 0.0
            rebuild = await _rebuild_progress(self.projector, name)
            projections[name] = {
                "consuming": status.consuming,
                "repair": self.repairer.repairing.get(name),
                "repairs": self.repairer.repaired.get(name, 0),
                "unavailable": status.unavailable,
                "applied_total": status.applied_total,
                "events_per_second": round(status.rate(), 1),
                "dead_letters": status.dead_letters,
                "position": last.position if last else None,
                "lag_events": lag_events,
                "lag_seconds": lag_seconds,
                "rebuild": rebuild,
                "last_error": status.last_error,
            }
            labels = self.metrics
            labels.events_per_second.labels(name).set(status.rate())
            if last is not None:
                labels.position.labels(name).set(last.position)
            if lag_events is not None:
                labels.lag_events.labels(name).set(lag_events)
                labels.lag_seconds.labels(name).set(lag_seconds or 0.0)
            labels.rebuild_progress.labels(name).set(float(rebuild.get("progress", 0.0)) if rebuild else 0.0)
        return {"projections": projections}


async def _rebuild_progress(projector: Projector, name: str) -> dict[str, Any]:
    with contextlib.suppress(*TRANSIENT, Exception):
        fields = await projector.redis.hgetall(projector.keyspace.rebuild(name))
        return {_text(k): _text(v) for k, v in fields.items()}
    return {}


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
