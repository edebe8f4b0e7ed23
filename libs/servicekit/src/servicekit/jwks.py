"""Public keys for RS256/ES256 tokens, from a JWKS file or URL.

A key is only ever used with the algorithm family of its own type (`RSA` keys
for RS256, `EC` P-256 keys for ES256), and symmetric (`oct`) keys in a JWKS are
ignored: the HS256 secret comes only from the service's own settings. That is
what keeps an attacker from signing an HS256 token with a published public key.

A URL is fetched with httpx (never blocking the event loop), cached, refreshed
after `refresh_seconds`, and refetched early when a token names an unknown
`kid` (key rotation), at most once per `min_refetch_seconds`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import jwt

__all__ = ["KEY_TYPES", "JwksError", "JwksKeys", "parse_jwks"]

KEY_TYPES = {"RS256": "RSA", "ES256": "EC"}

log = logging.getLogger("servicekit.jwks")


class JwksError(Exception):
    """No usable key for a token, or a JWKS that cannot be read."""


def parse_jwks(document: Mapping[str, Any]) -> list[jwt.PyJWK]:
    """The usable asymmetric signing keys of a JWKS document; other keys are skipped."""
    keys = document.get("keys")
    if not isinstance(keys, list):
        raise JwksError("a JWKS document has a `keys` array")
    usable = []
    for data in keys:
        if (
            not isinstance(data, dict)
            or data.get("kty") not in KEY_TYPES.values()
            or data.get("use", "sig") != "sig"
        ):
            continue
        try:
            key = jwt.PyJWK(data)
        except jwt.PyJWTError as error:
            log.warning("skipping JWK %s: %s", data.get("kid"), error)
            continue
        if key.algorithm_name in KEY_TYPES:
            usable.append(key)
    return usable


class JwksKeys:
    """The verification keys of one JWKS source."""

    def __init__(
        self,
        *,
        file: Path | None = None,
        url: str | None = None,
        client: httpx.AsyncClient | None = None,
        refresh_seconds: float = 300.0,
        min_refetch_seconds: float = 30.0,
    ) -> None:
        if (file is None) == (url is None):
            raise ValueError("a JWKS comes from exactly one of a file or a URL")
        self._url = url
        self._client = client
        self._refresh = refresh_seconds
        self._min_refetch = min_refetch_seconds
        self._lock = asyncio.Lock()
        self._fetched_at = float("-inf")
        self._keys: list[jwt.PyJWK] = []
        if file is not None:
            try:
                self._keys = parse_jwks(json.loads(file.read_text()))
            except (OSError, ValueError) as error:
                raise JwksError(f"cannot read the JWKS file {file}: {error}") from error
            self._fetched_at = float("inf")

    async def key_for(self, kid: str | None, algorithm: str) -> Any:
        """The public key that verifies a token with this header's `kid` and `alg`."""
        if self._url is not None and time.monotonic() - self._fetched_at > self._refresh:
            await self._fetch(force=False)
        key = self._find(kid, algorithm)
        if key is None and self._url is not None and time.monotonic() - self._fetched_at > self._min_refetch:
            await self._fetch(force=True)
            key = self._find(kid, algorithm)
        if key is None:
            raise JwksError(f"no {algorithm} key with kid {kid!r}")
        return key.key

    def _find(self, kid: str | None, algorithm: str) -> jwt.PyJWK | None:
        candidates = [
            key
            for key in self._keys
            if key.key_type == KEY_TYPES[algorithm]
            and key.algorithm_name == algorithm
            and (kid is None or key.key_id == kid)
        ]
        # Without a kid, only an unambiguous key will do.
        return candidates[0] if len(candidates) == 1 else None

    async def _fetch(self, *, force: bool) -> None:
        assert self._url is not None
        async with self._lock:
            age = time.monotonic() - self._fetched_at
            if age < (self._min_refetch if force else self._refresh):
                return  # another request fetched while this one waited
            client = self._client or httpx.AsyncClient()
            try:
                response = await client.get(self._url, timeout=5.0)
                response.raise_for_status()
                self._keys = parse_jwks(response.json())
            except (httpx.HTTPError, ValueError, JwksError) as error:
                # Keep the keys we had; a JWKS endpoint hiccup must not lock everyone out at once.
                log.warning("cannot fetch the JWKS from %s: %s", self._url, error)
            finally:
                self._fetched_at = time.monotonic()
                if self._client is None:
                    await client.aclose()
