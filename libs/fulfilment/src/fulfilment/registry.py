"""The event store's registry of every fulfilment event type, built explicitly from `ALL_EVENTS`."""

from __future__ import annotations

from eventstore.registry import EventRegistry

from fulfilment.events import ALL_EVENTS, event_name

__all__ = ["build_registry"]


def build_registry() -> EventRegistry:
    """A registry holding every event type under its name (its `type` tag) and schema version."""
    registry = EventRegistry()
    for event_type in ALL_EVENTS:
        registry.register(event_type, name=event_name(event_type), version=event_type.schema_version)
    return registry
