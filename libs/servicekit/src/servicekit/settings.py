"""Typed settings read from environment variables.

A service declares its settings as a frozen `msgspec.Struct`; each field is read
from the variable of the same name in upper case (`database_url` from
`DATABASE_URL`). Values are converted with msgspec, so `"5"` becomes `5` for an
`int` field and constraints in `Annotated[..., Meta(...)]` are checked. A missing
or malformed value raises `SettingsError` naming the variable, at start-up,
rather than a confusing failure at first use.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Annotated, Any

import msgspec

__all__ = [
    "HttpUrl",
    "KafkaServers",
    "PostgresUrl",
    "RedisUrl",
    "SettingsError",
    "StackSettings",
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


class StackSettings(msgspec.Struct, frozen=True, kw_only=True):
    """Where the suite's servers are. Services extend this with their own fields."""

    database_url: PostgresUrl
    redis_url: RedisUrl
    kafka_bootstrap_servers: KafkaServers
    search_url: HttpUrl


def from_env[T: msgspec.Struct](cls: type[T], environ: Mapping[str, str] | None = None) -> T:
    """Build `cls` from environment variables named after its fields in upper case."""
    env = os.environ if environ is None else environ
    info = msgspec.inspect.type_info(cls)
    if not isinstance(info, msgspec.inspect.StructType):
        raise TypeError(f"{cls!r} is not a msgspec Struct")
    raw: dict[str, Any] = {}
    missing: list[str] = []
    for field in info.fields:
        variable = field.name.upper()
        if variable in env:
            raw[field.name] = env[variable]
        elif field.required:
            missing.append(variable)
    if missing:
        raise SettingsError(f"missing environment variable(s): {', '.join(missing)}")
    try:
        return msgspec.convert(raw, cls, strict=False)
    except msgspec.ValidationError as error:
        raise SettingsError(_name_variable(str(error))) from error


def _name_variable(message: str) -> str:
    # msgspec says "Expected `int`, got `str` - at `$.pool_size`"; say which variable that is.
    text, _, path = message.rpartition(" - at `$.")
    if not text:
        return message
    variable = path.rstrip("`").split(".")[0].split("[")[0].upper()
    return f"{variable}: {text}"
