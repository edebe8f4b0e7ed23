"""A Kafka of the test's own, to stop and start again, and waiting for a readiness check to turn."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

from tests.e2e.test_fault_run import ROOT, OwnServers

__all__ = ["OwnKafka", "own_kafka", "turns"]


class OwnKafka(OwnServers):
    async def stop(self) -> None:
        """Stop Kafka as an operator would (SIGTERM, a clean shutdown)."""
        await asyncio.to_thread(self._run, "down", "kafka")


@contextlib.asynccontextmanager
async def own_kafka() -> AsyncIterator[OwnKafka]:
    """Kafka run by the local stack's CLI on a port offset, in a folder of its own (see test_fault_run)."""
    folder = ROOT / ".devstack" / "faults" / uuid.uuid4().hex[:8]
    servers = OwnKafka(folder)
    try:
        await servers.up("kafka")
        yield servers
    finally:
        await servers.down()
        shutil.rmtree(folder, ignore_errors=True)


async def turns(check: Callable[[], Awaitable[str | None]], *, ready: bool, timeout: float) -> str | None:
    """Poll `check` until it says ready (None) or not ready (a reason), as asked; returns its answer."""
    last: str | None = "never asked"
    try:
        async with asyncio.timeout(timeout):
            while True:
                last = await check()
                if (last is None) == ready:
                    return last
                await asyncio.sleep(0.5)
    except TimeoutError:
        raise AssertionError(f"still {'not ' if ready else ''}ready after {timeout} s: {last}") from None
