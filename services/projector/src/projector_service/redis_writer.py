"""Applying the Redis projection's guarded writes, in batches, to one or more generations.

One Lua script per write compares the hash's stored version with the write's
and applies the write only when it is the next one, together with what depends
on it: the per-status order counts move only when the script really changed the
order's status, so counts stay exact under any redelivery. A batch is one
pipeline of script calls (one round trip).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from readmodels.keyspace import RECENT_ORDERS, Keyspace, RedisModelKeys
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from projector_service.events import ProjectedEvent
from projector_service.history import StreamHistory
from projector_service.summaries import GuardedWrite, summary_writes

__all__ = ["APPLY", "RedisSummaryWriter"]

# KEYS: the hash, the order counts, the customer's recent orders (may be unused).
# ARGV: version, count_status (1/0), recent score ('' for none), recent member, keep,
#       number of fields to set, field/value pairs, number of increments, field/delta pairs.
# Returns {outcome, stored version}: 1 applied, 0 already applied (a duplicate), 2 a gap.
APPLY = """
local stored = tonumber(redis.call('HGET', KEYS[1], 'version') or '-1')
local version = tonumber(ARGV[1])
if version <= stored then return {0, stored} end
if version > stored + 1 then return {2, stored} end
local old = false
if ARGV[2] == '1' then old = redis.call('HGET', KEYS[1], 'status') end
local i = 6
local fields = {'version', ARGV[1]}
for _ = 1, tonumber(ARGV[i]) do
  fields[#fields + 1] = ARGV[i + 1]
  fields[#fields + 1] = ARGV[i + 2]
  i = i + 2
end
redis.call('HSET', KEYS[1], unpack(fields))
i = i + 1
for _ = 1, tonumber(ARGV[i]) do
  redis.call('HINCRBY', KEYS[1], ARGV[i + 1], ARGV[i + 2])
  i = i + 2
end
if ARGV[2] == '1' then
  local new = redis.call('HGET', KEYS[1], 'status')
  if new ~= old then
    if old then redis.call('HINCRBY', KEYS[2], old, -1) end
    if new then redis.call('HINCRBY', KEYS[2], new, 1) end
  end
end
if ARGV[3] ~= '' then
  redis.call('ZADD', KEYS[3], ARGV[3], ARGV[4])
  redis.call('ZREMRANGEBYRANK', KEYS[3], 0, -(tonumber(ARGV[5]) + 1))
end
return {1, version}
"""

APPLIED, DUPLICATE, GAP = 1, 0, 2


def script_call(keys: RedisModelKeys, write: GuardedWrite) -> tuple[list[str], list[Any]]:
    """The KEYS and ARGV of one guarded write against one generation."""
    hash_key = keys.order(write.ident) if write.kind == "order" else keys.stock(write.ident)
    recent = write.recent
    recent_key = keys.customer_orders(recent.customer_id) if recent else hash_key
    args: list[Any] = [
        write.version,
        1 if write.count_status else 0,
        recent.placed_at_ms if recent else "",
        recent.order_id if recent else "",
        RECENT_ORDERS,
        len(write.set),
    ]
    for field, value in write.set.items():
        args += [field, value]
    args.append(len(write.incr))
    for field, delta in write.incr.items():
        args += [field, delta]
    return [hash_key, keys.order_counts, recent_key], args


class RedisSummaryWriter:
    """Applies events to the Redis read models of the given generations."""

    def __init__(self, redis: Redis, keyspace: Keyspace, history: StreamHistory) -> None:
        self._redis = redis
        self._keyspace = keyspace
        self._history = history
        self._script = redis.register_script(APPLY)

    async def apply(self, events: Sequence[ProjectedEvent], generations: Sequence[str]) -> dict[str, str]:
        """Apply `events` to each generation; return the ids of events that failed, with the reason.

        Connection failures propagate (the caller retries the batch); a write Redis
        refuses fails only its event. Gaps are filled from the event store.
        """
        failed: dict[str, str] = {}
        planned: list[tuple[ProjectedEvent, GuardedWrite]] = []
        for event in events:
            try:
                planned += [(event, write) for write in summary_writes(event)]
            except Exception as error:  # a projection bug on this event: dead-letter it, not the batch
                failed[event.event_id] = f"{type(error).__name__}: {error}"
        for generation in generations:
            gaps = await self._run(self._keyspace.models(generation), planned, failed)
            await self._fill(self._keyspace.models(generation), gaps, failed)
        return failed

    async def _run(
        self,
        keys: RedisModelKeys,
        planned: Sequence[tuple[ProjectedEvent, GuardedWrite]],
        failed: dict[str, str],
    ) -> dict[str, tuple[int, int]]:
        """One pipeline for `planned`; return each stream with a gap: (stored version, highest wanted)."""
        if not planned:
            return {}
        pipe = self._redis.pipeline(transaction=False)
        for _, write in planned:
            script_keys, args = script_call(keys, write)
            await self._script(keys=script_keys, args=args, client=pipe)
        results = await pipe.execute(raise_on_error=False)
        gaps: dict[str, tuple[int, int]] = {}
        for (event, _), result in zip(planned, results, strict=True):
            if isinstance(result, ResponseError):
                failed[event.event_id] = f"redis refused the write: {result}"
            elif isinstance(result, Exception):
                raise result
            elif int(result[0]) == GAP:
                stored, wanted = gaps.get(event.stream_id, (int(result[1]), event.version))
                gaps[event.stream_id] = (min(stored, int(result[1])), max(wanted, event.version))
        return gaps

    async def _fill(
        self, keys: RedisModelKeys, gaps: dict[str, tuple[int, int]], failed: dict[str, str]
    ) -> None:
        # The store has every event of the stream: apply the missing ones and the wanted
        # ones in order. A second gap means another writer moved the hash meanwhile; the
        # next round starts from where it is then.
        for _ in range(5):
            if not gaps:
                return
            planned: list[tuple[ProjectedEvent, GuardedWrite]] = []
            for stream_id, (stored, wanted) in gaps.items():
                for event in await self._history.between(stream_id, stored + 1, wanted):
                    planned += [(event, write) for write in summary_writes(event)]
            gaps = await self._run(keys, planned, failed)
        raise RuntimeError(f"streams kept moving while filling their gaps: {sorted(gaps)}")
