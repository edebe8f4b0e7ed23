"""The event store contract: every test runs against the in-memory and the PostgreSQL store."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import msgspec
import pytest
from eventstore import (
    ANY,
    NO_STREAM,
    STREAM_EXISTS,
    ConcurrencyError,
    DuplicateEventId,
    EventDecodeError,
    EventRegistry,
    EventStore,
    EventTooLarge,
    InvalidExpectedVersion,
    InvalidStreamId,
    LogPosition,
    Metadata,
    NewEvent,
    RecordedEvent,
    StreamDeleted,
    UnknownEventType,
    UnstorableEvent,
)

type LogReader = Callable[..., Awaitable[list[RecordedEvent]]]


class ItemAdded(msgspec.Struct, frozen=True):
    sku: str
    quantity: int = 1


class ItemRemoved(msgspec.Struct, frozen=True):
    sku: str


class NotRegistered(msgspec.Struct, frozen=True):
    value: int


class CartState(msgspec.Struct, frozen=True):
    items: dict[str, int]


@pytest.fixture
def registry() -> EventRegistry:
    registry = EventRegistry()
    registry.register(ItemAdded, name="item_added")
    registry.register(ItemRemoved, name="item_removed")
    return registry


def added(*skus: str) -> list[ItemAdded]:
    return [ItemAdded(sku) for sku in skus]


async def take(
    subscription: AsyncIterator[RecordedEvent], count: int, timeout: float = 5
) -> list[RecordedEvent]:
    received: list[RecordedEvent] = []
    async with asyncio.timeout(timeout):
        async for event in subscription:
            received.append(event)
            if len(received) == count:
                break
    return received


# --- appending and versions ---------------------------------------------------------------


async def test_the_first_append_to_a_new_stream_is_version_zero(store: EventStore) -> None:
    result = await store.append("cart-1", added("a"), NO_STREAM)

    assert result.stream_id == "cart-1"
    assert result.version == 0
    assert await store.stream_version("cart-1") == 0


async def test_an_append_returns_the_new_version_and_increasing_positions(store: EventStore) -> None:
    first = await store.append("cart-1", added("a", "b"), NO_STREAM)
    second = await store.append("cart-1", added("c", "d", "e"), 1)

    assert first.version == 1
    assert second.version == 4
    positions = first.positions + second.positions
    assert len(positions) == 5
    assert positions == sorted(positions)
    assert len(set(positions)) == 5


async def test_several_events_are_appended_together_in_order(store: EventStore) -> None:
    await store.append("cart-1", [ItemAdded("a"), ItemRemoved("a"), ItemAdded("b", 3)])

    events = await store.read_stream("cart-1")

    assert [e.version for e in events] == [0, 1, 2]
    assert [e.data for e in events] == [ItemAdded("a"), ItemRemoved("a"), ItemAdded("b", 3)]
    assert [e.event_type for e in events] == ["item_added", "item_removed", "item_added"]
    assert len({e.transaction_id for e in events}) == 1


async def test_no_stream_fails_when_the_stream_exists(store: EventStore) -> None:
    await store.append("cart-1", added("a"))

    with pytest.raises(ConcurrencyError) as raised:
        await store.append("cart-1", added("b"), NO_STREAM)

    assert (raised.value.stream_id, raised.value.expected, raised.value.actual) == ("cart-1", -1, 0)


async def test_stream_exists_fails_on_a_new_stream_and_succeeds_on_an_existing_one(store: EventStore) -> None:
    with pytest.raises(ConcurrencyError) as raised:
        await store.append("cart-1", added("a"), STREAM_EXISTS)
    assert raised.value.actual == -1

    await store.append("cart-1", added("a"), NO_STREAM)
    result = await store.append("cart-1", added("b"), STREAM_EXISTS)
    assert result.version == 1


async def test_an_exact_expected_version_fails_when_the_stream_moved_on(store: EventStore) -> None:
    await store.append("cart-1", added("a", "b", "c"))

    with pytest.raises(ConcurrencyError) as raised:
        await store.append("cart-1", added("d"), 1)

    assert (raised.value.expected, raised.value.actual) == (1, 2)
    assert await store.stream_version("cart-1") == 2


async def test_an_exact_expected_version_ahead_of_the_stream_fails(store: EventStore) -> None:
    with pytest.raises(ConcurrencyError) as raised:
        await store.append("cart-1", added("a"), 5)

    assert raised.value.actual == -1
    assert await store.read_stream("cart-1") == []


async def test_any_appends_whatever_the_version(store: EventStore) -> None:
    await store.append("cart-1", added("a"), ANY)
    result = await store.append("cart-1", added("b"), ANY)

    assert result.version == 1


async def test_retrying_an_append_with_the_same_event_ids_stores_them_once(store: EventStore) -> None:
    events = [NewEvent(data=ItemAdded("a")), NewEvent(data=ItemAdded("b"))]
    first = await store.append("cart-1", events, NO_STREAM)
    await store.append("cart-1", added("c"), 1)

    retried = await store.append("cart-1", events, NO_STREAM)

    assert retried == first
    assert [e.data.sku for e in await store.read_stream("cart-1")] == ["a", "b", "c"]  # type: ignore[attr-defined]


async def test_retrying_with_any_recognises_the_event_ids(store: EventStore) -> None:
    events = [NewEvent(data=ItemAdded("a")), NewEvent(data=ItemAdded("b"))]
    first = await store.append("cart-1", events, ANY)

    retried = await store.append("cart-1", events, ANY)

    assert retried == first
    assert await store.stream_version("cart-1") == 1


async def test_an_event_id_stored_in_another_stream_is_a_duplicate(store: EventStore) -> None:
    event = NewEvent(data=ItemAdded("a"))
    await store.append("cart-1", [event])

    for expected in (ANY, NO_STREAM):
        with pytest.raises(DuplicateEventId) as raised:
            await store.append("cart-2", [event], expected)
        assert event.event_id in raised.value.event_ids
    assert await store.stream_version("cart-2") == -1


async def test_an_event_id_stored_at_another_version_is_a_duplicate(store: EventStore) -> None:
    event = NewEvent(data=ItemAdded("a"))
    await store.append("cart-1", [event])

    with pytest.raises(DuplicateEventId):
        await store.append("cart-1", [event], 0)


async def test_an_event_id_repeated_within_one_append_is_a_duplicate(store: EventStore) -> None:
    event = NewEvent(data=ItemAdded("a"))

    with pytest.raises(DuplicateEventId):
        await store.append("cart-1", [event, event])

    assert await store.stream_version("cart-1") == -1


async def test_a_partly_repeated_append_is_a_conflict_not_a_retry(store: EventStore) -> None:
    known = NewEvent(data=ItemAdded("a"))
    await store.append("cart-1", [known, NewEvent(data=ItemAdded("b"))], NO_STREAM)

    with pytest.raises(ConcurrencyError):
        await store.append("cart-1", [known, NewEvent(data=ItemAdded("c"))], NO_STREAM)
    with pytest.raises(DuplicateEventId):
        await store.append("cart-1", [known, NewEvent(data=ItemAdded("c"))], ANY)


async def test_appending_nothing_only_checks_the_expected_version(store: EventStore) -> None:
    assert (await store.append("cart-1", [], NO_STREAM)).version == -1
    await store.append("cart-1", added("a"))

    result = await store.append("cart-1", [], 0)

    assert (result.version, result.positions) == (0, [])
    with pytest.raises(ConcurrencyError):
        await store.append("cart-1", [], NO_STREAM)


async def test_bare_structs_get_fresh_ids_and_empty_metadata(store: EventStore) -> None:
    await store.append("cart-1", added("a", "b"))

    first, second = await store.read_stream("cart-1")

    assert first.event_id != second.event_id
    assert first.metadata == Metadata()


async def test_event_ids_and_metadata_round_trip(store: EventStore) -> None:
    event_id = uuid.uuid4()
    metadata = Metadata(
        correlation_id="corr-1",
        causation_id="cause-1",
        traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        actor="user:42",
    )
    await store.append("cart-1", [NewEvent(data=ItemAdded("a"), event_id=event_id, metadata=metadata)])

    (event,) = await store.read_stream("cart-1")

    assert event.event_id == event_id
    assert event.metadata == metadata
    assert event.schema_version == 1
    assert event.recorded_at.tzinfo is not None


# --- bad input ---------------------------------------------------------------------------

INVALID_STREAM_IDS = [
    "",
    "ab",
    "cart",
    "cart-",
    "-123",
    "Cart-1",
    "1cart-1",
    "car t-1",
    "cart-1 2",
    "cart-\n1",
    "cart-\x00",
    "ca$rt-1",
    "cart-" + "x" * 200,
    123,
]


@pytest.mark.parametrize("stream_id", INVALID_STREAM_IDS)
async def test_invalid_stream_ids_are_refused_everywhere(store: EventStore, stream_id: Any) -> None:
    with pytest.raises(InvalidStreamId):
        await store.append(stream_id, added("a"))
    with pytest.raises(InvalidStreamId):
        await store.read_stream(stream_id)
    with pytest.raises(InvalidStreamId):
        await store.stream_version(stream_id)
    with pytest.raises(InvalidStreamId):
        await store.delete_stream(stream_id)


@pytest.mark.parametrize("expected", [-2, -100, True, "0", 1.0, None])
async def test_expected_versions_that_are_not_versions_are_refused(store: EventStore, expected: Any) -> None:
    with pytest.raises(InvalidExpectedVersion):
        await store.append("cart-1", added("a"), expected)

    assert await store.stream_version("cart-1") == -1


async def test_unregistered_event_types_are_refused_and_nothing_is_stored(store: EventStore) -> None:
    with pytest.raises(UnknownEventType) as raised:
        await store.append("cart-1", [ItemAdded("a"), NotRegistered(1)])

    assert "NotRegistered" in str(raised.value)
    assert await store.stream_version("cart-1") == -1


async def test_events_over_the_size_limit_are_refused(stores: Any, registry: EventRegistry) -> None:
    store = stores(registry, max_event_bytes=1000)
    await store.append("cart-1", [ItemAdded("x" * 900)])

    with pytest.raises(EventTooLarge) as raised:
        await store.append("cart-1", [ItemAdded("y"), ItemAdded("x" * 1000)])

    assert raised.value.limit == 1000
    assert raised.value.size > 1000
    assert await store.stream_version("cart-1") == 0


async def test_text_with_a_nul_character_is_refused_as_input_and_nothing_is_stored(store: EventStore) -> None:
    with pytest.raises(UnstorableEvent, match="NUL"):
        await store.append("cart-1", [ItemAdded("fine"), ItemAdded("bad\x00byte")])
    with pytest.raises(UnstorableEvent):
        await store.append("cart-1", [NewEvent(data=ItemAdded("x"), metadata=Metadata(actor="a\x00b"))])
    assert await store.stream_version("cart-1") == -1


async def test_the_default_size_limit_is_one_mebibyte(store: EventStore) -> None:
    with pytest.raises(EventTooLarge) as raised:
        await store.append("cart-1", [ItemAdded("x" * (1024 * 1024))])

    assert raised.value.limit == 1024 * 1024


async def test_reading_a_type_the_registry_no_longer_knows_raises_unknown_event_type(
    stores: Any, store: EventStore, read_log: LogReader
) -> None:
    await store.append("cart-1", added("a"))
    newer = stores(EventRegistry())

    with pytest.raises(UnknownEventType):
        await newer.read_stream("cart-1")
    with pytest.raises(UnknownEventType):
        await read_log(newer, 1)


async def test_an_undecodable_payload_raises_a_decode_error_naming_where_it_is(
    stores: Any, store: EventStore, read_log: LogReader
) -> None:
    result = await store.append("cart-1", added("a"))

    class Incompatible(msgspec.Struct, frozen=True):
        sku: int

    other = EventRegistry()
    other.register(Incompatible, name="item_added")
    reader = stores(other)

    with pytest.raises(EventDecodeError) as raised:
        await read_log(reader, 1)

    error = raised.value
    assert (error.event_type, error.stream_id) == ("item_added", "cart-1")
    assert error.log_position is not None
    assert error.log_position.position == result.positions[0]
    assert b"sku" in (error.data if isinstance(error.data, bytes) else error.data.encode())
    # A subscriber can dead-letter it and resume after it.
    assert await reader.read_all(error.log_position) == []


async def test_a_payload_from_a_newer_schema_version_is_refused(stores: Any, store: EventStore) -> None:
    newer = EventRegistry()
    newer.register(ItemAdded, name="item_added", version=3)
    await stores(newer).append("cart-1", added("a"))

    with pytest.raises(EventDecodeError, match="newer schema"):
        await store.read_stream("cart-1")


# --- reading streams -----------------------------------------------------------------------


async def test_read_stream_forward_from_a_version_with_a_limit(store: EventStore) -> None:
    await store.append("cart-1", added(*"abcdefg"))

    events = await store.read_stream("cart-1", 2, limit=3)

    assert [e.version for e in events] == [2, 3, 4]
    assert [e.data.sku for e in events] == ["c", "d", "e"]  # type: ignore[attr-defined]
    assert [e.version for e in await store.read_stream("cart-1", 5)] == [5, 6]
    assert await store.read_stream("cart-1", 7) == []


async def test_read_stream_backward_from_the_end_or_a_version(store: EventStore) -> None:
    await store.append("cart-1", added(*"abcdefg"))

    assert [e.version for e in await store.read_stream("cart-1", -1, backward=True, limit=3)] == [6, 5, 4]
    assert [e.version for e in await store.read_stream("cart-1", None, backward=True)] == [
        6,
        5,
        4,
        3,
        2,
        1,
        0,
    ]
    assert [e.version for e in await store.read_stream("cart-1", 2, backward=True)] == [2, 1, 0]
    assert [e.version for e in await store.read_stream("cart-1", 100, backward=True, limit=1)] == [6]


async def test_a_stream_that_never_existed_is_empty_at_version_minus_one(store: EventStore) -> None:
    assert await store.read_stream("cart-404") == []
    assert await store.read_stream("cart-404", backward=True) == []
    assert await store.stream_version("cart-404") == -1


async def test_reads_refuse_nonsense_ranges(store: EventStore) -> None:
    with pytest.raises(ValueError, match="limit"):
        await store.read_stream("cart-1", limit=0)
    with pytest.raises(ValueError, match="from_version"):
        await store.read_stream("cart-1", -1)
    with pytest.raises(ValueError, match="limit"):
        await store.read_all(limit=0)


async def test_streams_are_independent(store: EventStore) -> None:
    await store.append("cart-1", added("a"))
    await store.append("cart-2", added("b", "c"))

    assert await store.stream_version("cart-1") == 0
    assert [e.stream_id for e in await store.read_stream("cart-2")] == ["cart-2", "cart-2"]


# --- the global log ------------------------------------------------------------------------


async def test_read_all_returns_every_stream_in_log_order(store: EventStore, read_log: LogReader) -> None:
    await store.append("cart-1", added("a"))
    await store.append("order-1", added("b", "c"))
    await store.append("cart-1", added("d"))

    events = await read_log(store, 4)

    assert [(e.stream_id, e.version) for e in events] == [
        ("cart-1", 0),
        ("order-1", 0),
        ("order-1", 1),
        ("cart-1", 1),
    ]
    assert [e.log_position for e in events] == sorted(e.log_position for e in events)


async def test_read_all_continues_after_a_position(store: EventStore, read_log: LogReader) -> None:
    await store.append("cart-1", added(*"abcde"))
    everything = await read_log(store, 5)

    rest = await store.read_all(everything[1].log_position)

    assert rest == everything[2:]
    assert await store.read_all(everything[-1].log_position) == []


async def test_paging_through_read_all_sees_every_event_once(store: EventStore, read_log: LogReader) -> None:
    for i in range(7):
        await store.append(f"cart-{i % 3}", added(*(f"{i}{j}" for j in range(i % 4 + 1))))
    everything = await read_log(store, sum(i % 4 + 1 for i in range(7)))

    paged: list[RecordedEvent] = []
    position = LogPosition.START
    while page := await store.read_all(position, limit=3):
        assert len(page) <= 3
        paged.extend(page)
        position = page[-1].log_position

    assert paged == everything
    assert len(everything) == sum(i % 4 + 1 for i in range(7))


async def test_read_all_filters_by_category(store: EventStore, read_log: LogReader) -> None:
    await store.append("cart-1", added("a"))
    await store.append("order-1", added("b"))
    await store.append("invoice-1", added("c"))
    await store.append("cart-2", added("d"))
    await read_log(store, 4)

    carts = await store.read_all(categories=["cart"])
    carts_and_orders = await store.read_all(categories=["order", "cart"], limit=2)

    assert [e.stream_id for e in carts] == ["cart-1", "cart-2"]
    assert [e.stream_id for e in carts_and_orders] == ["cart-1", "order-1"]
    assert await store.read_all(categories=[]) == []
    assert await store.read_all(carts[0].log_position, categories=["cart"]) == carts[1:]


async def test_log_positions_order_by_transaction_then_position() -> None:
    assert LogPosition(5, 100) < LogPosition(6, 1)
    assert LogPosition(5, 1) < LogPosition(5, 2)
    assert LogPosition(3, 1) > LogPosition.START
    assert msgspec.json.decode(msgspec.json.encode(LogPosition(7, 8)), type=LogPosition) == LogPosition(7, 8)


# --- upcasting -------------------------------------------------------------------------------


class ItemAddedV1(msgspec.Struct, frozen=True):
    code: str


class ItemAddedV2(msgspec.Struct, frozen=True):
    sku: str


def v3_registry() -> EventRegistry:
    registry = EventRegistry()
    registry.register(ItemAdded, name="item_added", version=3)

    @registry.upcaster("item_added", 1)
    def rename_code_to_sku(payload: dict[str, Any]) -> dict[str, Any]:
        return {"sku": payload.pop("code"), **payload}

    @registry.upcaster("item_added", 2)
    def add_quantity(payload: dict[str, Any]) -> dict[str, Any]:
        return {**payload, "quantity": 1}

    return registry


async def test_older_schema_versions_are_upcast_to_the_current_type(stores: Any, read_log: LogReader) -> None:
    v1 = EventRegistry()
    v1.register(ItemAddedV1, name="item_added", version=1)
    v2 = EventRegistry()
    v2.register(ItemAddedV2, name="item_added", version=2)
    await stores(v1).append("cart-1", [ItemAddedV1("a")])
    await stores(v2).append("cart-1", [ItemAddedV2("b")])
    current = stores(v3_registry())
    await current.append("cart-1", [ItemAdded("c", 5)])

    events = await current.read_stream("cart-1")

    assert [e.data for e in events] == [ItemAdded("a", 1), ItemAdded("b", 1), ItemAdded("c", 5)]
    assert [e.schema_version for e in events] == [1, 2, 3]
    assert [e.data for e in await read_log(current, 3)] == [e.data for e in events]


async def test_a_missing_upcaster_step_is_a_decode_error(stores: Any) -> None:
    v1 = EventRegistry()
    v1.register(ItemAddedV1, name="item_added", version=1)
    await stores(v1).append("cart-1", [ItemAddedV1("a")])
    current = EventRegistry()
    current.register(ItemAdded, name="item_added", version=2)

    with pytest.raises(EventDecodeError, match="no upcaster"):
        await stores(current).read_stream("cart-1")


# --- subscriptions -------------------------------------------------------------------------


async def test_a_subscription_catches_up_then_receives_new_events(store: EventStore) -> None:
    await store.append("cart-1", added("a", "b"))

    async with contextlib.aclosing(store.subscribe_all(poll_interval=0.1)) as subscription:
        caught_up = await take(subscription, 2)
        await store.append("cart-2", added("c"))
        live = await take(subscription, 1)

    assert [e.data.sku for e in caught_up + live] == ["a", "b", "c"]  # type: ignore[attr-defined]


async def test_a_subscription_starts_after_the_given_position(store: EventStore, read_log: LogReader) -> None:
    await store.append("cart-1", added("a", "b", "c"))
    first = (await read_log(store, 1, limit=1))[0]

    async with contextlib.aclosing(
        store.subscribe_all(first.log_position, poll_interval=0.1)
    ) as subscription:
        events = await take(subscription, 2)

    assert [e.version for e in events] == [1, 2]


async def test_a_subscription_only_delivers_its_categories(store: EventStore) -> None:
    await store.append("order-1", added("a"))
    await store.append("cart-1", added("b"))

    async with contextlib.aclosing(
        store.subscribe_all(categories=["cart"], poll_interval=0.1)
    ) as subscription:
        first = await take(subscription, 1)
        await store.append("order-2", added("c"))
        await store.append("cart-2", added("d"))
        second = await take(subscription, 1)

    assert [e.stream_id for e in first + second] == ["cart-1", "cart-2"]


async def test_a_subscription_resumes_after_its_stored_checkpoint(store: EventStore) -> None:
    await store.append("cart-1", added("a", "b", "c"))
    async with contextlib.aclosing(
        store.subscribe_all(checkpoint="mailer", poll_interval=0.1)
    ) as subscription:
        first = await take(subscription, 2)
    await store.save_checkpoint("mailer", first[-1].log_position)

    async with contextlib.aclosing(
        store.subscribe_all(checkpoint="mailer", poll_interval=0.1)
    ) as subscription:
        resumed = await take(subscription, 1)

    assert resumed[0].version == 2


async def test_a_subscription_pages_through_more_events_than_its_batch_size(
    store: EventStore, read_log: LogReader
) -> None:
    for i in range(5):
        await store.append(f"cart-{i}", added(*(f"{i}-{j}" for j in range(5))))

    async with contextlib.aclosing(store.subscribe_all(batch_size=3, poll_interval=0.1)) as subscription:
        events = await take(subscription, 25)

    assert events == await read_log(store, 25)


# --- checkpoints -----------------------------------------------------------------------------


async def test_checkpoints_are_kept_by_name_and_overwritten(store: EventStore) -> None:
    assert await store.load_checkpoint("projector") is None

    await store.save_checkpoint("projector", LogPosition(10, 3))
    await store.save_checkpoint("relay", LogPosition(11, 4))
    await store.save_checkpoint("projector", LogPosition(12, 5))

    assert await store.load_checkpoint("projector") == LogPosition(12, 5)
    assert await store.load_checkpoint("relay") == LogPosition(11, 4)


# --- snapshots -------------------------------------------------------------------------------


async def test_a_snapshot_is_loaded_with_the_version_it_covers(store: EventStore) -> None:
    assert await store.load_snapshot("cart-1", CartState) is None

    await store.save_snapshot("cart-1", 4, CartState({"a": 2}))

    assert await store.load_snapshot("cart-1", CartState) == (4, CartState({"a": 2}))


async def test_an_older_snapshot_never_replaces_a_newer_one(store: EventStore) -> None:
    await store.save_snapshot("cart-1", 9, CartState({"new": 1}))
    await store.save_snapshot("cart-1", 4, CartState({"old": 1}))

    assert await store.load_snapshot("cart-1", CartState) == (9, CartState({"new": 1}))


async def test_a_snapshot_that_does_not_fit_the_type_is_a_decode_error(store: EventStore) -> None:
    await store.save_snapshot("cart-1", 1, CartState({"a": 1}))

    with pytest.raises(EventDecodeError):
        await store.load_snapshot("cart-1", ItemAdded)


async def test_several_streams_are_read_each_from_its_own_version_in_one_call(store: EventStore) -> None:
    await store.append("cart-1", added("a", "b", "c"))
    await store.append("cart-2", added("d"))

    found = await store.read_streams({"cart-1": 1, "cart-2": 1, "cart-3": 0})

    assert [(e.version, e.data) for e in found["cart-1"]] == [(1, ItemAdded("b")), (2, ItemAdded("c"))]
    assert found["cart-2"] == []  # nothing after its start
    assert found["cart-3"] == []  # no such stream
    assert await store.read_streams({}) == {}
    with pytest.raises(ValueError, match="from_version"):
        await store.read_streams({"cart-1": -1})


async def test_reading_several_streams_with_a_deleted_one_is_refused(store: EventStore) -> None:
    await store.append("cart-1", added("a"))
    await store.append("cart-2", added("b"))
    await store.delete_stream("cart-2", 0)

    with pytest.raises(StreamDeleted):
        await store.read_streams({"cart-1": 0, "cart-2": 0})


# --- deleting streams ------------------------------------------------------------------------


async def test_a_deleted_stream_can_be_neither_read_nor_appended_to(store: EventStore) -> None:
    await store.append("cart-1", added("a"))

    await store.delete_stream("cart-1", 0)

    with pytest.raises(StreamDeleted):
        await store.read_stream("cart-1")
    with pytest.raises(StreamDeleted):
        await store.read_stream("cart-1", backward=True)
    with pytest.raises(StreamDeleted):
        await store.stream_version("cart-1")
    with pytest.raises(StreamDeleted):
        await store.append("cart-1", added("b"))
    with pytest.raises(StreamDeleted):
        await store.append("cart-1", [])


async def test_a_deleted_stream_keeps_its_events_in_the_global_log(
    store: EventStore, read_log: LogReader
) -> None:
    await store.append("cart-1", added("a", "b"))
    await store.delete_stream("cart-1")

    assert [e.stream_id for e in await read_log(store, 2)] == ["cart-1", "cart-1"]


async def test_deleting_drops_the_streams_snapshot(store: EventStore) -> None:
    await store.append("cart-1", added("a"))
    await store.save_snapshot("cart-1", 0, CartState({"a": 1}))

    await store.delete_stream("cart-1")

    assert await store.load_snapshot("cart-1", CartState) is None


async def test_deleting_with_a_stale_expected_version_is_a_conflict(store: EventStore) -> None:
    await store.append("cart-1", added("a", "b"))

    with pytest.raises(ConcurrencyError) as raised:
        await store.delete_stream("cart-1", 0)

    assert raised.value.actual == 1
    assert await store.stream_version("cart-1") == 1


async def test_deleting_a_stream_that_never_existed_reserves_its_id(store: EventStore) -> None:
    with pytest.raises(ConcurrencyError):
        await store.delete_stream("cart-1", STREAM_EXISTS)

    await store.delete_stream("cart-1", NO_STREAM)

    with pytest.raises(StreamDeleted):
        await store.append("cart-1", added("a"), NO_STREAM)


async def test_deleting_twice_is_harmless(store: EventStore) -> None:
    await store.append("cart-1", added("a"))
    await store.delete_stream("cart-1")

    await store.delete_stream("cart-1")

    with pytest.raises(StreamDeleted):
        await store.stream_version("cart-1")


# --- truncating streams ----------------------------------------------------------------------


async def test_truncating_erases_earlier_events_from_the_stream_and_the_log(
    store: EventStore, read_log: LogReader
) -> None:
    await store.append("cart-1", added(*"abcde"))
    await store.append("cart-2", added("z"))

    await store.truncate_before("cart-1", 3)

    assert [e.version for e in await store.read_stream("cart-1")] == [3, 4]
    assert [e.version for e in await store.read_stream("cart-1", None, backward=True)] == [4, 3]
    remaining = await read_log(store, 3)
    assert [(e.stream_id, e.version) for e in remaining] == [("cart-1", 3), ("cart-1", 4), ("cart-2", 0)]
    assert await store.stream_version("cart-1") == 4


async def test_versions_continue_after_truncation(store: EventStore) -> None:
    await store.append("cart-1", added(*"abc"))
    await store.truncate_before("cart-1", 2)

    result = await store.append("cart-1", added("d"), 2)

    assert result.version == 3
    assert [e.version for e in await store.read_stream("cart-1")] == [2, 3]


async def test_truncating_past_the_end_erases_every_event_but_keeps_the_version(store: EventStore) -> None:
    await store.append("cart-1", added(*"abc"))

    await store.truncate_before("cart-1", 100)

    assert await store.read_stream("cart-1") == []
    assert await store.read_all() == []
    assert await store.stream_version("cart-1") == 2
    assert (await store.append("cart-1", added("d"), 2)).version == 3


async def test_truncation_never_brings_erased_events_back(store: EventStore) -> None:
    await store.append("cart-1", added(*"abcd"))
    await store.truncate_before("cart-1", 3)

    await store.truncate_before("cart-1", 1)

    assert [e.version for e in await store.read_stream("cart-1")] == [3]


async def test_truncating_a_missing_stream_does_nothing_and_negative_versions_are_refused(
    store: EventStore,
) -> None:
    await store.truncate_before("cart-404", 3)
    assert await store.stream_version("cart-404") == -1

    with pytest.raises(ValueError, match="version"):
        await store.truncate_before("cart-1", -1)
