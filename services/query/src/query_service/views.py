"""What the query service answers: response bodies, built from the read models' shapes."""

from __future__ import annotations

from typing import Annotated

import msgspec
from readmodels.orders import OrderDocument, OrderSummary, StockLevel

__all__ = [
    "OrderLineView",
    "OrderPageView",
    "OrderView",
    "RecentOrdersView",
    "StatusCountsView",
    "StockView",
    "order_from_document",
    "order_from_summary",
    "stock_view",
]


class OrderLineView(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    sku: str
    quantity: int
    unit_price: int
    line_total: int
    # Known to the search index (from the SKU's registration); reads by id come from Redis without it.
    product_name: str | None = None


class OrderView(msgspec.Struct, frozen=True, kw_only=True):
    """One order as the read models show it. Amounts are in minor units of `currency`."""

    order_id: str
    customer_id: str
    status: str
    lines: list[OrderLineView]
    total: int
    currency: str
    placed_at: str
    updated_at: str
    reason: str | None = None
    version: int


class OrderPageView(msgspec.Struct, frozen=True, kw_only=True):
    """One page of a search; send `next_cursor` back as `cursor` (with the same filters) for the next."""

    orders: list[OrderView]
    next_cursor: str | None


class RecentOrdersView(msgspec.Struct, frozen=True, kw_only=True):
    customer_id: str
    orders: list[OrderView]


class StatusCountsView(msgspec.Struct, frozen=True, kw_only=True):
    """How many orders are in each status (every status listed, zero included), and their sum."""

    counts: dict[str, int]
    total: int


class StockView(msgspec.Struct, frozen=True, kw_only=True):
    """A product as a customer sees it before ordering: its price, whether it can be ordered, its stock.

    An order pays the catalogue's price at the moment it is placed; the command
    service refuses an order for a product that is not `for_sale`.
    """

    sku: str
    name: str
    unit_price: Annotated[
        int | None,
        msgspec.Meta(
            description="What an order placed now pays per unit, in minor units; null: no price yet."
        ),
    ]
    currency: Annotated[str | None, msgspec.Meta(description="ISO 4217 code of `unit_price`; null with it.")]
    active: Annotated[bool, msgspec.Meta(description="False while staff have deactivated the product.")]
    for_sale: Annotated[
        bool, msgspec.Meta(description="Can it be ordered now: active and priced (else orders are refused).")
    ]
    on_hand: Annotated[int, msgspec.Meta(description="Units in the warehouse.")]
    available: Annotated[
        int, msgspec.Meta(description="Units on hand not reserved for orders: what can still be reserved.")
    ]
    version: int


_lines = msgspec.json.Decoder(list[OrderLineView])


def order_from_summary(summary: OrderSummary) -> OrderView:
    return OrderView(
        order_id=summary.order_id,
        customer_id=summary.customer_id,
        status=summary.status,
        lines=_lines.decode(summary.lines),
        total=summary.total,
        currency=summary.currency,
        placed_at=summary.placed_at,
        updated_at=summary.updated_at,
        reason=summary.reason or None,
        version=summary.version,
    )


def order_from_document(document: OrderDocument) -> OrderView:
    return OrderView(
        order_id=document.order_id,
        customer_id=document.customer_id,
        status=document.status,
        lines=[
            OrderLineView(
                sku=line.sku,
                quantity=line.quantity,
                unit_price=line.unit_price,
                line_total=line.line_total,
                product_name=line.product_name,
            )
            for line in document.lines
        ],
        total=document.total,
        currency=document.currency,
        placed_at=document.placed_at,
        updated_at=document.updated_at,
        reason=document.reason or None,
        version=document.version,
    )


def stock_view(level: StockLevel) -> StockView:
    return StockView(
        sku=level.sku,
        name=level.name,
        unit_price=level.unit_price,
        currency=level.currency,
        active=level.active,
        for_sale=level.for_sale,
        on_hand=level.on_hand,
        available=level.available,
        version=level.version,
    )
