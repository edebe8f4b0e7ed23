"""The suite's read models: the search-engine client, index mappings and Redis layout.

The projector writes them and the query service reads them; both import the
shapes from here so the two sides cannot drift apart.
"""

from readmodels.search import (
    BulkFailed,
    BulkOutcome,
    BulkWrite,
    Hit,
    IndexNotFound,
    SearchClient,
    SearchPage,
    SearchUnavailable,
    VersionConflict,
    connect_search,
)

__all__ = [
    "BulkFailed",
    "BulkOutcome",
    "BulkWrite",
    "Hit",
    "IndexNotFound",
    "SearchClient",
    "SearchPage",
    "SearchUnavailable",
    "VersionConflict",
    "connect_search",
]
