"""The suite's read models: the search-engine client, index mappings and Redis layout.

The projector writes them and the query service reads them; both import the
shapes from here so the two sides cannot drift apart.

The names below are imported on first use (PEP 562): the search clients take
seconds to import on a loaded machine, and a command that only reads Redis
(`projector position`) imports `readmodels.keyspace` without paying for them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from readmodels.keyspace import Keyspace, RedisModelKeys, read_position, wait_for_position
    from readmodels.orders import OrderDocument, OrderLineDocument, OrderSummary, StockLevel
    from readmodels.rebuilding import ReadModelRebuilding, model_lost
    from readmodels.search import (
        BulkFailed,
        BulkOutcome,
        BulkWrite,
        Hit,
        IndexNotFound,
        SearchClient,
        SearchPage,
        SearchUnavailable,
        StoredDocument,
        VersionConflict,
        connect_search,
    )

__all__ = [
    "BulkFailed",
    "BulkOutcome",
    "BulkWrite",
    "Hit",
    "IndexNotFound",
    "Keyspace",
    "OrderDocument",
    "OrderLineDocument",
    "OrderSummary",
    "ReadModelRebuilding",
    "RedisModelKeys",
    "SearchClient",
    "SearchPage",
    "SearchUnavailable",
    "StockLevel",
    "StoredDocument",
    "VersionConflict",
    "connect_search",
    "model_lost",
    "read_position",
    "wait_for_position",
]

_MODULES = {
    "keyspace": ("Keyspace", "RedisModelKeys", "read_position", "wait_for_position"),
    "orders": ("OrderDocument", "OrderLineDocument", "OrderSummary", "StockLevel"),
    "rebuilding": ("ReadModelRebuilding", "model_lost"),
}
_HOME = {name: module for module, names in _MODULES.items() for name in names}


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'readmodels' has no attribute {name!r}")
    module = importlib.import_module(f"readmodels.{_HOME.get(name, 'search')}")
    return getattr(module, name)
