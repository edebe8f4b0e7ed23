"""The saga service's settings, read from the environment at start-up.

Its own fields are named `saga_*` and read from `SAGA_*`; the others (the servers,
the token settings of its admin API, host and port, ...) are read as `SAGA_<NAME>`
when set, else `<NAME>`. So `SAGA_DATABASE_URL` can put the saga's streams and
deadlines in another database than the one `DATABASE_URL` names for everybody.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from servicekit.settings import ApiSettings, HttpUrl, KafkaServers, PostgresUrl, RedisUrl, from_env

__all__ = ["SagaSettings", "load_settings"]

Seconds = Annotated[float, msgspec.Meta(gt=0)]


class SagaSettings(ApiSettings, frozen=True, kw_only=True):
    """Everything `create_app` and the entry point need."""

    database_url: PostgresUrl
    redis_url: RedisUrl
    kafka_bootstrap_servers: KafkaServers
    port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 8005
    pool_min_size: Annotated[int, msgspec.Meta(ge=0)] = 2
    pool_max_size: Annotated[int, msgspec.Meta(ge=1)] = 16
    # Downstreams.
    saga_command_url: HttpUrl = "http://127.0.0.1:8001"
    saga_service_token: str | None = None  # else minted from JWT_SECRET with the role `service`
    saga_provider_url: HttpUrl = "http://127.0.0.1:8006"
    saga_provider_secret: Annotated[str, msgspec.Meta(min_length=16)]  # HMAC key of the provider's webhooks
    saga_public_url: HttpUrl | None = None  # where the provider calls back; default http://HOST:PORT
    # Kafka.
    saga_topic_prefix: str = "fulfilment."
    saga_group_id: str = "saga"
    saga_dead_letter_topic: str = "saga.dead-letters"  # order events the saga cannot read, with the reason
    # Used only when the saga starts before the relay created the topic (the relay's defaults).
    saga_topic_partitions: Annotated[int, msgspec.Meta(ge=1)] = 6
    saga_topic_replication: Annotated[int, msgspec.Meta(ge=1)] = 1
    saga_concurrency: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 64  # sagas driven at once
    # Deadlines and timers.
    saga_payment_timeout: Seconds = 30.0
    saga_timer_poll: Seconds = 0.1  # how often due timers are claimed when none was due last time
    saga_timer_lease: Seconds = 30.0  # a claimed timer nobody finished is claimed again after this
    saga_timer_batch: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 100
    saga_wake_grace: Seconds = 10.0  # pending work not done by then is picked up by any instance
    saga_stuck_after: Seconds = 120.0  # the admin list calls an unfinished saga stuck after this
    # Retries and circuit breakers of the downstreams.
    saga_retry_attempts: Annotated[int, msgspec.Meta(ge=1, le=20)] = 4
    saga_retry_base_delay: Seconds = 0.05
    saga_retry_max_delay: Seconds = 2.0
    saga_breaker_failures: Annotated[int, msgspec.Meta(ge=1)] = 5  # consecutive failures that open it
    saga_breaker_reset: Seconds = 5.0  # open this long, then one trial call
    saga_http_timeout: Seconds = 5.0


def load_settings() -> SagaSettings:
    """Settings from the process environment; raises `SettingsError` naming a bad variable."""
    return from_env(SagaSettings, prefix="SAGA_")
