"""The payment sandbox answers only its merchant: registrations and reads are signed with the shared secret.

Anyone could otherwise register a payment id first, with a callback URL of their own, and
receive the genuine signed answer meant for the saga.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import httpx
import msgspec
import pytest
from prometheus_client import CollectorRegistry
from saga_service.providers import AuthorizationRequest, SandboxProvider
from saga_service.resilience import BreakerMetrics, CircuitBreaker, Refusal, RetryPolicy
from saga_service.sandbox.app import create_app
from saga_service.sandbox.settings import SandboxSettings
from saga_service.signatures import SIGNATURE_HEADER, sign, sign_request
from testkit.harness import lifespan_of

SECRET = "sandbox-merchant-secret-0123456789"


class Receiver:
    """A callback endpoint on a real socket: records each delivery (headers and body), answers 200."""

    def __init__(self) -> None:
        self.deliveries: asyncio.Queue[tuple[dict[str, str], bytes]] = asyncio.Queue()
        self._server: asyncio.Server | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        headers = {
            k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in head[1:] if line)
        }
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        await self.deliveries.put((headers, body))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    async def __aenter__(self) -> str:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/webhooks/payments/sandbox"

    async def __aexit__(self, *_: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()


@pytest.fixture
async def sandbox() -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(SandboxSettings(sandbox_secret=SECRET, sandbox_latency_ms=0, sandbox_jitter_ms=0))
    async with (
        lifespan_of(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sandbox") as client,
    ):
        yield client


def provider(client: httpx.AsyncClient, secret: str = SECRET) -> SandboxProvider:
    breaker = CircuitBreaker("provider", BreakerMetrics(CollectorRegistry()), failures=5, reset_seconds=1)
    return SandboxProvider(client, secret, breaker, RetryPolicy(attempts=1, base_delay=0.01, max_delay=0.1))


async def test_a_registration_not_signed_by_the_merchant_is_refused_and_the_answer_goes_to_the_merchant(
    sandbox: httpx.AsyncClient,
) -> None:
    payment_id = uuid.uuid4()
    receiver = Receiver()
    async with receiver as saga_callback:
        forged = AuthorizationRequest(
            payment_id=payment_id, amount=1, currency="EUR", callback_url="http://attacker.test/steal"
        )
        body = msgspec.json.encode(forged)
        genuine_body = msgspec.json.encode(
            AuthorizationRequest(
                payment_id=payment_id, amount=900, currency="EUR", callback_url=saga_callback
            )
        )
        headers: dict[str, str | bytes]
        for headers in (
            {},
            {SIGNATURE_HEADER: sign_request("another-secret-entirely-0123", "POST", "/authorizations", body)},
            {SIGNATURE_HEADER: sign(SECRET, body)},  # the webhooks' scheme: not a request's signature
            {SIGNATURE_HEADER: sign_request(SECRET, "POST", "/authorizations", genuine_body)},  # another body
            {SIGNATURE_HEADER: "t=1,v1=\u00e9".encode("latin-1")},
        ):
            response = await sandbox.post(
                "/authorizations",
                content=body,
                headers={"content-type": "application/json", **headers},
            )
            assert response.status_code == 401, response.text
            assert response.headers["content-type"].startswith("application/problem+json")
            assert response.json()["code"] == "invalid-signature"
        with pytest.raises(Refusal) as refused:
            await provider(sandbox, "another-secret-entirely-0123").request_authorization(forged, "k-0")
        assert refused.value.status == 401

        genuine = AuthorizationRequest(
            payment_id=payment_id, amount=900, currency="EUR", callback_url=saga_callback
        )
        await provider(sandbox).request_authorization(genuine, "k-1")
        headers, delivered = await asyncio.wait_for(receiver.deliveries.get(), 10)

    reply = provider(sandbox).parse_webhook(delivered, headers)
    assert (reply.payment_id, reply.authorized) == (payment_id, True)
    path = f"/authorizations/{payment_id}"
    read = await sandbox.get(path, headers={SIGNATURE_HEADER: sign_request(SECRET, "GET", path)})
    assert read.status_code == 200, read.text
    assert (read.json()["amount"], read.json()["outcome"]) == (900, "authorized")


async def test_reading_a_payment_needs_the_merchants_signature_of_that_read(
    sandbox: httpx.AsyncClient,
) -> None:
    payment_id = uuid.uuid4()
    request = AuthorizationRequest(
        payment_id=payment_id, amount=5, currency="EUR", callback_url="http://127.0.0.1:9/"
    )
    await provider(sandbox).request_authorization(request, "k-1")
    path = f"/authorizations/{payment_id}"
    other = f"/authorizations/{uuid.uuid4()}"

    for headers in ({}, {SIGNATURE_HEADER: sign_request(SECRET, "GET", other)}):
        response = await sandbox.get(path, headers=headers)
        assert (response.status_code, response.json()["code"]) == (401, "invalid-signature")
    found = await sandbox.get(path, headers={SIGNATURE_HEADER: sign_request(SECRET, "GET", path)})
    assert found.status_code == 200


async def test_a_signed_body_that_is_no_authorisation_request_is_a_400(sandbox: httpx.AsyncClient) -> None:
    body = b'{"payment_id": 5}'
    headers = {SIGNATURE_HEADER: sign_request(SECRET, "POST", "/authorizations", body)}

    response = await sandbox.post("/authorizations", content=body, headers=headers)

    assert (response.status_code, response.json()["code"]) == (400, "malformed-request")
