"""Liveness (the process answers) and readiness (PostgreSQL answers too)."""

from __future__ import annotations

import asyncio

import asyncpg
import msgspec
from litestar import Response, get
from litestar.openapi.datastructures import ResponseSpec

from command_service.routes.conventions import ServicesDep

__all__ = ["live", "ready"]


class Health(msgspec.Struct, frozen=True):
    status: str
    checks: dict[str, str] = msgspec.field(default_factory=dict)


@get("/health/live", operation_id="live", summary="The process is up", security=[], tags=["health"])
async def live() -> Health:
    """Answers as long as the process serves HTTP."""
    return Health(status="ok")


@get(
    "/health/ready",
    operation_id="ready",
    summary="The service can take commands (PostgreSQL answers)",
    security=[],
    tags=["health"],
    responses={503: ResponseSpec(Health, description="PostgreSQL does not answer", generate_examples=False)},
)
async def ready(services: ServicesDep) -> Response[Health]:
    try:
        await asyncio.wait_for(services.pool.fetchval("SELECT 1"), timeout=2.0)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
        return Response(
            Health(status="unavailable", checks={"postgres": str(error) or "timeout"}), status_code=503
        )
    return Response(Health(status="ok", checks={"postgres": "ok"}))
