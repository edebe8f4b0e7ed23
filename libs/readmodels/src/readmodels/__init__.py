"""The suite's read models: the search-engine client, index mappings and Redis layout.

The projector writes them and the query service reads them; both import the
shapes from here so the two sides cannot drift apart.
"""

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
