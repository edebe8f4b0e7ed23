"""The event store's registry of every fulfilment event type (from `ALL_EVENTS`) and its upcasters."""

from __future__ import annotations

from typing import Any

from eventstore.registry import EventRegistry

from fulfilment.events import ALL_EVENTS, event_name

__all__ = ["build_registry", "unpriced_product"]


def build_registry() -> EventRegistry:
    """A registry holding every event type under its name (its `type` tag) and schema version."""
    registry = EventRegistry()
    for event_type in ALL_EVENTS:
        registry.register(event_type, name=event_name(event_type), version=event_type.schema_version)
    registry.upcaster("ProductRegistered", 1)(unpriced_product)
    return registry


def unpriced_product(payload: dict[str, Any]) -> dict[str, Any]:
    """`ProductRegistered` v1 -> v2: a product registered before prices existed has none yet.

    Null price and currency mean "not for sale until priced" (`ProductPriceChanged`):
    inventing a price would sell at a price nobody set.
    """
    return {**payload, "unit_price": None, "currency": None}
