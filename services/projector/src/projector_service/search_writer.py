"""Applying the search projection to one or more order indexes, in batches.

Per batch and index: one multi-get for the current documents of the orders the
batch touches, the pure `evolve_document` for each event in stream order, one
bulk request indexing each changed document with the stream version as its
external version (`version_type=external`). A version conflict means the index
already holds that version or a later one (a duplicate delivery, or a rebuild
and the live consumer writing the same order): success. Gaps are filled from the
event store.

Product names: SKU -> name lives in Redis (`Keyspace.product_names`), written
once per SKU by its `ProductRegistered`. A SKU missing there is looked up in the
store (its stream's first event) before a line goes without a name. A
registration projected after orders that name the SKU fills those orders'
lines in (re-indexed at their own version with `external_gte`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

import msgspec
from eventstore import EventStore
from fulfilment.events import ProductRegistered
from readmodels.keyspace import Keyspace
from readmodels.orders import OrderDocument
from readmodels.search import BulkWrite, SearchClient
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
        stored = await self._search.get_many(index, ids)
        names = await self.names(sku for events in by_stream.values() for e in events for sku in skus_of(e))
        writes: list[BulkWrite] = []
        events_of: dict[str, list[ProjectedEvent]] = {}
        for stream_id, events in by_stream.items():
            order_id = stream_id.removeprefix("order-")
            current = stored.get(order_id)
            document = msgspec.convert(current.document, OrderDocument) if current else None
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
        outcome = await self._search.bulk_put(index, writes, refresh=refresh)
        for order_id, reason in outcome.errors.items():
            for event in events_of[order_id]:
                failed[event.event_id] = f"search refused the document: {reason}"

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
        """Product names of `skus`: from Redis, else from each SKU's registration in the store."""
        wanted = sorted(set(skus))
        if not wanted:
            return {}
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
        return names | late

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
            hits = await self._search.search(index, {"term": {"lines.sku": sku}}, size=10_000)
            writes = []
            for hit in hits:
                document = msgspec.convert(hit, OrderDocument)
                named = with_names(document, names)
                if named is not document:
                    writes.append(BulkWrite(document.order_id, msgspec.to_builtins(named), named.version))
            await self._search.bulk_put(index, writes, version_type="external_gte")
