"""The bearer tokens a run sends: given on the command line, or minted from the deployment's JWT secret.

Minted tokens carry the claims the services verify (`sub`, `roles`, `iss`, `aud`, `exp`), as
`mint-token` signs them; with a secret, each simulated customer gets a token of its own, so
per-subject rate limits and "customers see only their own orders" apply as in real traffic.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import jwt

__all__ = ["Credentials", "Minter"]


@dataclass(frozen=True, slots=True)
class Minter:
    """Signs HS256 tokens for the services configured with the same secret, issuer and audience."""

    secret: str
    issuer: str
    audience: str
    ttl_seconds: int = 3600

    def token(self, subject: str, roles: Sequence[str]) -> str:
        now = int(time.time())
        claims = {
            "sub": subject,
            "roles": list(roles),
            "iss": self.issuer,
            "aud": self.audience,
            "iat": now,
            "nbf": now,
            "exp": now + self.ttl_seconds,
            "jti": str(uuid.uuid4()),
        }
        return jwt.encode(claims, self.secret, algorithm="HS256")


@dataclass(frozen=True, slots=True)
class Credentials:
    """The staff token (products, stock, the saga's API) and the customers' tokens (orders)."""

    staff: str
    customers: tuple[str, ...]

    @classmethod
    def of(
        cls,
        *,
        token: str | None,
        staff_token: str | None,
        minter: Minter | None,
        customers: int,
        tag: str,
    ) -> Credentials:
        """Given tokens win; what is missing is minted. Raises ValueError naming what is needed."""
        if minter is None and (token is None or staff_token is None):
            missing = "--token" if token is None else "--staff-token"
            raise ValueError(f"give {missing} or a JWT secret to mint it (--jwt-secret or JWT_SECRET)")
        staff = staff_token or _mint(minter).token(f"load-{tag}-staff", ["staff"])
        if token is not None:
            return cls(staff=staff, customers=(token,))
        minted = _mint(minter)
        return cls(
            staff=staff,
            customers=tuple(minted.token(f"load-{tag}-customer-{i}", ["customer"]) for i in range(customers)),
        )


def _mint(minter: Minter | None) -> Minter:
    if minter is None:  # `of` checked it; this keeps the type checker's view honest
        raise ValueError("no JWT secret to mint tokens with")
    return minter
