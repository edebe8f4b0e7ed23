"""The order read models: the search document, its versioned index mapping, and the Redis summary.

Shared by the projector (writes) and the query service (reads). Amounts are integers
in minor units with an ISO 4217 code; times are RFC 3339 UTC strings. A change to
`ORDER_MAPPINGS` or `ORDER_INDEX_SETTINGS` must bump `ORDER_MAPPING_VERSION` and reaches
the engine by a rebuild (`docs/projector.md`); only analyzers every supported engine has
are used.
"""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = [
    "ORDER_INDEX_SETTINGS",
    "ORDER_MAPPINGS",
    "ORDER_MAPPING_VERSION",
    "ORDER_STATUSES",
    "OrderDocument",
    "OrderLineDocument",
    "OrderSummary",
    "StockLevel",
    "orders_alias",
    "orders_index",
]

ORDER_MAPPING_VERSION = 1

# The statuses an order can be in, as its documents and the counts per status spell them.
ORDER_STATUSES = ("pending", "confirmed", "rejected", "cancelled")


class OrderLineDocument(msgspec.Struct, frozen=True, kw_only=True):
    """One line of an order; `product_name` is None while the SKU's registration is unknown."""

    sku: str
    product_name: str | None = None
    quantity: int
    unit_price: int
    line_total: int


class OrderDocument(msgspec.Struct, frozen=True, kw_only=True):
    """One order in the search index; its id is the order id, its external version the stream version."""

    order_id: str
    customer_id: str
    status: str
    lines: tuple[OrderLineDocument, ...]
    total: int
    currency: str
    placed_at: str
    updated_at: str
    reason: str | None = None
    version: int
    position: int


class OrderSummary(msgspec.Struct, frozen=True, kw_only=True):
    """One order in Redis (a hash; `lines` is JSON), for lookups by id."""

    order_id: str
    customer_id: str
    status: str
    total: int
    currency: str
    lines: str
    placed_at: str
    updated_at: str
    reason: str = ""
    version: int

    @classmethod
    def from_hash(cls, fields: dict[str, str]) -> OrderSummary:
        """Decode the hash Redis returns (strings only)."""
        return msgspec.convert(fields, cls, strict=False)


class StockLevel(msgspec.Struct, frozen=True, kw_only=True):
    """One SKU in Redis: its catalogue entry (name, price, active) and stock (physical, reservable).

    `unit_price` (minor units of `currency`) and `currency` are None while the
    product has no price: registered before products had prices, until it is
    priced. `active` is False while the product is deactivated. A hash written
    before these fields existed reads as unpriced and active, which is what its
    product was then.
    """

    sku: str
    name: str
    on_hand: int
    available: int
    unit_price: int | None = None
    currency: str | None = None
    active: bool = True
    version: int

    @property
    def for_sale(self) -> bool:
        """Can an order be placed for it now: active and priced (the command service's rule too)."""
        return self.active and self.unit_price is not None and self.currency is not None

    @classmethod
    def from_hash(cls, fields: dict[str, str]) -> StockLevel:
        """Decode the hash Redis returns (strings only; `active` is "1" or "0")."""
        return msgspec.convert(fields, cls, strict=False)


ORDER_INDEX_SETTINGS: dict[str, Any] = {
    "analysis": {
        "analyzer": {
            # English stop words without the `english` analyzer, which core-only Elasticsearch lacks.
            "product_text": {
                "type": "custom",
                "tokenizer": "standard",
                "filter": ["lowercase", "stop"],
            }
        }
    }
}

ORDER_MAPPINGS: dict[str, Any] = {
    "dynamic": "strict",
    "properties": {
        "order_id": {"type": "keyword"},
        "customer_id": {"type": "keyword"},
        "status": {"type": "keyword"},
        "lines": {
            "properties": {
                "sku": {"type": "keyword"},
                "product_name": {
                    "type": "text",
                    "analyzer": "product_text",
                    "fields": {"raw": {"type": "keyword", "ignore_above": 256}},
                },
                "quantity": {"type": "integer"},
                "unit_price": {"type": "long"},
                "line_total": {"type": "long"},
            }
        },
        "total": {"type": "long"},
        "currency": {"type": "keyword"},
        "placed_at": {"type": "date"},
        "updated_at": {"type": "date"},
        "reason": {"type": "text"},
        "version": {"type": "long"},
        "position": {"type": "long"},
    },
}


def orders_alias(prefix: str = "") -> str:
    """The alias queries use; it points at exactly one index at a time."""
    return f"{prefix}orders"


def orders_index(prefix: str, generation: str) -> str:
    """The concrete index of one generation, named after the mapping version it was created with."""
    return f"{prefix}orders-v{ORDER_MAPPING_VERSION}-{generation}"
