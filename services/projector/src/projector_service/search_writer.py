"""Applying the search projection to one or more order indexes, in batches.

Per batch and index: one multi-get, the pure `evolve_document` per event, one bulk
write with the stream version as external version; a version conflict is success and
gaps are filled from the store. Remembered documents (an LRU per index) save the
multi-get when they are exactly one version behind. Product names come from Redis, else
the store; a late registration fills earlier orders' lines in (`docs/projector.md`).
"""

from __future__ import annotations

from collections import OrderedDict, defaultdict
from collections.abc import Iterable, Sequence
from typing import Literal

import msgspec
from eventstore import EventStore
from fulfilment.events import ProductRegistered
from readmodels.keyspace import Keyspace
from readmodels.orders import OrderDocument
from readmodels.search import BulkFailed, BulkOutcome, BulkWrite, SearchClient, SearchUnavailable
from redis.asyncio import Redis

from projector_service.documents import OutOfOrder, evolve_document, skus_of, with_names
from projector_service.events import ProjectedEvent
from projector_service.history import StreamHistory

__all__ = ["SearchOrderWriter"]


class SearchOrderWriter:
    """Applies events to the order documents of the given indexes."""

    def __init__(
        self,
        search: SearchClient,
        redis: Redis,
        keyspace: Keyspace,
        store: EventStore,
        history: StreamHistory,
    ) -> None:
        self._search = search
        self._redis = redis
        self._keyspace = keyspace
        self._store = store
        self._history = history
        self._names: dict[str, str] = {}
        self._remembered: OrderedDict[tuple[str, str], OrderDocument] = OrderedDict()
        self.remember = 100_000  # documents kept per writer (all indexes together)

    async def apply(
        self, events: Sequence[ProjectedEvent], indexes: Sequence[str], *, refresh: bool = False
    ) -> dict[str, str]:
        """Apply `events` to each index; return the ids of events that failed, with the reason."""
        failed: dict[str, str] = {}
        registered = {e.data.sku: e.data.name for e in events if isinstance(e.data, ProductRegistered)}
        if registered:
            await self._remember_names(registered)
        by_stream: dict[str, list[ProjectedEvent]] = defaultdict(list)
        for event in events:
            if event.stream_id.startswith("order-"):
                by_stream[event.stream_id].append(event)
        for index in indexes:
            await self._apply_orders(index, by_stream, failed, refresh=refresh)
            if registered:
                await self._backfill(index, registered)
        return failed

    async def _apply_orders(
        self,
        index: str,
        by_stream: dict[str, list[ProjectedEvent]],
        failed: dict[str, str],
        *,
        refresh: bool,
    ) -> None:
        if not by_stream:
            return
        ids = [stream.removeprefix("order-") for stream in by_stream]
        known: dict[str, OrderDocument | None] = {}
        for stream_id, events in by_stream.items():
            order_id = stream_id.removeprefix("order-")
            first = min(e.version for e in events)
            remembered = self._remembered.get((index, order_id))
            if remembered is not None and first == remembered.version + 1:
                known[order_id] = remembered
            elif first == 0:
                # The first event makes the whole document: nothing to read. Should the index
                # hold it already, the write conflicts, which is the duplicate's success.
                known[order_id] = None
        stored = await self._search.get_many(index, [i for i in ids if i not in known])
        names = await self.names(sku for events in by_stream.values() for e in events for sku in skus_of(e))
        writes: list[BulkWrite] = []
        events_of: dict[str, list[ProjectedEvent]] = {}
        for stream_id, events in by_stream.items():
            order_id = stream_id.removeprefix("order-")
            current = stored.get(order_id)
            document = (
                known[order_id]
                if order_id in known
                else (msgspec.convert(current.document, OrderDocument) if current else None)
            )
            try:
                updated = await self._fold(
                    stream_id, document, sorted(events, key=lambda e: e.version), names
                )
            except Exception as error:  # this stream's events are broken; the others go on
                for event in events:
                    failed[event.event_id] = f"{type(error).__name__}: {error}"
                continue
            if updated is not None and updated is not document:
                writes.append(BulkWrite(order_id, msgspec.to_builtins(updated), updated.version))
                events_of[order_id] = events
                self._keep(index, order_id, updated)
        outcome, errors = await self._put(index, writes, refresh=refresh)
        for order_id in outcome.stale:
            self._remembered.pop((index, order_id), None)  # the index holds a later version
        for order_id, reason in errors.items():
            self._remembered.pop((index, order_id), None)
            for event in events_of[order_id]:
                failed[event.event_id] = f"search refused the document: {reason}"

    async def _put(
        self, index: str, writes: list[BulkWrite], *, refresh: bool = False, rewrite: bool = False
    ) -> tuple[BulkOutcome, dict[str, str]]:
        """One bulk request; documents the engine refuses come back by id (the others are written)."""
        version_type: Literal["external", "external_gte"] = "external_gte" if rewrite else "external"
        try:
            return await self._search.put_many(index, writes, refresh=refresh, version_type=version_type), {}
        except BulkFailed as failure:
            overloaded = [reason for reason in failure.errors.values() if _transient(reason)]
            if overloaded:
                raise SearchUnavailable(f"search engine overloaded: {overloaded[0]}") from failure
            return BulkOutcome(written=0, stale=[]), failure.errors

    def _keep(self, index: str, order_id: str, document: OrderDocument) -> None:
        self._remembered[(index, order_id)] = document
        self._remembered.move_to_end((index, order_id))
        while len(self._remembered) > self.remember:
            self._remembered.popitem(last=False)

    async def _fold(
        self,
        stream_id: str,
        document: OrderDocument | None,
        events: list[ProjectedEvent],
        names: dict[str, str],
    ) -> OrderDocument | None:
        for event in events:
            at = -1 if document is None else document.version
            if event.version <= at:
                continue  # already in the index: a duplicate
            if event.version > at + 1:
                missing = await self._history.between(stream_id, at + 1, event.version - 1)
                if len(missing) != event.version - at - 1:
                    raise OutOfOrder(f"{stream_id}: the store lacks versions {at + 1}..{event.version - 1}")
                names.update(await self.names(sku for e in missing for sku in skus_of(e)))
                for earlier in missing:
                    document = evolve_document(document, earlier, names)
            document = evolve_document(document, event, names)
        return document

    async def names(self, skus: Iterable[str]) -> dict[str, str]:
        """Product names of `skus`: from Redis, else from each SKU's registration in the store.

        Names never change once registered, so the ones found are kept in this process too.
        """
        asked = set(skus)
        cached = {sku: self._names[sku] for sku in asked if sku in self._names}
        wanted = sorted(asked - set(cached))
        if not wanted:
            return cached
        values = await self._redis.hmget(self._keyspace.product_names, wanted)
        found = {
            sku: v.decode() if isinstance(v, bytes) else v for sku, v in zip(wanted, values, strict=True)
        }
        names = {sku: name for sku, name in found.items() if name is not None}
        late: dict[str, str] = {}
        for sku in (sku for sku in wanted if sku not in names):
            first = await self._store.read_stream(f"stock-{sku}", 0, limit=1)
            if first and isinstance(first[0].data, ProductRegistered):
                late[sku] = first[0].data.name
        if late:
            await self._remember_names(late)
        if len(self._names) < 1_000_000:
            self._names.update(names | late)
        return cached | names | late

    async def _remember_names(self, names: dict[str, str]) -> None:
        # Written once per SKU: a registration is version 0 of its stock stream, and
        # nothing renames a product, so the first write is the only one (HSETNX).
        pipe = self._redis.pipeline(transaction=False)
        for sku, name in names.items():
            pipe.hsetnx(self._keyspace.product_names, sku, name)
        await pipe.execute()

    async def _backfill(self, index: str, names: dict[str, str]) -> None:
        await self._search.refresh(index)
        for sku in names:
            after: list[object] | None = None
            while True:  # every order with the SKU, a page at a time
                page = await self._search.search_page(
                    index,
                    {"term": {"lines.sku": sku}},
                    sort=[{"order_id": "asc"}],
                    size=1000,
                    search_after=after,
                )
                writes = []
                for hit in page.hits:
                    document = msgspec.convert(hit.source, OrderDocument)
                    named = with_names(document, names)
                    if named is not document:
                        writes.append(BulkWrite(document.order_id, msgspec.to_builtins(named), named.version))
                await self._put(index, writes, rewrite=True)
                if page.next_after is None:
                    break
                after = page.next_after


def _transient(reason: str) -> bool:
    # Rejections that say "try later", not "this document is wrong".
    return any(kind in reason for kind in ("es_rejected_execution", "circuit_breaking", "unavailable_shards"))
