"""Lost read models repair themselves: noticed, rebuilt from the event store, positions restored.

`lost` checks each model's marks (`readmodels.rebuilding.model_lost`, the search alias)
every `interval` seconds and at once when a write finds a model missing; a Redis that
lost its data costs both projections. The repair marks the projection `repairing`,
records why in `rm:<projection>:repair` (readers answer 503 meanwhile), runs the usual
rebuild (`rebuild.py`), and is retried with backoff when it fails
(`docs/projector.md`, "Lost read models repair themselves").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime

from readmodels.rebuilding import model_lost

from projector_service.bootstrap import Projector
from projector_service.projections import SearchProjection
from projector_service.rebuild import RebuildRunning, rebuild
from projector_service.runner import TRANSIENT

__all__ = ["Repairer"]

log = logging.getLogger(__name__)

MAX_RETRY_SECONDS = 30.0
# A store down mid-rebuild, or a rebuild that gave up (its head did not become readable).
RETRIED: tuple[type[BaseException], ...] = (*TRANSIENT, RuntimeError)


class Repairer:
    """Watches the read models of one process's projections and rebuilds those that lost their data."""

    def __init__(
        self, projector: Projector, *, interval: float = 1.0, grace: float = 5.0, page_size: int = 1000
    ) -> None:
        self.projector = projector
        self.interval = interval
        self.grace = grace
        self.page_size = page_size
        self.repairing: dict[str, str] = {}  # projection -> why, while its model is not whole
        self.repaired: dict[str, int] = dict.fromkeys(projector.names, 0)
        self._tasks: dict[str, asyncio.Task[None]] = {}

    async def lost(self, name: str) -> str | None:
        """Why projection `name`'s live model is not whole, or None while it is."""
        projector = self.projector
        reason = await model_lost(projector.redis, projector.keyspace, name)
        projection = projector.projection(name)
        if reason is None and isinstance(projection, SearchProjection):
            alias = projection.alias
            if not await projector.search.alias_targets(alias):
                reason = f"the alias {alias} is gone (its index was deleted)"
        return reason

    async def _live(self, name: str) -> str:
        value = await self.projector.redis.get(self.projector.keyspace.live(name))
        return value.decode() if isinstance(value, bytes) else (value or "")

    async def check(self) -> None:
        """One round: start a repair for each projection found lost; forget those whole again."""
        for name in self.projector.names:
            if name in self._tasks and not self._tasks[name].done():
                continue  # its repair is running
            try:
                # The pointer first: should a swap come between, the generation marked lost
                # below is the one swapped out, never the one swapped in.
                live = await self._live(name)
                reason = await self.lost(name)
            except TRANSIENT as error:
                log.debug("repair check of %s: store unavailable: %s", name, error)
                continue
            if reason is None:
                self.repairing.pop(name, None)
                self.projector.signals.lost.pop(name, None)
                continue
            self.repairing[name] = reason
            if live:
                self.projector.signals.lost[name] = live
            self._tasks[name] = asyncio.create_task(self._repair(name, reason), name=f"repair-{name}")

    async def run(self) -> None:
        """Check every `interval` seconds, and at once when a write finds a model missing."""
        noticed = self.projector.signals.noticed
        noticed.set()  # a first check right away
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.interval):
                        await noticed.wait()
                noticed.clear()
                await self.check()
        finally:
            for task in self._tasks.values():
                task.cancel()
            for task in self._tasks.values():
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _repair(self, name: str, reason: str) -> None:
        projector = self.projector
        key = projector.keyspace.repair(name)
        log.warning("%s read model lost (%s): rebuilding it from the event store", name, reason)
        delay = self.interval
        while True:
            try:
                await projector.redis.hset(
                    key, mapping={"reason": reason, "since": datetime.now(UTC).isoformat()}
                )
                result = await rebuild(projector, name, page_size=self.page_size, grace=self.grace)
                await projector.redis.delete(key)
            except RebuildRunning as running:
                # Someone else's rebuild (another instance, the command line) makes it whole; the
                # next checks see when it has.
                log.info("%s: %s; waiting for it", name, running)
                with contextlib.suppress(*TRANSIENT):
                    await projector.redis.delete(key)  # that rebuild is no repair left unfinished
                return
            except RETRIED as error:
                log.warning("%s: repair failed, trying again in %.0f s: %r", name, delay, error)
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_RETRY_SECONDS)
                continue
            except Exception:
                # Unexpected, and still no reason to leave the model lost: say so loudly (readiness
                # keeps naming the model) and try again.
                log.exception("%s: repair failed unexpectedly, trying again in %.0f s", name, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_RETRY_SECONDS)
                continue
            self.repaired[name] += 1
            log.warning(
                "%s read model repaired: generation %s, %d events read in %.1f s",
                name,
                result.generation,
                result.read,
                result.seconds,
            )
            projector.signals.noticed.set()  # check it at once: whole again, or lost meanwhile
            return
