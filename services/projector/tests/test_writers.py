"""The Redis and search writers against the real servers: guarded, order-safe, gap-filling."""

from __future__ import annotations

import random
import uuid

import msgspec
import pytest
from eventstore import NewEvent, PostgresEventStore
from fulfilment.events import (
    Event,
    OrderPlaced,
    ProductActivated,
    ProductDeactivated,
    ProductPriceChanged,
    ProductRegistered,
)
from projector_service.bootstrap import Projector
from projector_service.settings import ProjectorSettings
from readmodels.keyspace import INITIAL_GENERATION
from readmodels.orders import OrderSummary, StockLevel

from services.projector.tests.conftest import append_unpriced_registration, line, log_events, write_scenario
from services.projector.tests.snapshots import redis_snapshot, search_snapshot

LIVE = INITIAL_GENERATION


@pytest.fixture
def settings(settings: ProjectorSettings, search_engine_url: str) -> ProjectorSettings:
    """These tests run on each search engine the read models promise to work on."""
    return msgspec.structs.replace(settings, search_url=search_engine_url)


async def models(projector: Projector, generation: str = LIVE) -> tuple[dict[str, object], dict[str, object]]:
    search = projector.projections["search"]
    index = search.index(generation)  # type: ignore[attr-defined]
    return (
        await redis_snapshot(projector.redis, projector.keyspace, generation),
        await search_snapshot(projector.search, index),
    )


async def stock_level(projector: Projector, sku: str, generation: str = LIVE) -> StockLevel:
    fields = await projector.redis.hgetall(projector.keyspace.models(generation).stock(sku))
    assert fields, f"no stock hash for {sku}"
    return StockLevel.from_hash({k.decode(): v.decode() for k, v in fields.items()})


async def apply_all(projector: Projector, events: list, generation: str = LIVE) -> None:  # type: ignore[type-arg]
    for projection in projector.projections.values():
        failed = await projection.apply(events, [generation])
        assert failed == {}


async def test_the_redis_models_hold_summaries_stock_counts_and_recent_orders(
    projector: Projector, store: PostgresEventStore
) -> None:
    ids = await write_scenario(store, orders=8)
    await apply_all(projector, await log_events(store))
    keys = projector.keyspace.models(LIVE)
    summary = OrderSummary.from_hash(
        {k.decode(): v.decode() for k, v in (await projector.redis.hgetall(keys.order(str(ids[2])))).items()}
    )
    assert summary.status == "cancelled"
    assert summary.customer_id == "customer-2"
    assert summary.version == 2
    counts = await projector.redis.hgetall(keys.order_counts)
    assert {k.decode(): int(v) for k, v in counts.items()} == {"pending": 4, "confirmed": 2, "cancelled": 2}
    mug, teapot, kettle = [await stock_level(projector, sku) for sku in ("mug", "teapot", "kettle")]
    assert (mug.name, mug.on_hand, mug.unit_price, mug.currency, mug.for_sale) == (
        "Blue mug number 0", 100, 250, "EUR", True
    )  # fmt: skip
    assert (teapot.unit_price, teapot.active, teapot.for_sale) == (500, False, False)
    assert (kettle.name, kettle.unit_price, kettle.for_sale) == ("Blue kettle number 2", 4000, True)
    recent = await projector.redis.zrange(keys.customer_orders("customer-0"), 0, -1)
    assert sorted(r.decode() for r in recent) == sorted(str(ids[n]) for n in (0, 4))


async def test_the_search_model_holds_one_named_document_per_order(
    projector: Projector, store: PostgresEventStore
) -> None:
    ids = await write_scenario(store, orders=6)
    await apply_all(projector, await log_events(store))
    _, documents = await models(projector)
    assert set(documents) == {str(i) for i in ids}
    document = documents[str(ids[1])]
    assert document["status"] == "confirmed"
    assert document["lines"][0]["product_name"] == "Blue teapot number 1"
    search = projector.projections["search"]
    hits = await projector.search.search(
        search.alias,
        {"match": {"lines.product_name": "TEAPOT"}},
        size=100,  # type: ignore[attr-defined]
    )
    assert {hit["order_id"] for hit in hits} == {str(ids[n]) for n in (1, 4)}


