"""The query service's settings, read from the environment at start-up.

Its own fields are named `query_*` and read from `QUERY_*`; the fields every
HTTP API has (host, port, logs, tracing, shutdown, JWT, rate limits) come from
`servicekit.settings.ApiSettings` and are read as `QUERY_PORT`, or `PORT` when
that is not set.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated

import msgspec
from servicekit.settings import ApiSettings, HttpUrl, RedisUrl, from_env

__all__ = ["QuerySettings", "load_settings"]


class QuerySettings(ApiSettings, frozen=True, kw_only=True):
    """Everything `create_app` and the entry point need."""

    redis_url: RedisUrl
    search_url: HttpUrl
    port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 8002
    # The projector's PROJECTOR_KEY_PREFIX: where its Redis keys and its orders alias are.
    query_key_prefix: str = ""
    # How long a request carrying a consistency token may wait for the read model to reach it.
    query_consistency_timeout_seconds: Annotated[float, msgspec.Meta(gt=0, le=30)] = 2.0
    query_search_timeout_seconds: Annotated[float, msgspec.Meta(gt=0, le=60)] = 5.0
    query_search_connections: Annotated[int, msgspec.Meta(ge=1, le=1024)] = 32
    # Redis connections of one process; requests beyond them wait for one (see create_app).
    query_redis_connections: Annotated[int, msgspec.Meta(ge=1, le=1024)] = 64
    # The key that signs search cursors (HMAC-SHA256); every instance needs the same one. Unset, a
    # key derived from JWT_SECRET is used, so nothing new has to be configured.
    query_cursor_secret: Annotated[str, msgspec.Meta(min_length=32)] | None = None

    def cursor_key(self) -> bytes | None:
        """The key of search cursors: QUERY_CURSOR_SECRET, else one derived from JWT_SECRET.

        Derived, not the JWT secret itself, so a cursor's MAC can never serve as a token's
        signature nor the other way round. None when neither is set (tokens verified by JWKS
        only): each process then signs with a random key of its own.
        """
        if self.query_cursor_secret is not None:
            return self.query_cursor_secret.encode()
        if self.jwt_secret:
            return hmac.new(self.jwt_secret.encode(), b"fulfilment query cursors v1", hashlib.sha256).digest()
        return None


def load_settings() -> QuerySettings:
    """Settings from the process environment; raises `SettingsError` naming a bad variable."""
    return from_env(QuerySettings, prefix="QUERY_")
