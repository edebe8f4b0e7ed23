"""The relay's Prometheus series, set from its report at each scrape."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge

from relay_service.status import RelayReport

__all__ = ["RelayMetrics"]


class RelayMetrics:
    """Gauges mirroring `RelayReport`; the published total only grows (a counter in meaning)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.published = Gauge(
            "relay_published_events_total", "Events published since the process started", registry=registry
        )
        self.rate = Gauge(
            "relay_events_per_second", "Events published per second, last 10 s", registry=registry
        )
        self.lag_events = Gauge("relay_lag_events", "Events in the log not yet published", registry=registry)
        self.lag_seconds = Gauge(
            "relay_lag_seconds", "Age of the oldest event not yet published", registry=registry
        )
        self.leader = Gauge("relay_leader", "1 while this relay is the one publishing", registry=registry)
        self.kafka_connected = Gauge(
            "relay_kafka_connected", "1 while Kafka takes this relay's messages", registry=registry
        )

    def update(self, report: RelayReport) -> None:
        self.published.set(report.published_total)
        self.rate.set(report.events_per_second)
        # Unknown (PostgreSQL not answering) shows as NaN, which alerting treats as "no data".
        self.lag_events.set(float("nan") if report.lag_events is None else report.lag_events)
        self.lag_seconds.set(float("nan") if report.lag_seconds is None else report.lag_seconds)
        self.leader.set(int(report.role == "leader"))
        self.kafka_connected.set(int(report.kafka_connected))