async def test_duplicates_and_any_order_of_delivery_leave_the_models_as_a_clean_pass_does(
    projector: Projector, store: PostgresEventStore
) -> None:
    await write_scenario(store, orders=16)
    events = await log_events(store)
    for projection in projector.projections.values():
        await projection.create("clean")
    await apply_all(projector, events, "clean")
    clean = await models(projector, "clean")

    shuffled = events + random.sample(events, len(events) // 2)  # every event, half of them twice
    random.Random(7).shuffle(shuffled)
    await apply_all(projector, shuffled[: len(shuffled) // 2])
    await apply_all(projector, shuffled[len(shuffled) // 2 :])
    await apply_all(projector, events[:10])  # and a late redelivery of old ones
    assert await models(projector) == clean


async def test_an_event_after_a_gap_is_applied_after_the_missing_ones_from_the_store(
    projector: Projector, store: PostgresEventStore
) -> None:
    ids = await write_scenario(store, orders=3)
    events = await log_events(store)
    cancelled = [e for e in events if e.stream_id == f"order-{ids[2]}"][-1]
    assert cancelled.version == 2
    await apply_all(projector, [cancelled])  # versions 0 and 1 never delivered
    redis_model, search_model = await models(projector)
    assert redis_model[f"order:{ids[2]}"]["status"] == "cancelled"
    assert redis_model["order-counts"] == {"cancelled": "1"}
    assert search_model[str(ids[2])]["version"] == 2


async def test_a_product_registered_after_its_orders_fills_their_names_in(
    projector: Projector, store: PostgresEventStore
) -> None:
    order_id = uuid.uuid4()
    placed = OrderPlaced(
        order_id=order_id, customer_id="ann", lines=(line("late"),), currency="EUR", total=250
    )
    await store.append(f"order-{order_id}", [NewEvent(data=placed)])
    await apply_all(projector, await log_events(store))
    _, documents = await models(projector)
    assert documents[str(order_id)]["lines"][0]["product_name"] is None  # no registration anywhere yet

    late = ProductRegistered(sku="late", name="Late lamp", unit_price=900, currency="EUR")
    await store.append("stock-late", [NewEvent(data=late)])
    await apply_all(projector, (await log_events(store))[-1:])
    _, documents = await models(projector)
    assert documents[str(order_id)]["lines"][0]["product_name"] == "Late lamp"
    assert documents[str(order_id)]["version"] == 0


async def test_price_changes_deactivation_and_activation_reach_the_stock_model(
    projector: Projector, store: PostgresEventStore
) -> None:
    # Each event, then the stock model's (unit_price, currency, active, for_sale).
    steps: list[tuple[Event, tuple[int | None, str | None, bool, bool]]] = [
        (
            ProductRegistered(sku="lamp", name="Lamp", unit_price=900, currency="EUR"),
            (900, "EUR", True, True),
        ),
        (ProductPriceChanged(sku="lamp", unit_price=1100, currency="GBP"), (1100, "GBP", True, True)),
        (ProductDeactivated(sku="lamp", reason="discontinued"), (1100, "GBP", False, False)),
        (ProductActivated(sku="lamp"), (1100, "GBP", True, True)),
    ]
    for data, expected in steps:
        await store.append("stock-lamp", [NewEvent(data=data)])
        await apply_all(projector, (await log_events(store))[-1:])
        level = await stock_level(projector, "lamp")
        assert (level.unit_price, level.currency, level.active, level.for_sale) == expected, data
    assert (level.name, level.version) == ("Lamp", 3)


async def test_a_stored_version_1_registration_is_projected_as_unpriced_and_still_names_orders(
    projector: Projector, store: PostgresEventStore
) -> None:
    await append_unpriced_registration(store, "old-lamp", "Old lamp")
    order_id = uuid.uuid4()
    placed = OrderPlaced(
        order_id=order_id, customer_id="ann", lines=(line("old-lamp"),), currency="EUR", total=250
    )
    await store.append(f"order-{order_id}", [NewEvent(data=placed)])
    registration, order = await log_events(store)
    assert registration.event_type == "ProductRegistered"
    assert isinstance(registration.data, ProductRegistered)
    assert (registration.data.unit_price, registration.data.currency) == (None, None)

    # The order first: its product's name is found in the stored (version 1) registration.
    assert await projector.projections["search"].apply([order], [LIVE]) == {}
    await apply_all(projector, [registration])
    _, documents = await models(projector)
    assert documents[str(order_id)]["lines"][0]["product_name"] == "Old lamp"
    level = await stock_level(projector, "old-lamp")
    assert (level.name, level.unit_price, level.currency, level.active) == ("Old lamp", None, None, True)
    assert not level.for_sale

    await store.append(
        "stock-old-lamp", [NewEvent(data=ProductPriceChanged(sku="old-lamp", unit_price=700, currency="EUR"))]
    )
    await apply_all(projector, (await log_events(store))[-1:])
    priced = await stock_level(projector, "old-lamp")
    assert (priced.unit_price, priced.currency, priced.for_sale, priced.version) == (700, "EUR", True, 1)
