"""Bearer-token authentication (PyJWT) and the roles each endpoint accepts.

A token needs a valid signature, `exp`, `iss`, `aud` and `sub` (`nbf` when present,
with `leeway`); only configured algorithms are accepted, each with its own key source
(HS256: the secret; RS256/ES256: the JWKS), so `alg: none` and algorithm confusion fail.
Roles come from a `roles` list of known names (anything else is refused) and, with
`JWT_SCOPE_ROLES=true`, from `scope`. The subject must be 1 to 200 printable ASCII
characters without spaces: it becomes a customer id in events and a Redis key.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import jwt
import msgspec
from litestar.connection import ASGIConnection

from servicekit.errors import AuthenticationFailed
from servicekit.jwks import KEY_TYPES, JwksError, JwksKeys
from servicekit.settings import ApiSettings, SettingsError

__all__ = [
    "CUSTOMER",
    "ROLES",
    "SERVICE",
    "STAFF",
    "Principal",
    "TokenVerifier",
    "allow",
    "bearer_token",
    "build_verifier",
    "principal_of",
    "requires",
]

CUSTOMER, STAFF, SERVICE = "customer", "staff", "service"
ROLES = frozenset({CUSTOMER, STAFF, SERVICE})
MIN_SECRET_BYTES = 32
# Verified tokens are remembered for at most this long (and never past their expiry), so a key
# removed from the JWKS stops working within a minute.
_CACHE_SECONDS = 60.0
_CACHE_SIZE = 10_000
_SUBJECT = re.compile(r"[!-~]{1,200}")


class Principal(msgspec.Struct, frozen=True):
    """Who is calling: the token's subject and the roles it grants."""

    subject: str
    roles: frozenset[str]


class TokenVerifier:
    """Turns a bearer token into a `Principal`, or raises `AuthenticationFailed` saying why."""

    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        algorithms: Sequence[str],
        leeway_seconds: float = 30,
        secret: bytes | None = None,
        jwks: JwksKeys | None = None,
        scope_grants_roles: bool = False,
    ) -> None:
        unknown = set(algorithms) - {"HS256", *KEY_TYPES}
        if unknown or not algorithms:
            raise SettingsError(
                f"JWT_ALGORITHMS: only HS256, RS256, ES256 are supported, not {sorted(unknown)}"
            )
        if "HS256" in algorithms and (secret is None or len(secret) < MIN_SECRET_BYTES):
            raise SettingsError(f"JWT_SECRET: HS256 needs a secret of at least {MIN_SECRET_BYTES} bytes")
        if set(algorithms) & set(KEY_TYPES) and jwks is None:
            raise SettingsError("JWT_JWKS_FILE or JWT_JWKS_URL: RS256/ES256 need public keys")
        self._issuer = issuer
        self._audience = audience
        self._algorithms = frozenset(algorithms)
        self._leeway = leeway_seconds
        self._secret = secret
        self._jwks = jwks
        self._scope_grants_roles = scope_grants_roles
        self._verified: dict[str, tuple[Principal, float]] = {}

    async def verify(self, token: str) -> Principal:
        """The principal of a valid token."""
        # A client sends the same token with every request until it expires; checking its signature
        # once a minute instead of every time is most of what authentication costs.
        cached = self._verified.get(token)
        if cached is not None and time.time() < cached[1]:
            return cached[0]
        principal, expires = await self._verify(token)
        if len(self._verified) >= _CACHE_SIZE:
            self._verified.clear()
        self._verified[token] = (principal, min(expires + self._leeway, time.time() + _CACHE_SECONDS))
        return principal

    async def _verify(self, token: str) -> tuple[Principal, float]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as error:
            raise AuthenticationFailed("the token is not a well-formed JWT") from error
        algorithm = header.get("alg")
        if not isinstance(algorithm, str) or algorithm not in self._algorithms:
            raise AuthenticationFailed(f"tokens signed with {algorithm!r} are not accepted")
        key = await self._key(header, algorithm)
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError as error:
            raise AuthenticationFailed("the token has expired") from error
        except jwt.ImmatureSignatureError as error:
            raise AuthenticationFailed("the token is not valid yet (nbf)") from error
        except jwt.InvalidAudienceError as error:
            raise AuthenticationFailed("the token is for another audience") from error
        except jwt.InvalidIssuerError as error:
            raise AuthenticationFailed("the token is from another issuer") from error
        except jwt.InvalidSignatureError as error:
            raise AuthenticationFailed("the token's signature does not verify") from error
        except jwt.PyJWTError as error:
            raise AuthenticationFailed(f"the token is invalid: {error}") from error
        subject = claims["sub"]
        # The subject becomes a customer id in events: the same rules as any other text in them.
        if not isinstance(subject, str) or not _SUBJECT.fullmatch(subject):
            raise AuthenticationFailed("the token's subject is not 1-200 printable ASCII characters")
        roles = _roles(claims, scope_grants_roles=self._scope_grants_roles)
        return Principal(subject=subject, roles=roles), float(claims["exp"])

    async def _key(self, header: dict[str, Any], algorithm: str) -> Any:
        if algorithm == "HS256":
            return self._secret
        assert self._jwks is not None
        kid = header.get("kid")
        try:
            return await self._jwks.key_for(kid if isinstance(kid, str) else None, algorithm)
        except JwksError as error:
            raise AuthenticationFailed("the token was signed with an unknown key") from error


