"""The event registry and stream ids: pure functions, no store."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from eventstore import EventDecodeError, EventRegistry, InvalidStreamId, UnknownEventType, category_of
from eventstore.streams import check_stream_id


class Shipped(msgspec.Struct, frozen=True):
    order_id: str
    carrier: str = "post"


class Mutable(msgspec.Struct):
    value: int


def test_a_registered_event_encodes_with_its_name_and_version() -> None:
    registry = EventRegistry()
    registry.register(Shipped, name="order_shipped", version=2)

    name, version, data = registry.encode(Shipped("o-1"))

    assert (name, version) == ("order_shipped", 2)
    assert msgspec.json.decode(data) == {"order_id": "o-1", "carrier": "post"}
    assert registry.decode(name, version, data) == Shipped("o-1")
    assert registry.type_name(Shipped) == "order_shipped"
    assert "order_shipped" in registry


def test_the_decorator_registers_under_the_class_name_by_default() -> None:
    registry = EventRegistry()

    @registry.event()
    class Cancelled(msgspec.Struct, frozen=True):
        reason: str

    assert registry.type_name(Cancelled) == "Cancelled"


def test_only_frozen_structs_can_be_registered() -> None:
    registry = EventRegistry()

    with pytest.raises(TypeError, match="frozen"):
        registry.register(Mutable)
    with pytest.raises(TypeError, match="Struct"):
        registry.register(dict)  # type: ignore[type-var]


def test_a_name_cannot_be_taken_twice_by_different_classes() -> None:
    registry = EventRegistry()
    registry.register(Shipped, name="shipped")

    class Other(msgspec.Struct, frozen=True):
        pass

    with pytest.raises(ValueError, match="already taken"):
        registry.register(Other, name="shipped")
    with pytest.raises(ValueError, match="already registered"):
        registry.register(Shipped, name="other_name")


@pytest.mark.parametrize("version", [0, -1, True, "2"])
def test_schema_versions_start_at_one(version: Any) -> None:
    with pytest.raises(ValueError, match="schema version"):
        EventRegistry().register(Shipped, version=version)


def test_unknown_types_are_reported_by_name() -> None:
    registry = EventRegistry()

    with pytest.raises(UnknownEventType, match="Shipped"):
        registry.encode(Shipped("o-1"))
    with pytest.raises(UnknownEventType, match="order_shipped"):
        registry.decode("order_shipped", 1, b"{}")
    with pytest.raises(UnknownEventType):
        registry.type_name(Shipped)


@pytest.mark.parametrize("payload", [b"not json", b"[1, 2]", b'{"carrier": "dhl"}', b'{"order_id": 5}'])
def test_undecodable_payloads_raise_event_decode_error(payload: bytes) -> None:
    registry = EventRegistry()
    registry.register(Shipped)

    with pytest.raises(EventDecodeError) as raised:
        registry.decode("Shipped", 1, payload)

    assert raised.value.event_type == "Shipped"
    assert raised.value.data == payload


def test_the_current_version_is_the_registered_one_and_unknown_names_are_errors() -> None:
    registry = EventRegistry()
    registry.register(Shipped, name="order_shipped", version=3)

    assert registry.current_version("order_shipped") == 3
    with pytest.raises(UnknownEventType):
        registry.current_version("order_lost")


def test_upcasters_run_in_order_from_the_stored_version() -> None:
    registry = EventRegistry()
    registry.register(Shipped, version=3)
    calls: list[int] = []

    @registry.upcaster("Shipped", 1)
    def v1(payload: dict[str, Any]) -> dict[str, Any]:
        calls.append(1)
        return {"order_id": payload["id"]}

    @registry.upcaster("Shipped", 2)
    def v2(payload: dict[str, Any]) -> dict[str, Any]:
        calls.append(2)
        return {**payload, "carrier": "dhl"}

    assert registry.decode("Shipped", 1, b'{"id": "o-1"}') == Shipped("o-1", "dhl")
    assert calls == [1, 2]
    assert registry.decode("Shipped", 2, b'{"order_id": "o-2"}') == Shipped("o-2", "dhl")
    assert calls == [1, 2, 2]


def test_a_failing_or_misbehaving_upcaster_is_a_decode_error() -> None:
    registry = EventRegistry()
    registry.register(Shipped, version=2)

    @registry.upcaster("Shipped", 1)
    def broken(payload: dict[str, Any]) -> dict[str, Any]:
        return payload["missing"]  # type: ignore[no-any-return]

    with pytest.raises(EventDecodeError, match="upcaster from v1 failed"):
        registry.decode("Shipped", 1, b"{}")
    with pytest.raises(ValueError, match="already has an upcaster"):
        registry.upcaster("Shipped", 1)(broken)


def test_an_upcaster_must_return_a_dict() -> None:
    registry = EventRegistry()
    registry.register(Shipped, version=2)
    registry.upcaster("Shipped", 1)(lambda payload: [payload])  # type: ignore[arg-type,return-value]

    with pytest.raises(EventDecodeError, match="returned list"):
        registry.decode("Shipped", 1, b"{}")


@pytest.mark.parametrize(
    ("stream_id", "category"),
    [("order-7f3e", "order"), ("order_line-1-2", "order_line"), ("a1-x", "a1"), ("x-" + "y" * 198, "x")],
)
def test_the_category_is_the_text_before_the_first_dash(stream_id: str, category: str) -> None:
    assert check_stream_id(stream_id) == stream_id
    assert category_of(stream_id) == category


@pytest.mark.parametrize(
    ("stream_id", "reason"),
    [
        ("xy-", "look like"),
        ("order", "look like"),
        ("Order-1", "category"),
        ("_a-1", "category"),
        ("or der-1", "whitespace"),
        ("order-1\t", "whitespace"),
        ("order-\x7f", "control"),
        ("o-" + "y" * 199, "length"),
        (None, "str"),
    ],
)
def test_invalid_stream_ids_say_what_is_wrong(stream_id: Any, reason: str) -> None:
    with pytest.raises(InvalidStreamId, match=reason):
        check_stream_id(stream_id)
    with pytest.raises(ValueError, match=reason):
        category_of(stream_id)
