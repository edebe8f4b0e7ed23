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
    "Price",
    "ProductName",
    "ProviderReference",
    "Quantity",
    "Reason",
    "RecordedCurrencyCode",
    "RecordedCustomerId",
    "RecordedProductName",
    "RecordedProviderReference",
    "RecordedReason",
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
    "whole",
]

MAX_LINES = 100


def whole(regex: str) -> str:
    r"""`regex` anchored to the whole string, for a msgspec or OpenAPI `pattern`.

    msgspec checks a pattern with Python's `re.search`, where `$` also matches before
    a final newline: `^[A-Z]{3}$` lets `"EUR\n"` through. `\Z` would fix Python but
    means something else in ECMAScript, the dialect the OpenAPI document promises;
    `$(?!\n)` ("the end, and not a newline before it") says the same in both.
    """
    return f"^(?:{regex})$(?!\\n)"


Sku = Annotated[
    str,
    Meta(
        pattern=whole(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}"),
        description="Stock keeping unit: letters, digits, '_' and '-'; case-insensitive (stored lowercase).",
        examples=["SKU-1001"],
    ),
]
# Only in events (see the Recorded types below): its published pattern stays as it is.
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
Price = Annotated[
    int,
    Meta(ge=1, le=100_000_000, description="A product's unit price in minor units (cents): at least 1."),
]
Amount = Annotated[
    int,
    Meta(ge=1, le=MAX_LINES * 100_000 * 100_000_000, description="A positive amount in minor units (cents)."),
]
Total = Annotated[int, Meta(ge=0, description="A computed amount in minor units.")]
CurrencyCode = Annotated[
    str, Meta(pattern=whole(r"[A-Z]{3}"), description="ISO 4217 code.", examples=["EUR"])
]
# Free text never holds control characters (C0, DEL and C1): PostgreSQL cannot store NUL in JSON
# at all, and the others break the logs, terminals and CSV exports the text ends up in. Nor the
# bidirectional embedding, override and isolate controls, which make text display otherwise than it
# reads (a name that shows as "invoice.pdf" but is "fdp.eciovni"): "Trojan Source", CVE-2021-42574.
_TEXT = whole(r"[^\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]+")
CustomerId = Annotated[
    str, Meta(min_length=1, max_length=200, pattern=_TEXT, description="The customer's subject id.")
]
Reason = Annotated[str, Meta(min_length=1, max_length=500, pattern=_TEXT)]
ProductName = Annotated[str, Meta(min_length=1, max_length=200, pattern=_TEXT)]
ProviderReference = Annotated[str, Meta(min_length=1, max_length=200, pattern=_TEXT)]

# Events keep the patterns their schemas were published with (schemas/*.v1.json): events stored
# before the stricter input rules above must still decode, and a stricter event schema would be a
# new schema version. New input meets the stricter types before it ever becomes an event.
_RECORDED_TEXT = r"^[^\x00-\x1f\x7f]+$"
RecordedCurrencyCode = Annotated[
    str, Meta(pattern=r"^[A-Z]{3}$", description="ISO 4217 code.", examples=["EUR"])
]
RecordedCustomerId = Annotated[
    str, Meta(min_length=1, max_length=200, pattern=_RECORDED_TEXT, description="The customer's subject id.")
]
RecordedReason = Annotated[str, Meta(min_length=1, max_length=500, pattern=_RECORDED_TEXT)]
RecordedProductName = Annotated[str, Meta(min_length=1, max_length=200, pattern=_RECORDED_TEXT)]
RecordedProviderReference = Annotated[str, Meta(min_length=1, max_length=200, pattern=_RECORDED_TEXT)]

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
