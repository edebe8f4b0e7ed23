"""The suite's read models: the search-engine client, index mappings and Redis layout.

The projector writes them and the query service reads them; both import the
shapes from here so the two sides cannot drift apart.
"""

from readmodels.search import SearchClient, SearchUnavailable, VersionConflict, connect_search

__all__ = ["SearchClient", "SearchUnavailable", "VersionConflict", "connect_search"]
