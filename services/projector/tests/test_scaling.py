"""Two projector processes in one consumer group per projection: replicas that split the partitions.

Each projection's group spreads the topics' partitions over the instances (so the
partition count bounds how many do work); a stream's events stay in one partition,
so in one instance, in order. While the group is settled every event is applied
by exactly one instance; a stopped instance's partitions move to the other, which
carries on from the committed offsets. The read models end equal to a clean
build of the store's log whatever the split.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from eventstore import PostgresEventStore
from projector_service.bootstrap import Projector
from projector_service.settings import ProjectorSettings
from relay_service.publisher import Relay
from testkit.harness import ServiceProcess, running_service

from services.projector.tests.conftest import log_events, write_scenario
from services.projector.tests.test_consuming import clean_models, live_models, reached, relay
from services.projector.tests.test_process import applied, environment, place_orders

pytestmark = pytest.mark.slow
_ = relay


async def totals(instances: Iterable[ServiceProcess], names: Iterable[str]) -> list[dict[str, int]]:
    """Each instance's applied_total per projection."""
    bodies: list[Any] = [(await instance.get("/status")).json() for instance in instances]
    return [{name: applied(body, name) for name in names} for body in bodies]


async def events_of(projector: Projector, store: PostgresEventStore, name: str, after: int) -> int:
    """How many events past position `after` the projection `name` reads."""
    categories = set(projector.projections[name].categories)
    return len(
        [e for e in await log_events(store) if e.position > after and e.stream_id.split("-")[0] in categories]
    )


async def test_two_instances_split_the_partitions_apply_each_event_once_and_take_over_a_stopped_ones(
    settings: ProjectorSettings, projector: Projector, store: PostgresEventStore, relay: Relay, tmp_path: Path
) -> None:
    env = environment(settings, PROJECTOR_BATCH_SIZE="50")
    names = list(projector.names)

    def start(name: str) -> contextlib.AbstractAsyncContextManager[ServiceProcess]:
        return running_service(
            "projector_service",
            env,
            log=tmp_path / f"{name}.log",
            port_variable="PROJECTOR_PORT",
            ready=False,
        )

    async with start("a") as a, start("b") as b:
        await asyncio.gather(a.ready(), b.ready())
        # Until both instances have applied something, the group may still be rebalancing, and a
        # rebalance hands a batch applied but not yet committed to the other instance again.
        for round_ in range(10):
            await write_scenario(store, orders=20, tag=str(round_))
            await reached(projector, (await log_events(store))[-1].position)
            if all(all(n > 0 for n in counts.values()) for counts in await totals((a, b), names)):
                break
        else:
            raise AssertionError(f"one instance never got a partition: {await totals((a, b), names)}")

        settled = (await log_events(store))[-1].position
        before = await totals((a, b), names)
        await place_orders(store, 200)
        await reached(projector, (await log_events(store))[-1].position)
        after = await totals((a, b), names)
        for name in names:
            shares = [after[i][name] - before[i][name] for i in range(2)]
            assert all(share > 0 for share in shares), (name, shares)
            assert sum(shares) == await events_of(projector, store, name, settled), (name, shares)

        # b stops; its partitions move to a, which applies everything written after.
        assert await b.stop(signal.SIGTERM) in {0, -signal.SIGTERM}
        stopped_at = (await log_events(store))[-1].position
        before = await totals((a,), names)
        await place_orders(store, 100)
        await reached(projector, (await log_events(store))[-1].position)
        after = await totals((a,), names)
        for name in names:
            written = await events_of(projector, store, name, stopped_at)
            assert after[0][name] - before[0][name] >= written, name
    assert await live_models(projector) == await clean_models(projector, store)
