"""The command service's settings, read from the environment at start-up."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from servicekit.settings import PostgresUrl, RedisUrl, from_env

__all__ = ["CommandSettings", "load_settings"]

Seconds = Annotated[float, msgspec.Meta(gt=0)]


class CommandSettings(msgspec.Struct, frozen=True, kw_only=True):
    """Everything `create_app` and the entry point need; each field is the upper-cased variable."""

    database_url: PostgresUrl
    redis_url: RedisUrl
    jwt_issuer: Annotated[str, msgspec.Meta(min_length=1)]
    jwt_audience: Annotated[str, msgspec.Meta(min_length=1)]
    # Comma-separated subset of HS256,RS256,ES256; the keys for each must be configured.
    jwt_algorithms: str = "HS256"
    jwt_secret: str | None = None
    jwt_jwks_file: str | None = None
    jwt_jwks_url: str | None = None
    jwt_leeway_seconds: Annotated[int, msgspec.Meta(ge=0, le=300)] = 30
    host: str = "127.0.0.1"
    port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 8000
    # Server processes; each has its own pool, so PostgreSQL sees workers * pool_max_size connections.
    workers: Annotated[int, msgspec.Meta(ge=1, le=64)] = 1
    pool_min_size: Annotated[int, msgspec.Meta(ge=0)] = 2
    pool_max_size: Annotated[int, msgspec.Meta(ge=1)] = 16
    idempotency_ttl_seconds: Annotated[int, msgspec.Meta(ge=60)] = 24 * 3600
    # Attempts at a command whose stream moved under it, when the client sent no If-Match.
    max_attempts: Annotated[int, msgspec.Meta(ge=1, le=50)] = 5
    rate_limit_per_second: Annotated[float, msgspec.Meta(gt=0)] = 50.0
    rate_limit_burst: Annotated[int, msgspec.Meta(ge=1)] = 100
    max_body_bytes: Annotated[int, msgspec.Meta(ge=1024)] = 64 * 1024
    shutdown_timeout_seconds: Seconds = 20.0
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # Where spans go: nowhere (ids are still made and written into events), stdout, or an OTLP/HTTP collector.
    otel_exporter: Literal["none", "console", "otlp"] = "none"
    otel_service_name: str = "command"
    # Share of traces recorded (a caller's sampling decision in traceparent wins). Unrecorded requests
    # still get trace ids for their logs and events; they just skip building span attributes.
    otel_sample_ratio: Annotated[float, msgspec.Meta(ge=0, le=1)] = 1.0
    access_log: bool = True

    @property
    def algorithms(self) -> tuple[str, ...]:
        return tuple(name.strip() for name in self.jwt_algorithms.split(",") if name.strip())


def load_settings() -> CommandSettings:
    """Settings from the process environment; raises `SettingsError` naming a bad variable."""
    return from_env(CommandSettings)