def _roles(claims: dict[str, Any], *, scope_grants_roles: bool) -> frozenset[str]:
    roles = claims.get("roles", [])
    if not isinstance(roles, list) or not all(isinstance(role, str) for role in roles):
        raise AuthenticationFailed("the token's roles claim is not a list of role names")
    unknown = set(roles) - ROLES
    if unknown:
        raise AuthenticationFailed(f"the token names unknown roles: {', '.join(sorted(unknown))[:200]}")
    granted = set(roles)
    scope = claims.get("scope")
    if scope_grants_roles and isinstance(scope, str):
        granted.update(set(scope.split()) & ROLES)
    return frozenset(granted)


def build_verifier(settings: ApiSettings, client: httpx.AsyncClient | None = None) -> TokenVerifier:
    """The verifier the settings describe; raises `SettingsError` for an unusable combination."""
    jwks = None
    if settings.jwt_jwks_file and settings.jwt_jwks_url:
        raise SettingsError("JWT_JWKS_FILE, JWT_JWKS_URL: set one of them, not both")
    try:
        if settings.jwt_jwks_file:
            jwks = JwksKeys(file=Path(settings.jwt_jwks_file))
        elif settings.jwt_jwks_url:
            jwks = JwksKeys(url=settings.jwt_jwks_url, client=client)
    except JwksError as error:
        raise SettingsError(f"JWT_JWKS_FILE: {error}") from error
    return TokenVerifier(
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        algorithms=settings.algorithms,
        leeway_seconds=settings.jwt_leeway_seconds,
        secret=settings.jwt_secret.encode() if settings.jwt_secret else None,
        jwks=jwks,
        scope_grants_roles=settings.jwt_scope_roles,
    )


def bearer_token(authorization: str | None) -> str:
    """The token of an `Authorization: Bearer ...` header."""
    if not authorization:
        raise AuthenticationFailed("send a bearer token in the Authorization header", error=None)
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationFailed(
            "the Authorization header must be `Bearer <token>`", error="invalid_request"
        )
    return token.strip()


def principal_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal:
    """The principal the access check (`servicekit.access`) authenticated."""
    principal = connection.scope.get("user")
    if not isinstance(principal, Principal):
        raise AuthenticationFailed("send a bearer token in the Authorization header", error=None)
    return principal


def allow(*roles: str) -> dict[str, Any]:
    """Route `opt` naming the roles that may call it: `@post(..., opt=allow(STAFF))`."""
    return {"roles": frozenset(roles)}


def requires(*roles: str, scheme: str = "bearer") -> dict[str, Any]:
    """Route keywords naming the roles that may call it, for the access check and the OpenAPI document.

    `@post(..., **requires(STAFF))`: the access check reads `opt` (see `allow`); the document gets a
    security requirement on the bearer `scheme` listing the roles (OpenAPI 3.1 allows role names
    for non-OAuth schemes) and a description that says it in words.
    """
    names = sorted(roles)
    return {
        "opt": allow(*roles),
        "security": [{scheme: names}],
        "description": f"Requires role: {' or '.join(names)}.",
    }
