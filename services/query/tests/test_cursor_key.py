"""The key that signs search cursors: configured, or derived from the JWT secret (pure, no servers)."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from query_service.settings import QuerySettings
from servicekit.settings import SettingsError, from_env

BASE = {
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    "SEARCH_URL": "http://127.0.0.1:9200",
    "JWT_ISSUER": "https://issuer.test",
    "JWT_AUDIENCE": "query-api",
}
JWT_SECRET = "jwt-secret-that-is-long-enough-for-hs256"


def settings(**env: str) -> QuerySettings:
    return from_env(QuerySettings, {**BASE, **env}, prefix="QUERY_")


def test_the_cursor_key_is_query_cursor_secret_when_set() -> None:
    secret = "c" * 40
    assert settings(QUERY_CURSOR_SECRET=secret, JWT_SECRET=JWT_SECRET).cursor_key() == secret.encode()


def test_without_it_the_key_is_derived_from_the_jwt_secret_not_the_secret_itself() -> None:
    key = settings(JWT_SECRET=JWT_SECRET).cursor_key()

    assert key is not None
    assert key != JWT_SECRET.encode()
    assert key == settings(JWT_SECRET=JWT_SECRET).cursor_key()  # every instance derives the same
    assert key != settings(JWT_SECRET=JWT_SECRET + "x").cursor_key()
    expected = hmac.new(JWT_SECRET.encode(), b"fulfilment query cursors v1", hashlib.sha256).digest()
    assert key == expected


def test_without_either_each_process_picks_its_own() -> None:
    assert settings(JWT_JWKS_URL="https://issuer.test/jwks", JWT_ALGORITHMS="RS256").cursor_key() is None


def test_a_short_cursor_secret_is_refused_naming_the_variable() -> None:
    with pytest.raises(SettingsError, match="QUERY_CURSOR_SECRET"):
        settings(QUERY_CURSOR_SECRET="short", JWT_SECRET=JWT_SECRET)
