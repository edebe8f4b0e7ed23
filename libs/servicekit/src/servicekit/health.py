"""Liveness and readiness, one shape for every service, built from named checks.

`/health/live` answers whether the process should be restarted; `/health/ready`
whether it should get traffic (or, for a consumer, whether it is doing its job).
A check is an async function that returns `None` when all is well and a short
reason otherwise; raising counts as failing with the error as the reason, and a
check that takes longer than `CHECK_TIMEOUT_SECONDS` fails as a timeout. The
checks run concurrently, so one slow dependency does not hide the others.

    {"status": "unavailable", "checks": {"postgres": "ok", "kafka": "no broker answers"}}
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping

import asyncpg
import msgspec
from litestar import Response, get
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.datastructures import ResponseSpec

__all__ = ["CHECK_TIMEOUT_SECONDS", "Check", "Health", "evaluate", "health_routes", "postgres_check"]

CHECK_TIMEOUT_SECONDS = 2.0
OK = "ok"

type Check = Callable[[], Awaitable[str | None]]


class Health(msgspec.Struct, frozen=True):
    """`status` is `ok` or `unavailable`; `checks` says, per check, `ok` or why not."""

    status: str
    checks: dict[str, str] = msgspec.field(default_factory=dict)


async def _run(check: Check) -> str:
    try:
        reason = await asyncio.wait_for(check(), timeout=CHECK_TIMEOUT_SECONDS)
    except TimeoutError:
        return f"no answer within {CHECK_TIMEOUT_SECONDS:g} s"
    except Exception as error:  # a failing check is an answer, not an error of the endpoint
        return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    return OK if reason is None else reason


async def evaluate(checks: Mapping[str, Check]) -> Health:
    """Run every check concurrently; healthy only when all of them are."""
    results = await asyncio.gather(*(_run(check) for check in checks.values()))
    named = dict(zip(checks, results, strict=True))
    return Health(status=OK if all(result == OK for result in results) else "unavailable", checks=named)


def postgres_check(pool: Callable[[], asyncpg.Pool | None]) -> Check:
    """A readiness check that PostgreSQL answers on the pool `pool()` returns (None: not opened yet)."""

    async def check() -> str | None:
        current = pool()
        if current is None:
            return "not connected yet"
        await current.fetchval("SELECT 1")
        return None

    return check


def health_routes(
    *, ready: Mapping[str, Check], live: Mapping[str, Check] | None = None
) -> list[HTTPRouteHandler]:
    """`GET /health/live` and `GET /health/ready`, answering 200 or 503 with a `Health` body."""
    # Kept as given, not copied: a service's start-up may add checks as it opens what they check.
    live_checks = live or {}
    ready_checks = ready
    unavailable = {503: ResponseSpec(Health, description="a check failed", generate_examples=False)}

    @get(
        "/health/live",
        operation_id="live",
        summary="The process is up and should not be restarted",
        security=[],
        tags=["health"],
        responses=unavailable,
    )
    async def live_route() -> Response[Health]:
        return _answer(await evaluate(live_checks))

    @get(
        "/health/ready",
        operation_id="ready",
        summary=f"The service can do its job ({', '.join(ready_checks) or 'nothing to check'})",
        security=[],
        tags=["health"],
        responses=unavailable,
    )
    async def ready_route() -> Response[Health]:
        return _answer(await evaluate(ready_checks))

    return [live_route, ready_route]


def _answer(health: Health) -> Response[Health]:
    return Response(health, status_code=200 if health.status == OK else 503)
