"""Typed settings read from environment variables.

Each field of a frozen `msgspec.Struct` (usually extending `ServiceSettings`) is read
from its upper-case name; with a `prefix` the prefixed name wins (`COMMAND_PORT` over
`PORT`). Values are converted and checked by msgspec (`Annotated[..., Meta(...)]`); a
missing or malformed value raises `SettingsError` naming the variable, at start-up.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import msgspec

__all__ = [
    "ApiSettings",
    "HttpUrl",
    "KafkaServers",
    "PostgresUrl",
    "RedisUrl",
    "ServiceSettings",
    "SettingsError",
    "TracesSampler",
    "describe_variables",
    "from_env",
]

PostgresUrl = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^postgres(ql)?://[^\s]+$", description="postgresql://user:password@host:port/database"
    ),
]
RedisUrl = Annotated[str, msgspec.Meta(pattern=r"^rediss?://[^\s]+$", description="redis://host:port/db")]
HttpUrl = Annotated[str, msgspec.Meta(pattern=r"^https?://[^\s]+$", description="http(s)://host:port")]
KafkaServers = Annotated[
    str,
    msgspec.Meta(pattern=r"^[^\s,:]+:\d+(,[^\s,:]+:\d+)*$", description="host:port[,host:port...]"),
]


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


Seconds = Annotated[float, msgspec.Meta(gt=0)]
# The samplers of the OpenTelemetry SDK's OTEL_TRACES_SAMPLER that need no other component.
TracesSampler = Literal[
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
]


class ServiceSettings(msgspec.Struct, frozen=True, kw_only=True):
    """What every service process is configured with; a service's own Struct extends it."""

    host: str = "127.0.0.1"
    port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 8000
    # Server processes; each has its own pools, so servers see workers times as many connections.
    workers: Annotated[int, msgspec.Meta(ge=1, le=64)] = 1
    shutdown_timeout_seconds: Seconds = 20.0
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # Where spans go: nowhere (ids are still made and propagated), stdout, an OTLP/HTTP collector
    # (endpoint and headers from the standard OTEL_EXPORTER_OTLP_* variables) or a Zipkin server
    # (OTEL_EXPORTER_ZIPKIN_ENDPOINT, e.g. http://127.0.0.1:59411/api/v2/spans; see servicekit.zipkin).
    otel_exporter: Literal["none", "console", "otlp", "zipkin"] = "none"
    otel_service_name: str | None = None
    # Which traces are recorded, read from OpenTelemetry's standard OTEL_TRACES_SAMPLER and
    # OTEL_TRACES_SAMPLER_ARG (the ratio of the `traceidratio` samplers). The default is the
    # standard's: `parentbased_always_on`, every trace recorded unless a caller's traceparent says
    # it is not. Unrecorded work still gets trace ids for its logs and events; it skips the span.
    otel_traces_sampler: TracesSampler = "parentbased_always_on"
    otel_traces_sampler_arg: Annotated[float, msgspec.Meta(ge=0, le=1)] = 1.0
    # A span per SQL statement (asyncpg's instrumentation), besides the event store's one span per
    # append or stream read: for finding a slow query; it costs a span on every statement.
    otel_trace_sql: bool = False
    access_log: bool = True
    # Limits on what a client sends before the app sees a request (see servicekit.http_limits).
    max_header_bytes: Annotated[int, msgspec.Meta(ge=1024, le=1024 * 1024)] = 16 * 1024
    max_headers: Annotated[int, msgspec.Meta(ge=10, le=1000)] = 100
    header_timeout_seconds: Seconds = 10.0
    # Seconds an idle keep-alive connection stays open between requests.
    keep_alive_timeout_seconds: Seconds = 5.0
    # A Kafka consumer that cannot fetch this long while Kafka answers ends the process, for its
    # supervisor to start a new one (servicekit.kafka.watch_fetching); unused by services without one.
    consumer_stall_seconds: Seconds = 90.0


