"""The one check in front of every protected route: authenticate, rate-limit, authorise, in that order.

The order decides the answer: no valid token is 401 before anything else (but
counts against the caller's address, so unauthenticated floods are limited too), a
subject over its allowance is 429 whatever it asked for, and only then is a
missing role 403.

    access = access_check(build_verifier(settings), RateLimiter(...))
    protected = Router(path="/", route_handlers=[...], before_request=access)
    app = Litestar(route_handlers=[protected, ...], ...)
    require_access_check(app, access)

It is a `before_request` hook rather than a guard because Litestar hands every
guard a copy of the route handler, made anew for each request: about 12 µs, as
much as the whole check, on every request of every protected route. A hook is
called with the request alone. Unlike guards, hooks do not add up across layers:
the one closest to a route replaces the others. So `require_access_check` refuses, at
start-up, an app where a route that names its roles (`opt=allow(...)`) is not
checked by this hook, and a route's own `before_request` cannot switch access
control off unnoticed.
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
