"""`python -m query_service` (or `query-service`): serve the query API with uvicorn.

Settings come from the environment (see `query_service.settings`); the kit's
runner does the rest: a bad variable exits 2 naming it, SIGTERM drains
in-flight requests before the clients close.
"""

from __future__ import annotations

from servicekit.runner import serve

from query_service.app import create_app
from query_service.settings import QuerySettings

__all__ = ["main"]


def main() -> int:
    """Run the service until it is told to stop; the exit code says whether it started."""
    return serve("query-service", QuerySettings, create_app, prefix="QUERY_")


if __name__ == "__main__":
    raise SystemExit(main())
