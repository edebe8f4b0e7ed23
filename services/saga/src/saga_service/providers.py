"""Payment providers behind one small interface, and the sandbox's adapter.

The saga asks a provider to authorise an amount and gives it a callback URL;
the provider answers later by calling that webhook. The request is signed with
the secret the saga shares with the provider, so the provider sends its answer
(signed with that secret too) only to a callback its merchant gave it. `PaymentProvider` is all the
saga needs of one: start an authorisation, and turn a webhook delivery into a
`ProviderReply` after checking its signature. A real provider's adapter
implements the same two methods.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol
from uuid import UUID

import httpx
import msgspec

from saga_service.resilience import CircuitBreaker, Refusal, RetryPolicy, Transient, call_with_retries
from saga_service.signatures import SIGNATURE_HEADER, sign_request, verify

__all__ = [
    "AUTHORIZATIONS_PATH",
    "AuthorizationRequest",
    "MalformedWebhook",
    "PaymentProvider",
    "ProviderReply",
    "SandboxProvider",
    "WebhookBody",
]


# Where the sandbox takes authorisation requests (relative to SAGA_PROVIDER_URL).
AUTHORIZATIONS_PATH = "/authorizations"


class AuthorizationRequest(msgspec.Struct, frozen=True, kw_only=True):
    """What the saga asks a provider for: this amount, for this payment, answer at `callback_url`."""

    payment_id: UUID
    amount: int
    currency: str
    callback_url: str


class ProviderReply(msgspec.Struct, frozen=True, kw_only=True):
    """A provider's answer for one payment."""

    payment_id: UUID
    authorized: bool
    provider_reference: str | None = None
    reason: str | None = None


class MalformedWebhook(Exception):
    """A correctly signed webhook whose body the saga cannot read."""


class PaymentProvider(Protocol):
    name: str

    async def request_authorization(self, request: AuthorizationRequest, idempotency_key: str) -> None:
        """Ask for an authorisation; the answer comes to the callback. Raises `Transient` to retry."""
        ...

    def parse_webhook(self, body: bytes, headers: Mapping[str, str]) -> ProviderReply:
        """The reply a webhook delivery carries; `InvalidSignature` or `MalformedWebhook` if unusable."""
        ...


class WebhookBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The sandbox's webhook: `status` is `authorized` or `declined`."""

    payment_id: UUID
    status: str
    reference: str | None = None
    reason: str | None = None


class SandboxProvider:
    """The payment sandbox (`python -m saga_service.sandbox`) as a provider."""

    name = "sandbox"

    def __init__(
        self, client: httpx.AsyncClient, secret: str, breaker: CircuitBreaker, policy: RetryPolicy
    ) -> None:
        self._client = client
        self._secret = secret
        self.breaker = breaker
        self._policy = policy

    async def request_authorization(self, request: AuthorizationRequest, idempotency_key: str) -> None:
        body = msgspec.json.encode(request)

        async def attempt() -> None:
            # Signed afresh on each attempt: the provider refuses a signature older than its tolerance.
            headers = {
                "content-type": "application/json",
                "Idempotency-Key": idempotency_key,
                SIGNATURE_HEADER: sign_request(self._secret, "POST", AUTHORIZATIONS_PATH, body),
            }
            try:
                response = await self._client.post(AUTHORIZATIONS_PATH, content=body, headers=headers)
            except httpx.TransportError as error:
                raise Transient(f"provider: {type(error).__name__}: {error}") from error
            if response.status_code >= 500 or response.status_code == 429:
                raise Transient(f"provider answered {response.status_code}")
            if not response.is_success:
                raise Refusal(response.status_code, "provider-refused", response.text[:200])

        await call_with_retries(attempt, self.breaker, self._policy)

    def parse_webhook(self, body: bytes, headers: Mapping[str, str]) -> ProviderReply:
        verify(self._secret, headers.get(SIGNATURE_HEADER.lower()) or headers.get(SIGNATURE_HEADER), body)
        try:
            delivered = msgspec.json.decode(body, type=WebhookBody)
        except msgspec.MsgspecError as error:
            raise MalformedWebhook(str(error)) from error
        if delivered.status not in ("authorized", "declined"):
            raise MalformedWebhook(f"unknown status {delivered.status!r}")
        return ProviderReply(
            payment_id=delivered.payment_id,
            authorized=delivered.status == "authorized",
            provider_reference=delivered.reference,
            reason=delivered.reason,
        )
