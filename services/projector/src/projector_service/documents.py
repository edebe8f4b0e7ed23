"""The search projection, pure: an order's document after one more event.

`evolve_document(document, event, names)` is the order's document at
`event.version`, given the document at `event.version - 1` (None before the
order's first event). The caller (`search_writer`) makes sure it is called in
stream order, filling any gap from the event store first.

Product names come from `names` (SKU -> name, from `ProductRegistered`). A line
whose SKU has no known name gets `product_name = None`; when the registration
is projected later, `with_names` fills it in (see `docs/projector.md`).
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec
from fulfilment.events import OrderCancelled, OrderConfirmed, OrderPlaced, OrderRejected
from readmodels.orders import OrderDocument, OrderLineDocument

from projector_service.events import ProjectedEvent

__all__ = ["CATEGORIES", "OutOfOrder", "evolve_document", "skus_of", "with_names"]

CATEGORIES = ("order", "stock")


class OutOfOrder(ValueError):
    """The event does not follow the document's version: the caller must fill the gap first."""


def evolve_document(
    document: OrderDocument | None, event: ProjectedEvent, names: Mapping[str, str]
) -> OrderDocument:
    """The order's document after `event`, which must be the next event of its stream."""
    expected = -1 if document is None else document.version
    if event.version != expected + 1:
        raise OutOfOrder(f"{event.stream_id}: event v{event.version} after document v{expected}")
    at = event.recorded_at.isoformat().replace("+00:00", "Z")
    data = event.data
    if isinstance(data, OrderPlaced):
        lines = tuple(
            OrderLineDocument(
                sku=line.sku,
                product_name=names.get(line.sku),
                quantity=line.quantity,
                unit_price=line.unit_price,
                line_total=line.line_total,
            )
            for line in data.lines
        )
        return OrderDocument(
            order_id=str(data.order_id),
            customer_id=data.customer_id,
            status="pending",
            lines=lines,
            total=data.total,
            currency=data.currency,
            placed_at=at,
            updated_at=at,
            version=event.version,
            position=event.position,
        )
    if document is None:
        raise OutOfOrder(f"{event.stream_id}: {event.event_type} before OrderPlaced")
    changes: dict[str, object] = {"updated_at": at, "version": event.version, "position": event.position}
    match data:
        case OrderConfirmed():
            changes["status"] = "confirmed"
        case OrderRejected():
            changes.update(status="rejected", reason=data.reason)
        case OrderCancelled():
            changes.update(status="cancelled", reason=data.reason)
        case _:
            raise OutOfOrder(f"{event.stream_id}: {event.event_type} is not an order event")
    return msgspec.structs.replace(document, **changes)


def with_names(document: OrderDocument, names: Mapping[str, str]) -> OrderDocument:
    """The document with every line's missing product name filled from `names` where known."""
    if all(line.product_name is not None or line.sku not in names for line in document.lines):
        return document
    lines = tuple(
        line
        if line.product_name is not None
        else msgspec.structs.replace(line, product_name=names.get(line.sku))
        for line in document.lines
    )
    return msgspec.structs.replace(document, lines=lines)


def skus_of(event: ProjectedEvent) -> list[str]:
    """The SKUs whose names the document for `event` needs."""
    if isinstance(event.data, OrderPlaced):
        return [line.sku for line in event.data.lines]
    return []
