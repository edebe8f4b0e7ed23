"""A poison event is dead-lettered, the projector moves on, and a replay after the fix applies it once."""

from __future__ import annotations

import uuid

from eventstore import EventRegistry, NewEvent, PostgresEventStore
from fulfilment.events import ALL_EVENTS, OrderConfirmed, OrderPlaced, event_name
from projector_service.bootstrap import Projector
from projector_service.deadletters import read_dead_letters
from projector_service.replay import replay_dead_letters
from projector_service.service import ProjectorService
from projector_service.settings import ProjectorSettings
from relay_service.publisher import Relay

from services.projector.tests.conftest import line, log_events
from services.projector.tests.test_consuming import reached, relay, running

_ = relay  # the fixture


def registry_without_confirmations() -> EventRegistry:
    """A projector build that does not know OrderConfirmed yet: the bug to fix."""
    registry = EventRegistry()
    for event_type in ALL_EVENTS:
        if event_type is not OrderConfirmed:
            registry.register(event_type, name=event_name(event_type), version=event_type.schema_version)
    return registry


async def test_a_poison_event_is_dead_lettered_then_replayed_after_the_fix_and_applied_once(
    settings: ProjectorSettings, projector: Projector, store: PostgresEventStore, relay: Relay
) -> None:
    order_id, other = uuid.uuid4(), uuid.uuid4()
    for oid in (order_id, other):
        placed = OrderPlaced(order_id=oid, customer_id="ann", lines=(line("mug"),), currency="EUR", total=250)
        await store.append(f"order-{oid}", [NewEvent(data=placed)])
    await store.append(f"order-{order_id}", [NewEvent(data=OrderConfirmed(order_id=order_id))])

    buggy = await Projector.open(settings, registry_without_confirmations())
    try:
        async with running(ProjectorService(buggy)) as service:
            await reached(projector, (await log_events(store))[-1].position)  # moved on past the poison
            assert {name: s.dead_letters for name, s in service.statuses.items()} == {"redis": 1, "search": 1}
    finally:
        await buggy.close()

    letters = await read_dead_letters(settings.kafka_bootstrap_servers, settings.projector_dead_letter_topic)
    assert sorted(letter.projection for letter in letters) == ["redis", "search"]
    assert all(letter.event_type == "OrderConfirmed" for letter in letters)
    assert all("OrderConfirmed" in letter.error for letter in letters)
    assert all(letter.stream_id == f"order-{order_id}" for letter in letters)
    keys = projector.keyspace.models("g0")
    assert await projector.redis.hget(keys.order(str(order_id)), "status") == b"pending"

    outcomes = await replay_dead_letters(projector, letters)  # the fixed build
    assert [o.outcome for o in outcomes] == ["applied", "applied"]
    again = await replay_dead_letters(projector, letters)
    assert [o.outcome for o in again] == ["skipped", "skipped"]
    forced = await replay_dead_letters(projector, letters, again=True)  # and even when forced: once
    assert [o.outcome for o in forced] == ["applied", "applied"]

    assert await projector.redis.hget(keys.order(str(order_id)), "status") == b"confirmed"
    counts = await projector.redis.hgetall(keys.order_counts)
    assert {k.decode(): int(v) for k, v in counts.items()} == {"pending": 1, "confirmed": 1}
    search = projector.projections["search"]
    document = await projector.search.get(search.alias, str(order_id))  # type: ignore[attr-defined]
    assert document is not None
    assert (document["status"], document["version"]) == ("confirmed", 1)


async def test_replaying_a_stream_or_the_log_restores_what_a_read_model_lost(
    projector: Projector, store: PostgresEventStore
) -> None:
    from eventstore import LogPosition
    from projector_service.replay import replay_log, replay_stream

    from services.projector.tests.conftest import write_scenario

    ids = await write_scenario(store, orders=4)
    events = await log_events(store)
    for projection in projector.projections.values():
        assert await projection.apply(events, ["g0"]) == {}
    keys = projector.keyspace.models("g0")
    before = await projector.redis.hgetall(keys.order(str(ids[1])))
    await projector.redis.delete(keys.order(str(ids[1])))  # an operator's mistake

    assert await replay_stream(projector, "redis", f"order-{ids[1]}") == 2
    assert await projector.redis.hgetall(keys.order(str(ids[1]))) == before
    counts = await projector.redis.hgetall(keys.order_counts)

    progress = [done async for done in replay_log(projector, "redis", LogPosition.START, page_size=5)]
    assert progress[-1] == len(events)
    assert await projector.redis.hgetall(keys.order_counts) == counts  # a replay applies nothing twice
