"""Hostile requests to every endpoint of the running service: none is answered with a 5xx.

The service runs as its own process on a real socket (so the HTTP server's own
limits take part), and every operation of its OpenAPI document gets bodies, paths
and headers of the kinds attackers and broken clients send.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from testkit.harness import ServiceProcess, running_service, token_factory

pytestmark = pytest.mark.slow

SECRET = "hostile-secret-that-is-long-enough-for-hs256"
ISSUER, AUDIENCE = "https://issuer.test", "command-api"


@dataclass(frozen=True)
class Attempt:
    kind: str
    path: str
    body: bytes = b'{"reason": "x"}'
    content_type: str | None = "application/json"
    headers: tuple[tuple[str, str], ...] = ()


@pytest.fixture
async def service(fresh_database_url: str, redis_url: str, tmp_path: Path) -> AsyncIterator[ServiceProcess]:
    environment = {
        "DATABASE_URL": fresh_database_url,
        "REDIS_URL": redis_url,
        "JWT_ISSUER": ISSUER,
        "JWT_AUDIENCE": AUDIENCE,
        "JWT_SECRET": SECRET,
        "RATE_LIMIT_PER_SECOND": "100000",
        "RATE_LIMIT_BURST": "100000",
    }
    async with running_service(
        "command_service", environment, log=tmp_path / "service.log", port_variable="COMMAND_PORT"
    ) as process:
        yield process


HOSTILE_BODIES = {
    "deep JSON": b"[" * 50_000 + b"]" * 50_000,
    "deep object": b'{"a":' * 20_000 + b"1" + b"}" * 20_000,
    "invalid UTF-8": b'{"reason": "\xff\xfe", "sku": "\xc3"}',
    "lone surrogate": b'{"reason": "\\ud800", "name": "\\udfff", "sku": "\\ud800"}',
    "control characters": b'{"reason": "a\\u0000b", "name": "\\u001b[31m", "sku": "A\\n"}',
    "bidi controls": b'{"reason": "a\\u202eb", "name": "\\u2066x", "provider_reference": "\\u202a"}',
    "huge number": b'{"quantity": 1e400, "amount": -1e400, "order_id": 1e400}',
    "long integer": b'{"quantity": ' + b"9" * 5000 + b"}",
    "huge decimal": b'{"amount": 1.' + b"0" * 5000 + b"1}",
    "empty body": b"",
    "null": b"null",
    "not JSON": b"{'reason': 1",
    "truncated": b'{"lines": [',
    "duplicate keys": b'{"reason": "a", "reason": "b"}',
    "trailing newline": b'{"sku": "SKU-2\\n", "name": "Mug"}',
    "a string": b'"x" ',
    "NUL bytes": b"\x00" * 100,
    "too big": b'{"reason": "' + b"x" * 200_000 + b'"}',
}
CONTENT_TYPES = [
    None,
    "text/plain",
    "application/xml",
    "multipart/form-data; boundary=x",
    "application/x-www-form-urlencoded",
    "application/json; charset=latin-1",
    "*/*",
]
ODD_PATH_VALUES = [
    "not-a-uuid",
    "%00",
    "%ff",
    "..%2F..%2Fetc",
    "%E2%80%AE",
    "%ED%A0%80",
    "a" * 3000,
    "%0A",
    "SKU%20 1",
    "-1",
    "%25",
]
HEADERS = {
    "many headers": tuple((f"X-Extra-{i}", "x") for i in range(300)),
    "huge header": (("X-Huge", "x" * 100_000),),
    "bidi header": (("X-Correlation-ID", "\u202eabc"), ("Idempotency-Key", "\u2066")),
    "odd If-Match": (("If-Match", '"99999999999999999999999"'),),
    "huge causation": (("X-Causation-ID", "y" * 10_000),),
}


def operations(document: dict[str, object]) -> Iterator[tuple[str, str]]:
    paths = document["paths"]
    assert isinstance(paths, dict)
    for path, item in paths.items():
        for method in item:
            yield method.upper(), path


def concrete(path: str, value: str | None = None) -> str:
    defaults = {"order_id": str(uuid.uuid4()), "sku": "SKU-1"}
    return re.sub(r"\{(\w+)\}", lambda match: value if value is not None else defaults[match[1]], path)


def attempts(path: str) -> Iterator[Attempt]:
    target = concrete(path)
    for kind, body in HOSTILE_BODIES.items():
        yield Attempt(kind, target, body)
    for content_type in CONTENT_TYPES:
        yield Attempt(f"content type {content_type}", target, content_type=content_type)
    for kind, headers in HEADERS.items():
        yield Attempt(kind, target, headers=headers)
    if "{" in path:
        for value in ODD_PATH_VALUES:
            yield Attempt(f"path value {value[:20]}", concrete(path, value))


async def test_no_hostile_request_to_any_endpoint_is_answered_with_a_5xx(service: ServiceProcess) -> None:
    token = token_factory(secret=SECRET, issuer=ISSUER, audience=AUDIENCE)(
        "hostile", roles=["customer", "staff", "service"]
    )
    failures: list[str] = []
    answered = 0
    async with httpx.AsyncClient(base_url=service.url, timeout=30) as client:
        document = (await client.get("/schema/openapi.json")).json()
        ops = list(operations(document))
        assert len(ops) >= 16
        for method, path in ops:
            for attempt in attempts(path):
                headers = httpx.Headers(
                    {"Authorization": f"Bearer {token}", "Idempotency-Key": str(uuid.uuid4())}
                )
                if attempt.content_type is not None:
                    headers["Content-Type"] = attempt.content_type
                for name, value in attempt.headers:
                    headers[name] = value
                try:
                    response = await client.request(
                        method, attempt.path, content=attempt.body, headers=headers
                    )
                except httpx.RemoteProtocolError:
                    # The HTTP server may refuse oversized or too many headers by closing the connection.
                    assert attempt.kind in ("many headers", "huge header"), attempt
                    continue
                answered += 1
                if response.status_code >= 500:
                    failures.append(
                        f"{method} {attempt.path[:80]} [{attempt.kind}]: {response.status_code} "
                        f"{response.text[:200]}"
                    )
        assert (await client.get("/health/ready")).status_code == 200

    assert failures == []
    assert answered > 300
