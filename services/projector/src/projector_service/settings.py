"""The projector's settings, read from the environment (see docs/projector.md's table).

Its own fields are named `projector_*` and read from `PROJECTOR_*`; the fields
every service has (host, port, log level, tracing, shutdown) come from
`servicekit.settings.ServiceSettings` and are read as `PROJECTOR_PORT`, or
`PORT` when that is not set.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from servicekit.settings import HttpUrl, KafkaServers, PostgresUrl, RedisUrl, ServiceSettings, from_env

__all__ = ["ProjectorSettings", "load_settings"]

Positive = Annotated[int, msgspec.Meta(ge=1)]


class ProjectorSettings(ServiceSettings, frozen=True, kw_only=True):
    database_url: PostgresUrl
    redis_url: RedisUrl
    kafka_bootstrap_servers: KafkaServers
    search_url: HttpUrl
    port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 8004
    projector_topic_prefix: str = "fulfilment."  # the relay's RELAY_TOPIC_PREFIX
    projector_group_prefix: str = "projector."  # consumer group = prefix + projection name
    projector_dead_letter_topic: str = "fulfilment.projector.dlq"
    projector_key_prefix: str = ""  # prefix of every Redis key and search index it writes
    projector_projections: str = "redis,search"  # which projections this process runs
    projector_batch_size: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 500
    # How long an empty poll waits before the next: short, since a reader may wait on the next event.
    projector_batch_timeout_ms: Positive = 10
    projector_max_attempts: Positive = 3  # tries of a failing event before it is dead-lettered
    projector_max_backoff: Annotated[float, msgspec.Meta(gt=0)] = 5.0  # while a store is down
    projector_partitions: Positive = 6  # for the dead-letter topic, if the projector creates it

    @property
    def projections(self) -> list[str]:
        return [name.strip() for name in self.projector_projections.split(",") if name.strip()]


def load_settings() -> ProjectorSettings:
    """Settings from the process environment; raises `SettingsError` naming a bad variable."""
    return from_env(ProjectorSettings, prefix="PROJECTOR_")
