"""The saga's gauges of sagas needing a look and of late timers, refreshed at each scrape.

They are read from PostgreSQL when Prometheus scrapes `/metrics` (the kit's `refresh_metrics`
hook), not kept up to date by the code paths that change them: a parked saga or an overdue
timer is a state of the database, and several instances share it. Every instance reports the
same numbers; the alert rules take `max` over instances.
"""

from __future__ import annotations

import asyncio
import logging

from eventstore import TRANSIENT, EventStoreError
from prometheus_client import CollectorRegistry, Gauge

from saga_service.orchestrator import Orchestrator

__all__ = ["COUNT_LIMIT", "SagaGauges"]

log = logging.getLogger(__name__)

# The counts are bounded so a scrape stays cheap however many sagas pile up: past this many, the
# alert has long fired and the admin list (`GET /sagas?status=...`) tells the rest.
COUNT_LIMIT = 1000
# A scrape must answer even while PostgreSQL is slow: the gauges keep their last value then.
REFRESH_TIMEOUT = 2.0
# What a refresh may meet while PostgreSQL is slow or away.
NOT_NOW: tuple[type[BaseException], ...] = (TimeoutError, EventStoreError, *TRANSIENT)


class SagaGauges:
    """`saga_sagas{status}` and `saga_timer_overdue_seconds`, read through the orchestrator."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.orchestrator: Orchestrator | None = None  # set once start-up built it
        self.sagas = Gauge(
            "saga_sagas",
            f"Sagas that need a look, by status: parked, or stuck (counted up to {COUNT_LIMIT})",
            ["status"],
            registry=registry,
        )
        self.overdue = Gauge(
            "saga_timer_overdue_seconds",
            "Seconds since the oldest pending saga timer (not fired, not cancelled) fell due; 0 if none",
            registry=registry,
        )
        for status in ("parked", "stuck"):
            self.sagas.labels(status=status).set(0)

    async def refresh(self) -> None:
        """Read the counts and the oldest due time; before start-up or on a database error, keep the last."""
        orchestrator = self.orchestrator
        if orchestrator is None:
            return
        try:
            async with asyncio.timeout(REFRESH_TIMEOUT):
                parked = await orchestrator.count("parked", limit=COUNT_LIMIT)
                stuck = await orchestrator.count("stuck", limit=COUNT_LIMIT)
                overdue = await orchestrator.timer_overdue_seconds()
        except NOT_NOW as error:
            # The readiness check reports PostgreSQL; the scrape still answers with the last values.
            log.warning("saga gauges not refreshed: %s", error)
            return
        self.sagas.labels(status="parked").set(parked)
        self.sagas.labels(status="stuck").set(stuck)
        self.overdue.set(overdue)
