"""The projection's position: every event at or below it is applied, whatever order they were applied in."""

from __future__ import annotations

import asyncio

from eventstore import NewEvent, PostgresEventStore
from fulfilment.events import PaymentRequested, StockReceived
from projector_service.bootstrap import Projector
from readmodels.keyspace import read_position, wait_for_position

from services.projector.tests.conftest import log_events, write_scenario
from services.projector.tests.factories import registered


async def test_the_position_stops_below_the_first_event_not_applied(
    projector: Projector, store: PostgresEventStore
) -> None:
    await write_scenario(store, orders=5)
    events = await log_events(store)
    tracker = projector.trackers["redis"]
    assert (await tracker.advance()).position < events[0].position
    hole = events[6]
    await tracker.mark_applied(e.position for e in events if e is not hole)
    round_ = await tracker.advance()
    assert round_.position == hole.position - 1
    assert round_.pending_events == 1
    await tracker.mark_applied([hole.position])
    assert (await tracker.advance()).position == events[-1].position
    assert await read_position(projector.redis, projector.keyspace, "redis") == events[-1].position


async def test_events_of_categories_the_projection_does_not_read_do_not_hold_it_back(
    projector: Projector, store: PostgresEventStore
) -> None:
    import uuid

    order_id = uuid.uuid4()
    await store.append("stock-cup", [NewEvent(data=registered("cup", "Cup"))])
    payment = await store.append(
        f"payment-{order_id}", [NewEvent(data=PaymentRequested(order_id=order_id, amount=5, currency="EUR"))]
    )
    last = await store.append("stock-cup", [NewEvent(data=StockReceived(sku="cup", quantity=1, on_hand=1))])
    tracker = projector.trackers["redis"]
    await tracker.mark_applied([1, last.positions[-1]])
    assert (await tracker.advance()).position == last.positions[-1]
    assert payment.positions[0] < last.positions[-1]


async def test_a_waiting_reader_wakes_when_the_position_reaches_its_token(
    projector: Projector, store: PostgresEventStore
) -> None:
    await write_scenario(store, orders=2)
    events = await log_events(store)
    token = events[-1].position
    tracker = projector.trackers["search"]
    waiting = asyncio.create_task(
        wait_for_position(projector.redis, projector.keyspace, "search", token, timeout=30)
    )
    await asyncio.sleep(0.2)
    assert not waiting.done()
    await tracker.mark_applied(e.position for e in events)
    await tracker.advance()
    assert await waiting is True
    assert not await wait_for_position(projector.redis, projector.keyspace, "search", token + 1, timeout=0.2)


async def test_a_position_taken_by_a_transaction_still_open_is_not_reported_as_reached(
    projector: Projector, store: PostgresEventStore
) -> None:
    # An append that took a lower position but has not committed: positions above it are
    # applied, yet "reached P" must wait for it.
    await store.append("stock-a", [NewEvent(data=registered("a", "A"))])
    connection = await projector.pool.acquire()
    transaction = connection.transaction()
    await transaction.start()
    try:
        slow = await store.append("stock-b", [NewEvent(data=registered("b", "B"))], connection=connection)
        fast = await store.append("stock-c", [NewEvent(data=registered("c", "C"))])
        assert slow.positions[0] < fast.positions[0]
        tracker = projector.trackers["redis"]
        await tracker.mark_applied([1, fast.positions[0]])
        assert (await tracker.advance()).position < slow.positions[0]
        await transaction.commit()
    finally:
        await projector.pool.release(connection)
    await tracker.mark_applied([slow.positions[0]])
    await tracker.advance()
    assert (await tracker.advance()).position == fast.positions[0]


async def test_marks_of_redelivered_old_batches_do_not_pile_up(
    projector: Projector, store: PostgresEventStore
) -> None:
    await write_scenario(store, orders=3)
    events = await log_events(store)
    tracker = projector.trackers["redis"]
    await tracker.mark_applied(e.position for e in events)
    reached = (await tracker.advance()).position
    assert reached == events[-1].position
    await tracker.mark_applied(e.position for e in events[:5])  # a batch delivered again
    assert (await tracker.advance()).position == reached
    assert await projector.redis.zcard(projector.keyspace.applied("redis")) == 0
