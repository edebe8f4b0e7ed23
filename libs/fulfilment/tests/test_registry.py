from __future__ import annotations

from uuid import UUID

from fulfilment.events import ALL_EVENTS, OrderConfirmed, event_name
from fulfilment.registry import build_registry


def test_every_event_type_is_registered_under_its_name_and_version() -> None:
    registry = build_registry()

    for event_type in ALL_EVENTS:
        assert registry.type_name(event_type) == event_name(event_type)


def test_a_registered_event_round_trips_through_the_registry() -> None:
    registry = build_registry()
    event = OrderConfirmed(order_id=UUID(int=7))

    name, version, data = registry.encode(event)

    assert (name, version) == ("OrderConfirmed", 1)
    assert registry.decode(name, version, data) == event
