"""Aggregates as decide/evolve functions, loaded and executed against both stores."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec
import pytest
from eventstore import (
    ConcurrencyError,
    Decider,
    EventRegistry,
    EventStore,
    Loaded,
    Metadata,
    NewEvent,
    StateCache,
    StreamTruncated,
    execute,
    load,
    load_many,
)


class Deposited(msgspec.Struct, frozen=True):
    amount: int


class Withdrawn(msgspec.Struct, frozen=True):
    amount: int


type AccountEvent = Deposited | Withdrawn


class Account(msgspec.Struct, frozen=True):
    balance: int = 0
    events_applied: int = 0


class Deposit(msgspec.Struct, frozen=True):
    amount: int


class Withdraw(msgspec.Struct, frozen=True):
    amount: int


class InsufficientFunds(Exception):
    pass


def decide(state: Account, command: Deposit | Withdraw) -> Sequence[AccountEvent]:
    match command:
        case Deposit(amount=0):
            return []
        case Deposit(amount=amount):
            return [Deposited(amount)]
        case Withdraw(amount=amount) if amount > state.balance:
            raise InsufficientFunds(f"balance {state.balance} < {amount}")
        case Withdraw(amount=amount):
            return [Withdrawn(amount)]
    raise AssertionError(command)


def evolve(state: Account, event: AccountEvent) -> Account:
    match event:
        case Deposited(amount=amount):
            return Account(state.balance + amount, state.events_applied + 1)
        case Withdrawn(amount=amount):
            return Account(state.balance - amount, state.events_applied + 1)
    raise AssertionError(event)


account = Decider(initial_state=Account(), decide=decide, evolve=evolve)
snapshotting_account = Decider(initial_state=Account(), decide=decide, evolve=evolve, snapshot_every=3)


@pytest.fixture
def registry() -> EventRegistry:
    registry = EventRegistry()
    registry.register(Deposited, name="deposited")
    registry.register(Withdrawn, name="withdrawn")
    return registry


class CompetingWriter:
    """A store that lets another writer append to the stream just before our first appends."""

    def __init__(self, store: EventStore, times: int = 1) -> None:
        self.store = store
        self.times = times
        self.attempts = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    async def append(
        self, stream_id: str, events: Sequence[Any], expected_version: Any = None, **kw: Any
    ) -> Any:
        self.attempts += 1
        if self.attempts <= self.times:
            await self.store.append(stream_id, [Deposited(1000)])
        return await self.store.append(stream_id, events, expected_version, **kw)


def test_the_decider_is_plain_functions_without_a_store() -> None:
    state = account.fold(account.initial_state, [Deposited(10), Withdrawn(3)])

    assert state == Account(7, 2)
    assert account.decide(state, Withdraw(5)) == [Withdrawn(5)]
    with pytest.raises(InsufficientFunds):
        account.decide(state, Withdraw(50))


async def test_execute_appends_what_the_decider_decides(store: EventStore) -> None:
    metadata = Metadata(correlation_id="c-1", actor="user:1")

    first = await execute(store, account, "account-1", Deposit(10), metadata=metadata)
    second = await execute(store, account, "account-1", Withdraw(4))

    assert (first.version, second.version) == (0, 1)
    events = await store.read_stream("account-1")
    assert [e.data for e in events] == [Deposited(10), Withdrawn(4)]
    assert events[0].metadata == metadata
    loaded = await load(store, account, "account-1")
    assert (loaded.state, loaded.version, loaded.position) == (Account(6, 2), 1, second.position)
    assert second.positions == [second.position]
    assert second.events == [Withdrawn(4)]


async def test_loading_a_new_stream_gives_the_initial_state_at_version_minus_one(store: EventStore) -> None:
    assert await load(store, account, "account-new") == Loaded(Account(), -1, None)


async def test_a_command_that_decides_nothing_appends_nothing_and_says_where_the_stream_stands(
    store: EventStore,
) -> None:
    first = await execute(store, account, "account-1", Deposit(5))

    result = await execute(store, account, "account-1", Deposit(0))

    assert (result.version, result.positions, result.events) == (0, [], [])
    assert result.position == first.position is not None


async def test_domain_errors_from_decide_propagate_and_append_nothing(store: EventStore) -> None:
    with pytest.raises(InsufficientFunds):
        await execute(store, account, "account-1", Withdraw(1))

    assert await store.stream_version("account-1") == -1


async def test_execute_retries_a_lost_race_and_decides_on_the_fresh_state(store: EventStore) -> None:
    await execute(store, account, "account-1", Deposit(10))
    racing = CompetingWriter(store)

    result = await execute(racing, account, "account-1", Withdraw(5))  # type: ignore[arg-type]

    assert racing.attempts == 2
    assert result.version == 2
    events = await store.read_stream("account-1")
    assert [e.data for e in events] == [Deposited(10), Deposited(1000), Withdrawn(5)]


async def test_execute_gives_up_after_max_attempts(store: EventStore) -> None:
    racing = CompetingWriter(store, times=10)

    with pytest.raises(ConcurrencyError):
        await execute(racing, account, "account-1", Deposit(1), max_attempts=3)  # type: ignore[arg-type]

    assert racing.attempts == 3


async def test_an_explicit_expected_version_is_never_retried(store: EventStore) -> None:
    await execute(store, account, "account-1", Deposit(10))
    await execute(store, account, "account-1", Deposit(10))

    with pytest.raises(ConcurrencyError) as raised:
        await execute(store, account, "account-1", Deposit(1), expected_version=0)
    racing = CompetingWriter(store)
    with pytest.raises(ConcurrencyError):
        await execute(racing, account, "account-1", Deposit(1), expected_version=1)  # type: ignore[arg-type]

    assert (raised.value.expected, raised.value.actual) == (0, 1)
    assert racing.attempts == 1


async def test_snapshots_are_saved_every_n_events_and_used_to_load(store: EventStore) -> None:
    for _ in range(4):
        await execute(store, snapshotting_account, "account-1", Deposit(5))

    snapshot = await store.load_snapshot("account-1", Account)
    assert snapshot == (2, Account(15, 3))

    # Loading replays only what came after the snapshot: one event, not four.
    await store.truncate_before("account-1", 3)
    assert await load(store, snapshotting_account, "account-1") == Loaded(
        Account(20, 4), 3, (await store.read_stream("account-1"))[-1].position
    )


async def test_a_batch_that_crosses_the_boundary_snapshots_the_state_after_it(store: EventStore) -> None:
    batch = Decider(
        initial_state=Account(),
        decide=lambda state, amounts: [Deposited(a) for a in amounts],
        evolve=evolve,
        snapshot_every=3,
    )

    await execute(store, batch, "account-1", [1, 2, 3, 4])

    assert await store.load_snapshot("account-1", Account) == (3, Account(10, 4))


async def test_loading_refuses_a_stream_truncated_past_its_snapshot(store: EventStore) -> None:
    for _ in range(3):
        await execute(store, account, "account-1", Deposit(5))
    await store.truncate_before("account-1", 2)

    with pytest.raises(StreamTruncated) as raised:
        await load(store, account, "account-1")

    assert (raised.value.needed_from, raised.value.available_from) == (0, 2)


async def test_loading_refuses_a_stream_whose_events_were_all_truncated(store: EventStore) -> None:
    await execute(store, account, "account-1", Deposit(5))
    await store.truncate_before("account-1", 1)

    with pytest.raises(StreamTruncated):
        await load(store, account, "account-1")


class CreatorBetweenReads:
    """A store where another writer creates the stream right after our first read found it empty."""

    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.created = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    async def read_stream(self, stream_id: str, from_version: int = 0) -> Any:
        events = await self.store.read_stream(stream_id, from_version)
        if not events and not self.created:
            self.created = True
            await self.store.append(stream_id, [Deposited(7)], -1)
        return events


async def test_loading_a_stream_created_between_its_reads_gives_the_created_stream(store: EventStore) -> None:
    racing = CreatorBetweenReads(store)

    loaded = await load(racing, account, "account-1")  # type: ignore[arg-type]

    assert racing.created
    assert (loaded.state.balance, loaded.version) == (7, 0)


async def test_a_command_racing_the_streams_creation_is_decided_on_the_created_stream(
    store: EventStore,
) -> None:
    racing = CreatorBetweenReads(store)

    result = await execute(racing, account, "account-1", Withdraw(5))  # type: ignore[arg-type]

    assert result.version == 1
    assert [e.data for e in await store.read_stream("account-1")] == [Deposited(7), Withdrawn(5)]


async def test_a_snapshot_of_an_older_state_shape_is_ignored_and_the_stream_replayed(
    store: EventStore,
) -> None:
    class OldShape(msgspec.Struct, frozen=True):
        balance: str

    await store.append("account-1", [NewEvent(data=Deposited(7))])
    await store.save_snapshot("account-1", 0, OldShape("seven"))

    loaded = await load(store, snapshotting_account, "account-1")
    assert (loaded.state, loaded.version) == (Account(7, 1), 0)


async def test_a_snapshot_at_the_head_still_gives_the_heads_position_in_one_read(store: EventStore) -> None:
    for _ in range(3):
        last = await execute(store, snapshotting_account, "account-1", Deposit(5))

    loaded = await load(store, snapshotting_account, "account-1")

    assert await store.load_snapshot("account-1", Account) == (2, Account(15, 3))
    assert loaded == Loaded(Account(15, 3), 2, last.position)


async def test_a_new_stream_is_decided_without_loading_and_refused_if_it_exists(store: EventStore) -> None:
    created = await execute(store, account, "account-1", Deposit(5), new_stream=True)

    with pytest.raises(ConcurrencyError) as raised:
        await execute(store, account, "account-1", Deposit(5), new_stream=True)

    assert (created.version, raised.value.actual) == (0, 0)
    assert [e.data for e in await store.read_stream("account-1")] == [Deposited(5)]


def test_a_decider_that_snapshots_needs_a_struct_state() -> None:
    with pytest.raises(TypeError, match="state_type"):
        Decider(initial_state=None, decide=decide, evolve=evolve, snapshot_every=3)

    Decider(initial_state=None, decide=decide, evolve=evolve, snapshot_every=3, state_type=Account)


async def test_a_snapshotting_decider_with_a_none_state_after_its_events_skips_the_snapshot(
    store: EventStore,
) -> None:
    forgetful = Decider[Account | None, Deposit | Withdraw, AccountEvent](
        initial_state=None,
        decide=lambda state, command: [Deposited(1), Deposited(2), Deposited(3)],
        evolve=lambda state, event: None,
        snapshot_every=3,
        state_type=Account,
    )

    result = await execute(store, forgetful, "account-1", Deposit(6))

    assert result.version == 2
    assert await store.load_snapshot("account-1", Account) is None


class Stranger(Exception):
    pass


def only_small_withdrawals(state: Account, command: Deposit | Withdraw) -> None:
    if isinstance(command, Withdraw) and command.amount > 100:
        raise Stranger("not yours")


guarded_account = Decider(
    initial_state=Account(), decide=decide, evolve=evolve, authorize=only_small_withdrawals
)


async def test_authorize_refuses_before_the_expected_version_is_checked(store: EventStore) -> None:
    await execute(store, account, "account-1", Deposit(500))

    with pytest.raises(Stranger):
        await execute(store, guarded_account, "account-1", Withdraw(200), expected_version=5)
    with pytest.raises(ConcurrencyError):
        await execute(store, guarded_account, "account-1", Withdraw(20), expected_version=5)
    assert len(await store.read_stream("account-1")) == 1


# --- the state cache ---------------------------------------------------------------------------


class CountingReads:
    """A store that records where each stream read starts, and counts snapshot look-ups."""

    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.reads_from: list[int | None] = []
        self.many_reads: list[dict[str, int]] = []
        self.snapshot_lookups = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    async def read_stream(self, stream_id: str, from_version: int | None = 0, **kw: Any) -> Any:
        self.reads_from.append(from_version)
        return await self.store.read_stream(stream_id, from_version, **kw)

    async def read_streams(self, starts: dict[str, int]) -> Any:
        self.many_reads.append(dict(starts))
        return await self.store.read_streams(starts)

    async def load_snapshot(self, stream_id: str, state_type: Any) -> Any:
        self.snapshot_lookups += 1
        return await self.store.load_snapshot(stream_id, state_type)


async def test_a_cached_load_reads_only_what_came_after_and_sees_other_writers(store: EventStore) -> None:
    cache = StateCache()
    for _ in range(4):
        await execute(store, snapshotting_account, "account-1", Deposit(5), cache=cache)
    await store.append("account-1", [Deposited(100)])  # another process, without this cache
    counting = CountingReads(store)

    cached = await load(counting, snapshotting_account, "account-1", cache=cache)  # type: ignore[arg-type]

    assert cached == await load(store, snapshotting_account, "account-1")
    assert cached.state == Account(120, 5)
    assert (counting.reads_from, counting.snapshot_lookups) == ([4], 0)
    assert cache.get(snapshotting_account, "account-1") == cached


async def test_execute_caches_the_state_its_command_made(store: EventStore) -> None:
    cache = StateCache()

    executed = await execute(store, account, "account-1", Deposit(7), cache=cache)

    assert cache.get(account, "account-1") == Loaded(Account(7, 1), 0, executed.position)


async def test_a_lost_race_with_a_cache_is_decided_again_on_the_fresh_state(store: EventStore) -> None:
    cache = StateCache()
    await execute(store, account, "account-1", Deposit(10), cache=cache)

    await execute(CompetingWriter(store), account, "account-1", Deposit(5), cache=cache)  # type: ignore[arg-type]

    assert (await load(store, account, "account-1")).state == Account(1015, 3)
    cached = cache.get(account, "account-1")
    assert cached is not None
    assert (cached.state, cached.version) == (Account(1015, 3), 2)


async def test_execute_decides_on_a_cached_state_without_reading_the_stream(store: EventStore) -> None:
    cache = StateCache()
    await execute(store, account, "account-1", Deposit(10), cache=cache)
    counting = CountingReads(store)

    executed = await execute(counting, account, "account-1", Withdraw(4), cache=cache)  # type: ignore[arg-type]

    assert counting.reads_from == []  # the append's version check stood in for the read
    assert executed.events == [Withdrawn(4)]
    assert (await load(store, account, "account-1")).state == Account(6, 2)


async def test_a_stale_cached_state_is_never_the_answer(store: EventStore) -> None:
    cache = StateCache()
    await execute(store, account, "account-1", Deposit(10), cache=cache)
    await store.append("account-1", [Deposited(100)], 0)  # another process: the cache is behind
    counting = CountingReads(store)

    # Refused on the cached balance (10), allowed on the stream's (110): decided again on the stream.
    executed = await execute(counting, account, "account-1", Withdraw(50), cache=cache)  # type: ignore[arg-type]
    assert executed.events == [Withdrawn(50)]
    assert counting.reads_from == [1]

    await store.append("account-1", [Withdrawn(55)], 2)  # behind again; now the stream refuses
    with pytest.raises(InsufficientFunds):
        await execute(store, account, "account-1", Withdraw(10), cache=cache)
    assert (await load(store, account, "account-1")).state == Account(5, 4)


async def test_a_cached_load_of_a_truncated_stream_is_refused(store: EventStore) -> None:
    cache = StateCache()
    await execute(store, account, "account-1", Deposit(1), cache=cache)
    await store.append("account-1", [Deposited(1), Deposited(1)])
    await store.truncate_before("account-1", 2)

    with pytest.raises(StreamTruncated):
        await load(store, account, "account-1", cache=cache)


def test_the_cache_keeps_the_most_recently_used_streams_and_never_an_older_state() -> None:
    cache = StateCache(max_streams=2)
    cache.put(account, "a", Loaded(Account(1), 0, 1))
    cache.put(account, "b", Loaded(Account(2), 0, 2))
    assert cache.get(account, "a") is not None  # a is now the most recently used
    cache.put(account, "c", Loaded(Account(3), 0, 3))
    cache.put(account, "a", Loaded(Account(0), -1, None))  # older than what is cached

    assert cache.get(account, "b") is None
    assert cache.get(account, "a") == Loaded(Account(1), 0, 1)
    assert cache.get(snapshotting_account, "a") is None  # another decider's states are its own
    assert len(cache) == 2
    with pytest.raises(ValueError, match="max_streams"):
        StateCache(max_streams=0)


async def test_load_many_catches_up_the_cached_streams_in_one_read_and_loads_the_others(
    store: EventStore,
) -> None:
    cache = StateCache()
    await execute(store, account, "account-1", Deposit(1), cache=cache)
    await execute(store, account, "account-2", Deposit(2), cache=cache)
    await store.append("account-1", [Deposited(10)])  # another process
    await store.append("account-3", [Deposited(3)])  # never loaded here
    counting = CountingReads(store)

    loaded = await load_many(
        counting, account, ["account-1", "account-2", "account-3", "account-4"], cache=cache
    )  # type: ignore[arg-type]

    for stream_id in ("account-1", "account-2", "account-3", "account-4"):
        assert loaded[stream_id] == await load(store, account, stream_id)
    assert counting.reads_from == [0, 0]  # the two streams it had not cached ...
    assert counting.many_reads == [{"account-1": 1, "account-2": 1}]  # ... and the others in one call
    assert cache.get(account, "account-3") == loaded["account-3"]
    assert cache.get(account, "account-4") is None  # no stream: nothing to cache
