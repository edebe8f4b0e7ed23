"""The mapping between event classes and the names and schema versions they are stored under.

Event types are frozen msgspec Structs, registered explicitly (no discovery). A stored
payload written by an older schema version is turned into the current type by a chain
of upcasters, one per version step, each a plain ``dict -> dict`` function.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from eventstore.errors import EventDecodeError, UnknownEventType

__all__ = ["EventRegistry", "Upcaster"]

type Upcaster = Callable[[dict[str, Any]], dict[str, Any]]

_encoder = msgspec.json.Encoder()
_dict_decoder = msgspec.json.Decoder(dict[str, Any])


@dataclass(frozen=True, slots=True)
class _Registration:
    cls: type[msgspec.Struct]
    name: str
    version: int
    decoder: msgspec.json.Decoder[Any]


class EventRegistry:
    """Event classes by name, with their current schema version and upcasters.

    >>> registry = EventRegistry()
    >>> @registry.event(name="order_placed", version=2)
    ... class OrderPlaced(msgspec.Struct, frozen=True):
    ...     order_id: str
    """

    def __init__(self) -> None:
        self._by_name: dict[str, _Registration] = {}
        self._by_class: dict[type[msgspec.Struct], _Registration] = {}
        self._upcasters: dict[tuple[str, int], Upcaster] = {}

    def register[T: msgspec.Struct](
        self, cls: type[T], *, name: str | None = None, version: int = 1
    ) -> type[T]:
        """Register ``cls`` under ``name`` (default: the class name) at schema ``version``."""
        if not (isinstance(cls, type) and issubclass(cls, msgspec.Struct)):
            raise TypeError(f"{cls!r} is not a msgspec.Struct subclass")
        if not cls.__struct_config__.frozen:
            # Recorded events are shared between readers; mutation would be a bug.
            raise TypeError(f"{cls.__qualname__} must be declared with frozen=True")
        name = cls.__name__ if name is None else name
        if not name or not isinstance(name, str):
            raise ValueError("an event type name must be a non-empty str")
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise ValueError(f"schema version of {name!r} must be an int >= 1, got {version!r}")
        existing = self._by_name.get(name)
        if existing is not None and existing.cls is not cls:
            raise ValueError(f"event type name {name!r} is already taken by {existing.cls.__qualname__}")
        if cls in self._by_class and self._by_class[cls].name != name:
            raise ValueError(f"{cls.__qualname__} is already registered as {self._by_class[cls].name!r}")
        registration = _Registration(cls, name, version, msgspec.json.Decoder(cls))
        self._by_name[name] = registration
        self._by_class[cls] = registration
        return cls

    def event[T: msgspec.Struct](
        self, *, name: str | None = None, version: int = 1
    ) -> Callable[[type[T]], type[T]]:
        """Class decorator form of ``register``."""

        def decorate(cls: type[T]) -> type[T]:
            return self.register(cls, name=name, version=version)

        return decorate

    def upcaster(self, name: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
        """Decorator registering ``fn(payload) -> payload`` that turns version n into n + 1."""

        def decorate(fn: Upcaster) -> Upcaster:
            key = (name, from_version)
            if key in self._upcasters:
                raise ValueError(f"{name!r} already has an upcaster from version {from_version}")
            self._upcasters[key] = fn
            return fn

        return decorate

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def current_version(self, name: str) -> int:
        """The schema version ``name`` is written at today; ``UnknownEventType`` if unregistered.

        A stored payload at this version decodes without upcasting.
        """
        registration = self._by_name.get(name)
        if registration is None:
            raise UnknownEventType(name)
        return registration.version

    def type_name(self, cls: type[msgspec.Struct]) -> str:
        """The name ``cls`` is stored under; ``UnknownEventType`` if it is not registered."""
        registration = self._by_class.get(cls)
        if registration is None:
            raise UnknownEventType(getattr(cls, "__qualname__", repr(cls)))
        return registration.name

    def encode(self, event: msgspec.Struct) -> tuple[str, int, bytes]:
        """Encode a registered event as (name, schema version, JSON bytes)."""
        registration = self._by_class.get(type(event))
        if registration is None:
            raise UnknownEventType(type(event).__qualname__)
        return registration.name, registration.version, _encoder.encode(event)

    def decoder_for(self, name: str, version: int) -> Callable[[bytes | str], msgspec.Struct]:
        """A function decoding payloads of ``name`` stored at ``version`` (for decoding many).

        The current version gets msgspec's decoder itself, which raises msgspec's own
        errors; ``decode`` wraps those in ``EventDecodeError``.
        """
        registration = self._by_name.get(name)
        if registration is None:
            raise UnknownEventType(name)
        if version == registration.version:
            fast: Callable[[bytes | str], msgspec.Struct] = registration.decoder.decode
            return fast
        return functools.partial(self.decode, name, version)

    def decode(self, name: str, version: int, data: bytes | str) -> msgspec.Struct:
        """Decode a stored payload into the current type of ``name``, upcasting older versions."""
        registration = self._by_name.get(name)
        if registration is None:
            raise UnknownEventType(name)
        try:
            if version == registration.version:
                decoded: msgspec.Struct = registration.decoder.decode(data)
                return decoded
            if version > registration.version:
                raise EventDecodeError(
                    name,
                    version,
                    f"stored by a newer schema (this code knows up to v{registration.version})",
                    data=data,
                )
            payload = self._upcast(name, version, registration.version, _dict_decoder.decode(data))
            converted: msgspec.Struct = msgspec.convert(payload, registration.cls)
            return converted
        except (msgspec.DecodeError, msgspec.ValidationError) as e:
            raise EventDecodeError(name, version, str(e), data=data) from e

    def _upcast(self, name: str, version: int, target: int, payload: dict[str, Any]) -> dict[str, Any]:
        for step in range(version, target):
            upcaster = self._upcasters.get((name, step))
            if upcaster is None:
                raise EventDecodeError(name, version, f"no upcaster registered from v{step} to v{step + 1}")
            try:
                upcast: object = upcaster(payload)
            except Exception as e:
                # An upcaster is user code; whatever it raises means "this payload cannot be read".
                raise EventDecodeError(name, version, f"upcaster from v{step} failed: {e!r}") from e
            if not isinstance(upcast, dict):
                returned = type(upcast).__name__
                raise EventDecodeError(name, version, f"upcaster from v{step} returned {returned}, not dict")
            payload = upcast
        return payload
