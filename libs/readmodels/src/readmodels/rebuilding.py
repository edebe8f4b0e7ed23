"""Telling "this read model lost its data and is being rebuilt" from "no such thing".

An emptied Redis or a deleted index looks like a model with nothing in it. So each
whole model carries a mark the projector wrote (Redis: the live generation's marker
`rm:redis:G:built`; search: the alias and `rm:search:live`), a repair in progress keeps
`rm:<projection>:repair`, and a reader that misses the mark answers 503 with
`Retry-After`, never a wrong 404 or count (`docs/query.md`).
"""

from __future__ import annotations

from redis.asyncio import Redis

from readmodels.keyspace import Keyspace

__all__ = ["ReadModelRebuilding", "model_lost"]


class ReadModelRebuilding(RuntimeError):
    """The read model lost its data; the projector is rebuilding it from the event store."""

    def __init__(self, projection: str, reason: str) -> None:
        super().__init__(f"the {projection} read model is being rebuilt ({reason}): retry shortly")
        self.projection = projection
        self.reason = reason


# KEYS: the projection's live pointer, its repair hash. ARGV: the marker key around the
# generation (before, after), or '' for a projection without a marker (search).
_LOST = """
if redis.call('EXISTS', KEYS[2]) == 1 then
  return 'being repaired: ' .. (redis.call('HGET', KEYS[2], 'reason') or 'its data was lost')
end
local generation = redis.call('GET', KEYS[1])
if not generation then return 'its live generation pointer is gone' end
if ARGV[1] ~= '' and redis.call('EXISTS', ARGV[1] .. generation .. ARGV[2]) == 0 then
  return 'generation ' .. generation .. ' has no marker'
end
return false
"""


def marker_around(keyspace: Keyspace) -> tuple[str, str]:
    """The live generation's marker key as (before, after) the generation's name."""
    before, after = keyspace.models("\0").built.split("\0")
    return before, after


async def model_lost(redis: Redis, keyspace: Keyspace, projection: str) -> str | None:
    """Why `projection`'s read model in Redis is not whole now, or None while it is.

    One round trip; for the slow paths (a reader whose consistency token was not
    reached), not for every read. The search model's alias is checked by the
    search itself (a missing alias is `IndexNotFound`).
    """
    before, after = marker_around(keyspace) if projection == "redis" else ("", "")
    script = redis.register_script(_LOST)
    found = await script(keys=[keyspace.live(projection), keyspace.repair(projection)], args=[before, after])
    if found is None:
        return None
    return found.decode() if isinstance(found, bytes) else str(found)
