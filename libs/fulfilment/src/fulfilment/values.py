"""Value types shared by the aggregates, with the constraints msgspec checks.

Money is always an integer count of minor units (cents) next to an ISO 4217
currency code: floats cannot represent 0.10 exactly, and a total computed from
them would drift. The bounds (100 lines of 100,000 units at 100,000,000
minor units) keep a computed order total below 2**53, so the
number survives any JSON consumer, JavaScript included.
"""

from __future__ import annotations

import re
from typing import Annotated
from uuid import UUID

from msgspec import Meta

__all__ = [
    "MAX_LINES",
    "ORDER_CATEGORY",
    "PAYMENT_CATEGORY",
    "STOCK_CATEGORY",
    "Amount",
    "CanonicalSku",
    "CurrencyCode",
    "CustomerId",
    "MinorUnits",
    "ProductName",
    "ProviderReference",
    "Quantity",
    "Reason",
    "Sku",
    "StockLevel",
    "Total",
    "normalise_sku",
    "order_id_of",
    "order_stream",
    "payment_order_id_of",
    "payment_stream",
    "sku_of",
    "stock_stream",
]

MAX_LINES = 100

Sku = Annotated[
    str,
    Meta(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$",
        description="Stock keeping unit: letters, digits, '_' and '-'; case-insensitive (stored lowercase).",
        examples=["SKU-1001"],
    ),
]
CanonicalSku = Annotated[
    str,
    Meta(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$", description="A SKU in its canonical, lowercase form."),
]
Quantity = Annotated[int, Meta(ge=1, le=100_000, description="A count of units, at least 1.")]
StockLevel = Annotated[int, Meta(ge=0, description="A count of units, possibly 0.")]
MinorUnits = Annotated[
    int,
    Meta(ge=0, le=100_000_000, description="An amount in the currency's minor units (cents), never a float."),
]
Amount = Annotated[
    int,
    Meta(ge=1, le=MAX_LINES * 100_000 * 100_000_000, description="A positive amount in minor units (cents)."),
]
Total = Annotated[int, Meta(ge=0, description="A computed amount in minor units.")]
CurrencyCode = Annotated[str, Meta(pattern=r"^[A-Z]{3}$", description="ISO 4217 code.", examples=["EUR"])]
# Free text never holds control characters: PostgreSQL cannot store NUL in JSON at all, and the
# others break the logs, terminals and CSV exports the text ends up in.
_TEXT = r"^[^\x00-\x1f\x7f]+$"
CustomerId = Annotated[
    str, Meta(min_length=1, max_length=200, pattern=_TEXT, description="The customer's subject id.")
]
Reason = Annotated[str, Meta(min_length=1, max_length=500, pattern=_TEXT)]
ProductName = Annotated[str, Meta(min_length=1, max_length=200, pattern=_TEXT)]
ProviderReference = Annotated[str, Meta(min_length=1, max_length=200, pattern=_TEXT)]

_SKU = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


def normalise_sku(sku: str) -> str:
    """The canonical form of a SKU: SKUs are case-insensitive, so `ABC-1` and `abc-1` are one item."""
    if not _SKU.fullmatch(sku):
        raise ValueError(f"not a SKU: {sku!r}")
    return sku.lower()


# Stream categories: a stream id is `{category}-{id}`, and each category is one Kafka topic.
ORDER_CATEGORY = "order"
STOCK_CATEGORY = "stock"
PAYMENT_CATEGORY = "payment"


def order_stream(order_id: UUID) -> str:
    """The id of an order's event stream."""
    return f"{ORDER_CATEGORY}-{order_id}"


def order_id_of(stream_id: str) -> UUID:
    """The order id in an order's stream id; `ValueError` for any other stream id."""
    return UUID(_id_in(stream_id, ORDER_CATEGORY))


def stock_stream(sku: str) -> str:
    """The id of a stock item's event stream (one stream per SKU)."""
    return f"{STOCK_CATEGORY}-{normalise_sku(sku)}"


def sku_of(stream_id: str) -> str:
    """The canonical SKU in a stock item's stream id; `ValueError` for any other stream id."""
    return normalise_sku(_id_in(stream_id, STOCK_CATEGORY))


def payment_stream(order_id: UUID) -> str:
    """The id of the stream of an order's payment."""
    return f"{PAYMENT_CATEGORY}-{order_id}"


def payment_order_id_of(stream_id: str) -> UUID:
    """The order id in a payment's stream id; `ValueError` for any other stream id."""
    return UUID(_id_in(stream_id, PAYMENT_CATEGORY))


def _id_in(stream_id: str, category: str) -> str:
    prefix = f"{category}-"
    if not stream_id.startswith(prefix):
        raise ValueError(f"{stream_id!r} is not a stream id of category {category!r}")
    return stream_id[len(prefix) :]
