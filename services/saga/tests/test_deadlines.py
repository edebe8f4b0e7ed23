"""Deadlines against real PostgreSQL, with the command service and the sandbox in-process.

Several orchestrators (each its own pool and owner name, as separate instances
would be) share one saga database; the sagas are started directly (no Kafka) and
wait for a provider that never answers.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter

import httpx
import pytest
from fulfilment import payment_stream
from saga_service.orchestrator import Orchestrator
from saga_service.saga import Phase

from services.saga.tests.conftest import World

pytestmark = pytest.mark.slow


async def start_waiting_sagas(world: World, orchestrator: Orchestrator, count: int) -> list[uuid.UUID]:
    """Place `count` orders and drive each saga until it waits for the provider."""
    order_ids = []
    for _ in range(count):
        order_id = await world.place("kim", ("MUG", 1))
        await orchestrator.record(order_id, await world.begin(order_id))
        applied = await orchestrator.drive(order_id)
        assert applied.state is not None
        assert applied.state.phase is Phase.PAYING
        order_ids.append(order_id)
    return order_ids


async def wait_until_done(
    orchestrator: Orchestrator, order_ids: list[uuid.UUID], timeout: float = 60
) -> None:
    async with asyncio.timeout(timeout):
        while True:
            states = [(await orchestrator.streams.load(order_id)).state for order_id in order_ids]
            if all(state is not None and state.phase is Phase.DONE for state in states):
                return
            await asyncio.sleep(0.1)


async def test_two_instances_never_both_act_on_one_deadline(world: World) -> None:
    async with world.instance("a", payment_timeout=0.5) as a, world.instance("b", payment_timeout=0.5) as b:
        order_ids = await start_waiting_sagas(world, a, 24)
        loops = [
            asyncio.create_task(a.run_timers(poll=0.01, batch=2)),
            asyncio.create_task(b.run_timers(poll=0.01, batch=2)),
        ]
        try:
            await wait_until_done(a, order_ids)
        finally:
            for loop in loops:
                loop.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
        firers: Counter[str] = Counter()
        for order_id in order_ids:
            history = [event.event_type for event in await a.streams.read(order_id)]
            assert history.count("DeadlineFired") == 1, history
            assert history.count("CompensationStarted") == 1, history
            [deadline] = [timer for timer in await a.timers.of(order_id) if timer.kind == "payment"]
            assert deadline.fired_at is not None
            assert deadline.fired_by in ("a", "b")
            firers[deadline.fired_by] += 1
            assert [e.event_type for e in await world.store.read_stream(payment_stream(order_id))] == [
                "PaymentRequested",
                "PaymentVoided",
            ]
        assert sum(firers.values()) == len(order_ids)


async def test_deadlines_survive_the_instance_that_set_them(world: World) -> None:
    async with world.instance("gone", payment_timeout=0.3) as gone:
        [order_id] = await start_waiting_sagas(world, gone, 1)
    # The instance that set the deadline is gone (its pool closed); another one fires it.
    async with world.instance("next", payment_timeout=0.3) as successor:
        loop = asyncio.create_task(successor.run_timers(poll=0.01, batch=10))
        try:
            await wait_until_done(successor, [order_id])
        finally:
            loop.cancel()
            await asyncio.gather(loop, return_exceptions=True)
        state = (await successor.streams.load(order_id)).state
        assert state is not None
        assert state.reason == "payment not answered before its deadline"
        [deadline] = [timer for timer in await successor.timers.of(order_id) if timer.kind == "payment"]
        assert deadline.fired_by == "next"


async def test_a_claimed_timer_is_not_claimed_again_until_its_lease_runs_out(world: World) -> None:
    async with world.instance("a", payment_timeout=0.01) as a, world.instance("b", payment_timeout=0.01) as b:
        [order_id] = await start_waiting_sagas(world, a, 1)
        await asyncio.sleep(0.05)
        claimed = await a.timers.claim(10)
        assert [timer.saga_id for timer in claimed] == [order_id]
        assert await b.timers.claim(10) == []
        # The claimer "dies" without firing: once the lease is over, another instance claims it.
        await a.streams.pool.execute("UPDATE saga.timers SET claimed_until = now() - interval '1 second'")
        assert [timer.saga_id for timer in await b.timers.claim(10)] == [order_id]


async def test_a_deadline_fired_while_the_command_service_is_down_is_carried_on_later(world: World) -> None:
    async with world.instance("a", payment_timeout=0.2) as healthy:
        [order_id] = await start_waiting_sagas(world, healthy, 1)
    unreachable = httpx.AsyncClient(base_url="http://127.0.0.1:9", timeout=1)
    async with world.instance("cut-off", payment_timeout=0.2, command=unreachable) as cut_off:
        loop = asyncio.create_task(cut_off.run_timers(poll=0.01, batch=10))
        try:
            async with asyncio.timeout(30):
                while True:
                    timers = {timer.kind: timer for timer in await cut_off.timers.of(order_id)}
                    if "wake" in timers and timers["wake"].attempts >= 1:
                        break
                    await asyncio.sleep(0.05)
        finally:
            loop.cancel()
            await asyncio.gather(loop, return_exceptions=True)
        state = (await cut_off.streams.load(order_id)).state
        assert state is not None
        assert state.phase is Phase.COMPENSATING  # the deadline fired; nothing could be undone yet
        assert timers["payment"].fired_by == "cut-off"
    await unreachable.aclose()
    async with world.instance("b", payment_timeout=0.2) as recovered:
        loop = asyncio.create_task(recovered.run_timers(poll=0.01, batch=10))
        try:
            await wait_until_done(recovered, [order_id])
        finally:
            loop.cancel()
            await asyncio.gather(loop, return_exceptions=True)
        history = [event.event_type for event in await recovered.streams.read(order_id)]
        assert history.count("DeadlineFired") == 1
        state = (await recovered.streams.load(order_id)).state
        assert state is not None
        assert state.outcome is not None
        assert state.outcome.value == "rejected"
