"""The OpenAPI document the service serves at /schema (JSON at /schema/openapi.json)."""

from __future__ import annotations

from litestar.openapi.config import OpenAPIConfig
from servicekit.openapi import api_openapi_config

__all__ = ["openapi_config"]


def openapi_config() -> OpenAPIConfig:
    """Title, bearer security scheme and renderer of the document."""
    return api_openapi_config(
        title="Fulfilment command API",
        description="One endpoint per command. Every command needs a bearer token and an "
        "Idempotency-Key; errors are RFC 9457 problem details (`application/problem+json`). "
        "Every accepted command answers its `position`: send it to the query service as "
        "`X-Consistency-Token` and the read models it reads will include the command's effect.",
    )
