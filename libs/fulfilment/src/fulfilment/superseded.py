"""Events as earlier schema versions had them: their schemas stay published, their payloads are upcast.

A consumer may still hold a schema file of an older version, so `fulfilment-schemas`
keeps generating it from the class here, which keeps the event's class name (the
schema's `$defs` key) and docstring (its description) so that the file stays as it
was published. Stored payloads of these versions never decode into these classes:
the registry upcasts them to the current one (`fulfilment.registry`).
"""

from __future__ import annotations

from fulfilment.events import Event
from fulfilment.values import CanonicalSku, RecordedProductName

__all__ = ["SUPERSEDED_EVENTS", "ProductRegistered"]


# Version 1, before products had prices.
class ProductRegistered(Event, frozen=True):
    """A SKU became known; it starts with no stock."""

    sku: CanonicalSku
    name: RecordedProductName


SUPERSEDED_EVENTS: tuple[type[Event], ...] = (ProductRegistered,)
