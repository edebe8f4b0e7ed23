"""The one guard in front of every protected route: authenticate, rate-limit, authorise, in that order.

The order decides the answer: no valid token is 401 before anything else (but
counts against the caller's address, so unauthenticated floods are limited too), a
subject over its allowance is 429 whatever it asked for, and only then is a
missing role 403. It is one guard rather than three because Litestar copies the
route handler for every guard it calls, once per request.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler

from servicekit.auth import TokenVerifier, bearer_token
from servicekit.errors import AuthenticationFailed, NotAllowed
from servicekit.ratelimit import RateLimiter

__all__ = ["Guard", "access_guard"]

type Guard = Callable[[ASGIConnection[Any, Any, Any, Any], BaseRouteHandler], Awaitable[None]]


def access_guard(verifier: TokenVerifier, limiter: RateLimiter) -> Guard:
    """The guard; each route names its roles with `opt=allow(...)` (no roles named: nobody passes)."""

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
        try:
            principal = await verifier.verify(bearer_token(connection.headers.get("authorization")))
        except AuthenticationFailed:
            # Requests without a valid token have no subject to limit: limit their address instead,
            # so guessing tokens or flooding the verifier costs the caller its allowance too.
            client = connection.client
            await limiter.check(f"address:{client.host if client else 'unknown'}")
            raise
        connection.scope["user"] = principal
        await limiter.check(principal.subject)
        accepted: frozenset[str] = handler.opt.get("roles", frozenset())
        if not principal.roles & accepted:
            raise NotAllowed(f"this endpoint needs the role {' or '.join(sorted(accepted))}")

    return guard
