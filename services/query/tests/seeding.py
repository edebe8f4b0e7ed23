"""Read models written straight into Redis and the search engine, in the shapes the projector writes.

The query service only reads; these tests need read models in known states
(including states in the middle of a change), so they write the
`readmodels` shapes themselves, under a key prefix no other test shares. The
end-to-end tests (tests/e2e) let the real projector write them instead.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import msgspec
from readmodels.keyspace import INITIAL_GENERATION, RECENT_ORDERS, Keyspace
from readmodels.orders import (
    ORDER_INDEX_SETTINGS,
    ORDER_MAPPINGS,
    OrderDocument,
    OrderLineDocument,
    orders_alias,
    orders_index,
)
from readmodels.search import SearchClient
from redis.asyncio import Redis

EPOCH = datetime(2026, 3, 1, tzinfo=UTC)


def at(seconds: float) -> str:
    """A placement time `seconds` after a fixed instant, as the read models spell times."""
    return (EPOCH + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def order(
    customer_id: str,
    *,
    placed: float = 0,
    total: int = 1000,
    status: str = "pending",
    product: str = "Blue mug",
    sku: str = "blue-mug",
    version: int = 0,
    order_id: str | None = None,
) -> OrderDocument:
    line = OrderLineDocument(sku=sku, product_name=product, quantity=1, unit_price=total, line_total=total)
    return OrderDocument(
        order_id=order_id or str(uuid.uuid4()),
        customer_id=customer_id,
        status=status,
        lines=(line,),
        total=total,
        currency="EUR",
        placed_at=at(placed),
        updated_at=at(placed),
        version=version,
        position=0,
    )


class SeededModels:
    """Writes read models under `keyspace.prefix`; `drop` removes them."""

    def __init__(self, redis: Redis, search: SearchClient, keyspace: Keyspace) -> None:
        self.redis = redis
        self.search = search
        self.keyspace = keyspace
        self.keys = keyspace.models(INITIAL_GENERATION)
        self.index = orders_index(keyspace.prefix, INITIAL_GENERATION)

    async def create(self) -> None:
        await self.search.create_index(self.index, mappings=ORDER_MAPPINGS, settings=ORDER_INDEX_SETTINGS)
        await self.search.point_alias(orders_alias(self.keyspace.prefix), self.index)
        # Whole, as the projector leaves them: the generation's marker, both live pointers.
        await self.redis.set(self.keys.built, "seeded")
        await self.redis.set(self.keyspace.live("redis"), INITIAL_GENERATION)
        await self.redis.set(self.keyspace.live("search"), INITIAL_GENERATION)

    async def drop(self) -> None:
        keys = [key async for key in self.redis.scan_iter(match=f"{self.keyspace.prefix}*", count=1000)]
        if keys:
            await self.redis.unlink(*keys)
        await self.search.delete_index(self.index)

    async def put(self, document: OrderDocument, *, redis: bool = True, search: bool = True) -> None:
        """Write (or overwrite) an order in both models, keeping the counts and recent orders right."""
        if redis:
            key = self.keys.order(document.order_id)
            old = await self.redis.hget(key, "status")  # type: ignore[misc]
            lines = [msgspec.structs.asdict(line) for line in document.lines]
            for line in lines:
                del line["product_name"]
            fields = {
                "order_id": document.order_id,
                "customer_id": document.customer_id,
                "status": document.status,
                "total": str(document.total),
                "currency": document.currency,
                "lines": msgspec.json.encode(lines).decode(),
                "placed_at": document.placed_at,
                "updated_at": document.updated_at,
                "reason": document.reason or "",
                "version": str(document.version),
            }
            pipe = self.redis.pipeline(transaction=True)
            pipe.hset(key, mapping=fields)
            if old is not None:
                pipe.hincrby(self.keys.order_counts, old.decode() if isinstance(old, bytes) else old, -1)
            pipe.hincrby(self.keys.order_counts, document.status, 1)
            placed_ms = int(datetime.fromisoformat(document.placed_at).timestamp() * 1000)
            recent = self.keys.customer_orders(document.customer_id)
            pipe.zadd(recent, {document.order_id: placed_ms})
            pipe.zremrangebyrank(recent, 0, -(RECENT_ORDERS + 1))
            await pipe.execute()
        if search:
            await self.search.put(
                self.index, document.order_id, msgspec.to_builtins(document), version=document.version
            )

    async def refresh(self) -> None:
        await self.search.refresh(self.index)

    async def stock(
        self,
        sku: str,
        name: str,
        on_hand: int,
        available: int,
        version: int = 1,
        *,
        unit_price: int | None = 1250,
        currency: str | None = "EUR",
        active: bool = True,
    ) -> None:
        """Write a SKU's hash as the projector does: no price fields while it has no price."""
        fields: dict[str, str | int] = {
            "sku": sku, "name": name, "on_hand": on_hand, "available": available, "version": version,
            "active": "1" if active else "0",
        }  # fmt: skip
        if unit_price is not None and currency is not None:
            fields |= {"unit_price": unit_price, "currency": currency}
        await self.redis.hset(self.keys.stock(sku), mapping=fields)  # type: ignore[misc]

    async def advance(self, projection: str, position: int) -> None:
        """Move a projection's position and announce it, as the projector's tracker does."""
        channel = self.keyspace.position(projection)
        await self.redis.hset(channel, "position", position)  # type: ignore[misc]
        await self.redis.publish(channel, position)
