"""HMAC signatures between the saga and its provider: `Sandbox-Signature: t=<unix seconds>,v1=<hex>`.

A webhook is signed over `<t>.<raw body>`; the saga's own requests over
`<t>.<METHOD> <path>\n<raw body>` (`sign_request`), so one request's signature does
not pass for another's or for a webhook's. The timestamp stops replays; comparing in
constant time stops guessing byte by byte. See docs/saga.md, "Payment providers".
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time

__all__ = ["SIGNATURE_HEADER", "InvalidSignature", "sign", "sign_request", "verify", "verify_request"]

SIGNATURE_HEADER = "Sandbox-Signature"
TOLERANCE_SECONDS = 300
# What the parts must look like before anything is computed or compared. Headers arrive decoded as
# Latin-1, so any byte may be in them; `hmac.compare_digest` raises on a `str` that is not ASCII.
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_HEX_DIGEST = re.compile(r"[0-9a-f]{64}")


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
    stamp, given = parts.get("t", ""), parts.get("v1", "")
    if not (_TIMESTAMP.fullmatch(stamp) and _HEX_DIGEST.fullmatch(given)):
        raise InvalidSignature(f"malformed {SIGNATURE_HEADER} header")
    timestamp = int(stamp)
    if abs((time.time() if now is None else now) - timestamp) > TOLERANCE_SECONDS:
        raise InvalidSignature("the signature is too old (or from the future)")
    # Bytes, both ASCII by now: compared in constant time.
    if not hmac.compare_digest(given.encode(), _digest(secret, timestamp, body).encode()):
        raise InvalidSignature("the signature does not match the body")


def _request_text(method: str, path: str, body: bytes) -> bytes:
    return f"{method.upper()} {path}\n".encode() + body


def sign_request(secret: str, method: str, path: str, body: bytes = b"", *, now: float | None = None) -> str:
    """The signature header's value for a request to the provider, signed now."""
    return sign(secret, _request_text(method, path, body), now=now)


def verify_request(
    secret: str, header: str | None, method: str, path: str, body: bytes = b"", *, now: float | None = None
) -> None:
    """Raise `InvalidSignature` unless `header` signs this request with `secret` within the tolerance."""
    verify(secret, header, _request_text(method, path, body), now=now)
