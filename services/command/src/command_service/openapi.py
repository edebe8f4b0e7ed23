"""The command API's OpenAPI document (served as /schema/openapi.json and .yaml, see servicekit.openapi)."""

from __future__ import annotations

from litestar.openapi.config import OpenAPIConfig
from servicekit.openapi import api_openapi_config

__all__ = ["openapi_config"]


def openapi_config() -> OpenAPIConfig:
    """The document's title and description; the rest is the suite's (`servicekit.openapi`)."""
    return api_openapi_config(
        title="Fulfilment command API",
        description="One endpoint per command. Every command needs a bearer token carrying the role its "
        "operation names, and an Idempotency-Key; bodies are strict JSON (see the service's README); "
        "errors are RFC 9457 problem details (`application/problem+json`). "
        "Every accepted command answers its `position`: send it to the query service as "
        "`X-Consistency-Token` and the read models it reads will include the command's effect.",
    )
