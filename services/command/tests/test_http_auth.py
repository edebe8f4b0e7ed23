"""Authentication failures over HTTP: each is a 401 problem with a Bearer challenge, and appends nothing."""

from __future__ import annotations

import base64
import json
import time

import httpx
import pytest
from testkit.harness import TokenFactory

from services.command.tests.support import ORDER_BODY, command_headers


def alg_none_token() -> str:
    def part(value: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    claims = {
        "sub": "alice",
        "iss": "https://issuer.test",
        "aud": "command-api",
        "exp": int(time.time()) + 60,
    }
    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part({**claims, 'roles': ['customer']})}."


async def test_a_command_without_a_token_is_401_with_a_bearer_challenge(client: httpx.AsyncClient) -> None:
    response = await client.post("/orders", json=ORDER_BODY, headers={"Idempotency-Key": "k"})

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "unauthenticated"


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("expired", "the token has expired"),
        ("wrong audience", "the token is for another audience"),
        ("wrong key", "the token's signature does not verify"),
        ("alg none", "tokens signed with 'none' are not accepted"),
        ("not a jwt", "the token is not a well-formed JWT"),
    ],
)
async def test_a_bad_token_is_401_saying_why(
    client: httpx.AsyncClient, tokens: TokenFactory, case: str, expected: str
) -> None:
    bad = {
        "expired": lambda: tokens("alice", now=time.time() - 3600, ttl_seconds=60),
        "wrong audience": lambda: tokens("alice", audience="query-api"),
        "wrong key": lambda: tokens("alice", key="some-other-secret-that-is-32-bytes-long"),
        "alg none": alg_none_token,
        "not a jwt": lambda: "abc.def",
    }[case]()

    response = await client.post("/orders", json=ORDER_BODY, headers=command_headers(bad))

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert response.json()["detail"] == expected


async def test_a_non_bearer_authorization_header_is_401(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/orders", json=ORDER_BODY, headers={"Authorization": "Basic YWxpY2U6cHc=", "Idempotency-Key": "k"}
    )

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_request"'


async def test_authentication_is_checked_before_the_body(client: httpx.AsyncClient) -> None:
    response = await client.post("/orders", content=b"{not json", headers={"Idempotency-Key": "k"})

    assert response.status_code == 401
