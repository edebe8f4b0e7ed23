"""HMAC signatures of provider webhooks: `Sandbox-Signature: t=<unix seconds>,v1=<hex>`.

The signature is HMAC-SHA256 over `<t>.<raw body>` with the shared secret, as
real providers do it: the timestamp inside the signed text stops an old
delivery being replayed later, and comparing in constant time stops the
signature being guessed byte by byte.
"""

from __future__ import annotations

import hashlib
import hmac
import time

__all__ = ["SIGNATURE_HEADER", "InvalidSignature", "sign", "verify"]

SIGNATURE_HEADER = "Sandbox-Signature"
TOLERANCE_SECONDS = 300


class InvalidSignature(Exception):
    """The webhook's signature is missing, malformed, too old or does not match."""


def _digest(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, *, now: float | None = None) -> str:
    """The signature header's value for `body`, signed now."""
    timestamp = int(time.time() if now is None else now)
    return f"t={timestamp},v1={_digest(secret, timestamp, body)}"


def verify(secret: str, header: str | None, body: bytes, *, now: float | None = None) -> None:
    """Raise `InvalidSignature` unless `header` signs `body` with `secret` within the tolerance."""
    if not header:
        raise InvalidSignature(f"no {SIGNATURE_HEADER} header")
    parts = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(parts["t"])
        given = parts["v1"]
    except (KeyError, ValueError) as error:
        raise InvalidSignature(f"malformed {SIGNATURE_HEADER} header") from error
    if abs((time.time() if now is None else now) - timestamp) > TOLERANCE_SECONDS:
        raise InvalidSignature("the signature is too old (or from the future)")
    if not hmac.compare_digest(given, _digest(secret, timestamp, body)):
        raise InvalidSignature("the signature does not match the body")
