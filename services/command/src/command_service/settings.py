"""The command service's settings, read from the environment at start-up.

Every field is read from its upper-cased variable; `COMMAND_<NAME>` wins over
`<NAME>` when both are set (so `COMMAND_PORT` beside another service's `PORT`).
The fields every service has (host, port, workers, logs, tracing, shutdown) and
the token and limit settings of an HTTP API come from `servicekit.settings`.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from servicekit.settings import ApiSettings, PostgresUrl, RedisUrl, from_env

__all__ = ["CommandSettings", "load_settings"]


class CommandSettings(ApiSettings, frozen=True, kw_only=True):
    """Everything `create_app` and the entry point need."""

    database_url: PostgresUrl
    redis_url: RedisUrl
    port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 8001
    pool_min_size: Annotated[int, msgspec.Meta(ge=0)] = 2
    pool_max_size: Annotated[int, msgspec.Meta(ge=1)] = 16
    idempotency_ttl_seconds: Annotated[int, msgspec.Meta(ge=60)] = 24 * 3600
    # Attempts at a command whose stream moved under it, when the client sent no If-Match.
    max_attempts: Annotated[int, msgspec.Meta(ge=1, le=50)] = 5


def load_settings() -> CommandSettings:
    """Settings from the process environment; raises `SettingsError` naming a bad variable."""
    return from_env(CommandSettings, prefix="COMMAND_")
