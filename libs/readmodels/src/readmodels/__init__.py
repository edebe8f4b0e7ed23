"""The suite's read models: the search-engine client, index mappings and Redis layout.

The projector writes them and the query service reads them; both import the
shapes from here so the two sides cannot drift apart.
"""

from readmodels.keyspace import Keyspace, RedisModelKeys, read_position, wait_for_position
from readmodels.orders import OrderDocument, OrderLineDocument, OrderSummary, StockLevel
from readmodels.search import SearchClient, SearchUnavailable, VersionConflict, connect_search

__all__ = [
    "Keyspace",
    "OrderDocument",
    "OrderLineDocument",
    "OrderSummary",
    "RedisModelKeys",
    "SearchClient",
    "SearchUnavailable",
    "StockLevel",
    "VersionConflict",
    "connect_search",
    "read_position",
    "wait_for_position",
]
