"""The one check in front of every protected route: authenticate, rate-limit, authorise, in that order.

No valid token is 401 (still counted against the caller's address), a subject over
its allowance is 429, and only then is a missing role 403. Install it as the
protected router's `before_request` and call `require_access_check(app, access)`,
which refuses at start-up a route with `opt=allow(...)` this hook does not check
(why a hook, not a guard: `docs/architecture.md`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from litestar import Litestar, Request
from litestar.handlers import HTTPRouteHandler

from servicekit.auth import TokenVerifier, bearer_token
from servicekit.errors import AuthenticationFailed, NotAllowed
from servicekit.ratelimit import RateLimiter
from servicekit.settings import SettingsError

__all__ = ["AccessCheck", "access_check", "require_access_check"]

_AUTHORIZATION = b"authorization"


type AccessCheck = Callable[[Request[Any, Any, Any]], Awaitable[None]]


def access_check(verifier: TokenVerifier, limiter: RateLimiter) -> AccessCheck:
    """The `before_request` hook; each route names its roles with `opt=allow(...)` (none named: nobody
    passes)."""

    async def check(request: Request[Any, Any, Any]) -> None:
        scope = request.scope
        try:
            principal = await verifier.verify(bearer_token(_authorization(scope["headers"])))
        except AuthenticationFailed:
            # Requests without a valid token have no subject to limit: limit their address instead,
            # so guessing tokens or flooding the verifier costs the caller its allowance too.
            client = scope.get("client")
            await limiter.check(f"address:{client[0] if client else 'unknown'}")
            raise
        scope["user"] = principal
        await limiter.check(principal.subject)
        accepted: frozenset[str] = request.route_handler.opt.get("roles", frozenset())
        if not principal.roles & accepted:
            raise NotAllowed(f"this endpoint needs the role {' or '.join(sorted(accepted))}")

    return check


def require_access_check(app: Litestar, check: AccessCheck) -> None:
    """Raise `SettingsError` unless every route of `app` that names roles runs `check` first."""
    unchecked = sorted(
        f"{method} {path}"
        for path, methods in app.route_handler_method_map.items()
        for method, handler in methods.items()
        if isinstance(handler, HTTPRouteHandler)
        and "roles" in handler.opt
        and handler.resolve_before_request() is not check
    )
    if unchecked:
        raise SettingsError(f"routes that name roles but are not access-checked: {', '.join(unchecked)}")


def _authorization(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    # Straight from the ASGI headers (their names are lower case): building the request's header
    # mapping for this one value would cost as much as the check itself.
    for name, value in headers:
        if name == _AUTHORIZATION:
            return value.decode("latin-1")
    return None