def from_env[T: msgspec.Struct](
    cls: type[T], environ: Mapping[str, str] | None = None, *, prefix: str = ""
) -> T:
    """Build `cls` from environment variables named after its fields in upper case.

    With `prefix` (e.g. `"COMMAND_"`), `COMMAND_PORT` is read for `port` when set, else `PORT`;
    a field whose name already starts with the prefix is read by its own name only.
    """
    env = os.environ if environ is None else environ
    info = msgspec.inspect.type_info(cls)
    if not isinstance(info, msgspec.inspect.StructType):
        raise TypeError(f"{cls!r} is not a msgspec Struct")
    raw: dict[str, Any] = {}
    names: dict[str, str] = {}
    missing: list[str] = []
    for field in info.fields:
        candidates = _variables(field.name, prefix.upper())
        variable = next((name for name in candidates if name in env), None)
        if variable is not None:
            raw[field.name] = env[variable]
            names[field.name] = variable
        elif field.required:
            missing.append(
                candidates[-1] if len(candidates) == 1 else f"{candidates[0]} (or {candidates[1]})"
            )
    if missing:
        raise SettingsError(f"missing environment variable(s): {', '.join(missing)}")
    try:
        return msgspec.convert(raw, cls, strict=False)
    except msgspec.ValidationError as error:
        raise SettingsError(_name_variable(str(error), names)) from error


def describe_variables(cls: type[msgspec.Struct], *, prefix: str = "") -> str:
    """One line per variable `from_env(cls, prefix=prefix)` reads: its name(s), and its default or
    `(required)`; what `--help` prints."""
    info = msgspec.inspect.type_info(cls)
    if not isinstance(info, msgspec.inspect.StructType):
        raise TypeError(f"{cls!r} is not a msgspec Struct")
    lines = []
    for field in info.fields:
        names = " or ".join(_variables(field.name, prefix.upper()))
        if field.required:
            default = "(required)"
        else:
            value = field.default if field.default is not msgspec.NODEFAULT else field.default_factory()
            default = "(none)" if value is None else f"default {value}"
        lines.append(f"  {names:<48} {default}")
    return "\n".join(lines)


def _variables(field: str, prefix: str) -> tuple[str, ...]:
    name = field.upper()
    if not prefix or name.startswith(prefix):
        return (name,)
    return (prefix + name, name)


def _name_variable(message: str, names: Mapping[str, str]) -> str:
    # msgspec says "Expected `int`, got `str` - at `$.pool_size`"; say which variable that is.
    text, _, path = message.rpartition(" - at `$.")
    if not text:
        return message
    field = path.rstrip("`").split(".")[0].split("[")[0]
    return f"{names.get(field, field.upper())}: {text}"


class ApiSettings(ServiceSettings, frozen=True, kw_only=True):
    """An HTTP API's settings: how it verifies bearer tokens (see `servicekit.auth`) and its limits."""

    jwt_issuer: Annotated[str, msgspec.Meta(min_length=1)]
    jwt_audience: Annotated[str, msgspec.Meta(min_length=1)]
    # Comma-separated subset of HS256,RS256,ES256; the keys for each must be configured.
    jwt_algorithms: str = "HS256"
    jwt_secret: str | None = None
    jwt_jwks_file: str | None = None
    jwt_jwks_url: str | None = None
    jwt_leeway_seconds: Annotated[int, msgspec.Meta(ge=0, le=300)] = 30
    # Whether the space-separated `scope` claim grants roles (off: only the `roles` list does).
    jwt_scope_roles: bool = False
    rate_limit_per_second: Annotated[float, msgspec.Meta(gt=0)] = 50.0
    rate_limit_burst: Annotated[int, msgspec.Meta(ge=1)] = 100
    max_body_bytes: Annotated[int, msgspec.Meta(ge=1024)] = 64 * 1024

    @property
    def algorithms(self) -> tuple[str, ...]:
        return tuple(name.strip() for name in self.jwt_algorithms.split(",") if name.strip())
