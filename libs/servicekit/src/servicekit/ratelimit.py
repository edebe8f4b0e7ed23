"""Rate limiting per authenticated subject, shared by every instance through Redis.

GCRA in one Lua script (one key per subject, Redis's own clock): `burst` requests at
once, then `rate` per second, and racing instances cannot spend the same allowance.
To keep Redis off most requests an instance takes allowance in leases of `lease`
requests, refilled in the background; every request is still paid for in Redis, so
no subject exceeds its rate in total. When Redis is unreachable requests pass (logged):
failing closed would turn a Redis outage into a write-side outage. After a failed call
Redis is left alone for a second, so requests do not each wait out a hanging server's
timeout. Details:
`docs/architecture.md`.
"""

from __future__ import annotations

import asyncio
import logging
import time

import redis.asyncio as redis
from redis.exceptions import RedisError

from servicekit.errors import RateLimited

__all__ = ["RateLimiter"]

log = logging.getLogger("servicekit.ratelimit")

# KEYS[1]: the subject's key. ARGV: emission interval (µs), burst, cost (requests to pay for).
# Returns {1, 0} when allowed, {0, retry_after_µs} when not (nothing is spent then).
_GCRA = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000000 + tonumber(now_parts[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local new_tat = tat + interval * cost
local allow_at = new_tat - burst * interval
if allow_at > now then
  return {0, allow_at - now}
end
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil((new_tat - now) / 1000) + 1)
return {1, 0}
"""

_MAX_LEASES = 50_000
# Leased allowance is paid for when it is taken, so using it later never exceeds the limit; the
# expiry only keeps an instance from sitting on allowance another instance could use.
_LEASE_SECONDS = 1.0
# After Redis failed a call, requests pass without asking it for this long.
_UNREACHABLE_SECONDS = 1.0


class RateLimiter:
    """`check(subject)` raises `RateLimited` once the subject exceeds `per_second` after a `burst`."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        per_second: float,
        burst: int,
        lease: int = 10,
        prefix: str = "ratelimit:command:",
    ) -> None:
        self._script = client.register_script(_GCRA)
        self._interval_us = max(1, round(1_000_000 / per_second))
        self._burst = burst
        self._lease = max(1, min(lease, burst))
        self._lease_seconds = _LEASE_SECONDS
        self._prefix = prefix
        self._leases: dict[str, tuple[int, float]] = {}
        # The lease being taken per subject: a refill task, or a future a request resolves.
        self._taking: dict[str, asyncio.Future[None]] = {}
        self._warned_at = float("-inf")
        self._unreachable_until = float("-inf")

    async def check(self, subject: str) -> None:
        """Let the request through, or raise `RateLimited` with the time until the subject may retry."""
        while True:
            remaining, until = self._leases.get(subject, (0, 0.0))
            if remaining > 0 and time.monotonic() < until:
                self._leases[subject] = (remaining - 1, until)
                if remaining - 1 <= self._lease // 2 and self._lease > 1 and subject not in self._taking:
                    refill = asyncio.create_task(self._refill(subject), name="ratelimit-refill")
                    self._taking[subject] = refill
                return
            taking = self._taking.get(subject)
            if taking is None:
                break
            # One lease at a time per subject, in the background or not: concurrent requests share
            # it instead of each taking a lease of its own and spending the subject's whole burst.
            await asyncio.wait([taking])
        if time.monotonic() < self._unreachable_until:
            return  # Redis just failed: let the request through without waiting on it again
        taken = asyncio.get_running_loop().create_future()
        self._taking[subject] = taken
        try:
            await self._take_lease(subject)
        finally:
            del self._taking[subject]
            taken.set_result(None)

    async def _refill(self, subject: str) -> None:
        """Take the subject's next lease before the current one runs out."""
        try:
            if await self._spend(subject, self._lease) is None:
                self._add_to_lease(subject, self._lease)
        except (RedisError, OSError) as error:
            self._unreachable(error)
        finally:
            del self._taking[subject]

    async def close(self) -> None:
        """Wait for background refills to finish (they are short: one script call each)."""
        await asyncio.gather(*self._taking.values(), return_exceptions=True)

    def _unreachable(self, error: Exception) -> None:
        self._unreachable_until = time.monotonic() + _UNREACHABLE_SECONDS
        # Say it once a minute, not once a request.
        if time.monotonic() - self._warned_at > 60:
            self._warned_at = time.monotonic()
            log.warning("rate limiting is off while Redis is unreachable: %s", error)

    async def _take_lease(self, subject: str) -> None:
        try:
            if self._lease > 1 and await self._spend(subject, self._lease) is None:
                self._add_to_lease(subject, self._lease - 1)
                return
            # Not enough for a lease: a single request may still fit.
            retry_after_us = await self._spend(subject, 1)
        except (RedisError, OSError) as error:
            self._unreachable(error)
            return
        self._leases.pop(subject, None)
        if retry_after_us is not None:
            raise RateLimited(retry_after_us / 1_000_000)

    async def _spend(self, subject: str, cost: int) -> int | None:
        """Pay for `cost` requests; None if paid, else how long until they would fit (µs)."""
        allowed, retry_after_us = await self._script(
            keys=[self._prefix + subject], args=[self._interval_us, self._burst, cost]
        )
        return None if allowed else int(retry_after_us)

    def _add_to_lease(self, subject: str, paid: int) -> None:
        """Add `paid` requests to the subject's lease (what is left of an unexpired one is kept)."""
        now = time.monotonic()
        remaining, until = self._leases.get(subject, (0, 0.0))
        if len(self._leases) >= _MAX_LEASES:
            self._leases = {key: lease for key, lease in self._leases.items() if lease[1] > now}
            if len(self._leases) >= _MAX_LEASES:
                self._leases.clear()
        self._leases[subject] = ((remaining if until > now else 0) + paid, now + self._lease_seconds)
