"""Rate limiting per authenticated subject, shared by every instance through Redis.

The limiter is GCRA (the generic cell rate algorithm): one Redis key per subject
holds the "theoretical arrival time" of its next request, so a subject may send
`burst` requests at once and then `rate` per second, with no counters to sweep
and no window edges to game. The check and the update run in one Lua script, so
instances racing on a subject cannot both spend the same allowance, and the
time comes from Redis itself, so instance clocks do not matter.

When Redis cannot be reached the limiter lets requests through and logs it:
rate limiting protects the service, and failing closed would turn a Redis outage
into a full outage of the write side.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import redis.asyncio as redis
from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler
from redis.exceptions import RedisError

from command_service.auth import Guard, principal_of
from command_service.errors import RateLimited

__all__ = ["RateLimiter", "rate_limit_with"]

log = logging.getLogger("command_service.ratelimit")

# KEYS[1]: the subject's key. ARGV: emission interval (µs), burst.
# Returns {1, 0} when allowed, {0, retry_after_µs} when not.
_GCRA = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000000 + tonumber(now_parts[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - burst * interval
if allow_at > now then
  return {0, allow_at - now}
end
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil((new_tat - now) / 1000) + 1)
return {1, 0}
"""


class RateLimiter:
    """`check(subject)` raises `RateLimited` once the subject exceeds `per_second` after a `burst`."""

    def __init__(
        self, client: redis.Redis, *, per_second: float, burst: int, prefix: str = "ratelimit:command:"
    ):
        self._client = client
        self._script = client.register_script(_GCRA)
        self._interval_us = max(1, round(1_000_000 / per_second))
        self._burst = burst
        self._prefix = prefix
        self._warned_at = float("-inf")

    async def check(self, subject: str) -> None:
        try:
            allowed, retry_after_us = await self._script(
                keys=[self._prefix + subject], args=[self._interval_us, self._burst]
            )
        except (RedisError, OSError) as error:
            # Say it once a minute, not once a request.
            if time.monotonic() - self._warned_at > 60:
                self._warned_at = time.monotonic()
                log.warning("rate limiting is off while Redis is unreachable: %s", error)
            return
        if not allowed:
            raise RateLimited(int(retry_after_us) / 1_000_000)


def rate_limit_with(limiter: RateLimiter) -> Guard:
    """A guard, placed after authentication, that spends one request of the principal's allowance."""

    async def rate_limit(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        await limiter.check(principal_of(connection).subject)

    return rate_limit
