"""`mint-token`: signs local development tokens the service accepts.

    mint-token --subject alice --role customer
    mint-token --subject saga --role service --ttl 86400

The secret, issuer and audience default to the service's own variables
(JWT_SECRET, JWT_ISSUER, JWT_AUDIENCE), so a token minted in the same shell
verifies. With `--private-key` it signs RS256 or ES256 instead, for a service
configured with the matching JWKS.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jwt

from servicekit.auth import ROLES

__all__ = ["main", "mint"]


def mint(
    *,
    subject: str,
    roles: Sequence[str],
    issuer: str,
    audience: str,
    key: Any,
    algorithm: str = "HS256",
    ttl_seconds: int = 3600,
    kid: str | None = None,
    now: float | None = None,
    extra_claims: dict[str, Any] | None = None,
) -> str:
    """A signed token for `subject` with `roles`, valid from now for `ttl_seconds`."""
    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {
        "sub": subject,
        "roles": list(roles),
        "iss": issuer,
        "aud": audience,
        "iat": issued,
        "nbf": issued,
        "exp": issued + ttl_seconds,
        "jti": str(uuid.uuid4()),
        **(extra_claims or {}),
    }
    headers = {"kid": kid} if kid else None
    return jwt.encode(claims, key, algorithm=algorithm, headers=headers)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `mint-token`."""
    parser = argparse.ArgumentParser(
        prog="mint-token",
        description="Sign a development token for the suite's APIs.",
        epilog="environment variables it reads (the service's own, so a token minted in the same shell\n"
        "verifies; each is the default of its option):\n"
        "  JWT_SECRET      --secret (HS256; not needed with --private-key)\n"
        "  JWT_ISSUER      --issuer\n"
        "  JWT_AUDIENCE    --audience\n"
        "It connects to no server.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--subject", "--sub", required=True, help="the `sub` claim (customers: their customer id)"
    )
    parser.add_argument("--role", action="append", choices=sorted(ROLES), required=True, help="repeatable")
    parser.add_argument("--ttl", type=int, default=3600, help="seconds until it expires (default 3600)")
    parser.add_argument("--issuer", default=os.environ.get("JWT_ISSUER"), help="default $JWT_ISSUER")
    parser.add_argument("--audience", default=os.environ.get("JWT_AUDIENCE"), help="default $JWT_AUDIENCE")
    parser.add_argument(
        "--secret", default=os.environ.get("JWT_SECRET"), help="HS256 secret (default $JWT_SECRET)"
    )
    parser.add_argument("--private-key", type=Path, help="PEM private key: sign RS256/ES256 instead of HS256")
    parser.add_argument("--algorithm", choices=["RS256", "ES256"], default="RS256", help="with --private-key")
    parser.add_argument("--kid", help="the key id of --private-key in the JWKS")
    args = parser.parse_args(argv)
    if not args.issuer or not args.audience:
        parser.error("set --issuer/--audience or JWT_ISSUER/JWT_AUDIENCE")
    if args.private_key is not None:
        try:
            key: Any = args.private_key.read_bytes()
        except OSError as error:
            parser.error(f"--private-key: {error.strerror}: {args.private_key}")
        algorithm = args.algorithm
    elif args.secret:
        key, algorithm = args.secret, "HS256"
    else:
        parser.error("set --secret or JWT_SECRET (or --private-key)")
    try:
        token = mint(
            subject=args.subject,
            roles=args.role,
            issuer=args.issuer,
            audience=args.audience,
            key=key,
            algorithm=algorithm,
            ttl_seconds=args.ttl,
            kid=args.kid,
        )
    except (ValueError, TypeError, jwt.PyJWTError) as error:  # a key that is not a PEM key of that type
        print(f"mint-token: cannot sign {algorithm} with that key: {error}", file=sys.stderr)
        return 1
    sys.stdout.write(token + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
