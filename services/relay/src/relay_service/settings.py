"""The relay's settings, read from the environment (see docs/relay.md's table).

Its own fields are named `relay_*` and read from `RELAY_*`; the fields every
service has (host, port, log level, tracing, shutdown) come from
`servicekit.settings.ServiceSettings` and are read as `RELAY_PORT`, or `PORT`
when that is not set.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from servicekit.settings import HttpUrl, KafkaServers, PostgresUrl, ServiceSettings, from_env

__all__ = ["RelaySettings", "load_settings"]

Positive = Annotated[int, msgspec.Meta(ge=1)]


class RelaySettings(ServiceSettings, frozen=True, kw_only=True):
    database_url: PostgresUrl
    kafka_bootstrap_servers: KafkaServers
    port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 8003
    relay_source: str = "/fulfilment"  # CloudEvents `source` of every message
    relay_topic_prefix: str = "fulfilment."  # topic = prefix + stream category
    relay_partitions: Positive = 6
    relay_replication_factor: Positive = 1
    # How long Kafka keeps events (`retention.ms` of the topics the relay creates): 7 days.
    # Older history comes from the store, never from a topic (docs/relay.md, Replays).
    relay_retention_ms: Annotated[int, msgspec.Meta(ge=-1)] = 7 * 24 * 3600 * 1000
    # Where the JSON Schemas are served (the relay's own GET /schemas/<Type>.v<N>.json by
    # default); each message's `ce_dataschema` is this plus the schema's file name.
    relay_dataschema_base: HttpUrl = "http://127.0.0.1:8003/schemas/"
    relay_checkpoint: str = "relay"  # the checkpoint name in the event store
    relay_lock_key: int = 0x52454C4159  # the advisory lock one active relay holds ("RELAY")
    relay_batch_size: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 1000
    relay_standby_poll: Annotated[float, msgspec.Meta(gt=0)] = 1.0  # how often a standby tries the lock
    relay_max_backoff: Annotated[float, msgspec.Meta(gt=0)] = 10.0
    relay_ack_timeout: Annotated[float, msgspec.Meta(gt=0)] = 10.0  # no ack by then: Kafka counts as down


def load_settings() -> RelaySettings:
    """Settings from the process environment; raises `SettingsError` naming a bad variable."""
    return from_env(RelaySettings, prefix="RELAY_")
