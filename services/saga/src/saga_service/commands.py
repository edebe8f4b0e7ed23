"""Every command the saga sends to the command service, in one place.

A step name maps to one endpoint and body. Each request carries
`Idempotency-Key: saga-<order id>-<step>` (a retried step appends nothing), a service
token, `traceparent` and the order id as correlation id. Answers become step results:
2xx done; 5xx, 429, a contention 409 and transport failures `Transient`; another 409
`Refused(code)`; any other 4xx a `Refusal`, which parks the saga. See docs/saga.md.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import msgspec
from servicekit.auth import SERVICE
from servicekit.telemetry import current_traceparent
from servicekit.tokens import mint

from saga_service.resilience import CircuitBreaker, Refusal, RetryPolicy, Transient, call_with_retries
from saga_service.state import Saga
from saga_service.steps import (
    OK,
    RESERVED,
    SHORTAGE,
    AskProvider,
    Commit,
    Confirm,
    RecordAuthorization,
    RecordDecline,
    RefundPayment,
    Refused,
    Reject,
    Release,
    RequestPayment,
    Reserve,
    Result,
    Step,
    VoidPayment,
)

__all__ = ["CommandClient", "ServiceToken", "idempotency_key"]


class _Problem(msgspec.Struct):
    code: str = "unknown"
    detail: str | None = None


class _Accepted(msgspec.Struct):
    events: list[str] = msgspec.field(default_factory=list)


def idempotency_key(saga: Saga, step: Step) -> str:
    """The key of one step of one saga: the same on every attempt, by any instance (and as before
    steps were typed, so a step in flight across an upgrade is not sent twice)."""
    return f"saga-{saga.order_id}-{step.encode()}"


class ServiceToken:
    """A bearer token with the role `service`: the configured one, or minted and renewed."""

    def __init__(
        self, *, fixed: str | None, secret: str | None, issuer: str, audience: str, ttl_seconds: int = 3600
    ) -> None:
        if fixed is None and not secret:
            raise ValueError("a service token or a JWT secret to mint one is needed")
        self._fixed = fixed
        self._secret = secret
        self._issuer = issuer
        self._audience = audience
        self._ttl = ttl_seconds
        self._token = ""
        self._renew_at = 0.0

    def __call__(self) -> str:
        if self._fixed is not None:
            return self._fixed
        now = time.time()
        if now >= self._renew_at:
            self._token = mint(
                subject="saga",
                roles=[SERVICE],
                issuer=self._issuer,
                audience=self._audience,
                key=self._secret,
                ttl_seconds=self._ttl,
            )
            self._renew_at = now + self._ttl / 2
        return self._token


def _request(saga: Saga, step: Step) -> tuple[str, dict[str, Any] | None]:
    """The path and JSON body of a step's command."""
    order = saga.order_id
    if isinstance(step, Reserve | Release | Commit):
        quantity = next((line.quantity for line in saga.lines if line.sku == step.sku), None)
        if quantity is None:
            raise ValueError(f"no command for step {step.encode()!r}: the order has no such line")
    match step:
        case Reserve(sku=sku):
            return f"/products/{sku}/reservations", {"order_id": str(order), "quantity": quantity}
        case Release(sku=sku):
            return f"/products/{sku}/reservations/{order}/release", None
        case Commit(sku=sku):
            return f"/products/{sku}/reservations/{order}/commit", None
        case RequestPayment():
            return "/payments", {"order_id": str(order), "amount": saga.total, "currency": saga.currency}
        case VoidPayment():
            return f"/payments/{order}/void", {"reason": saga.reason or "saga compensation"}
        case RefundPayment():
            return f"/payments/{order}/refund", None
        case RecordAuthorization():
            return f"/payments/{order}/authorization", {
                "provider_reference": saga.provider_reference or "unknown"
            }
        case RecordDecline():
            return f"/payments/{order}/decline", {"reason": saga.decline_reason or "declined"}
        case Confirm():
            return f"/orders/{order}/confirm", None
        case Reject():
            return f"/orders/{order}/reject", {"reason": saga.reason or "the order cannot be fulfilled"}
        case AskProvider():
            raise ValueError("asking the provider is not a command to the command service")
    raise AssertionError(f"unknown step {step!r}")  # pragma: no cover


class CommandClient:
    """Sends the saga's steps to the command service through its breaker and retry policy."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        token: Callable[[], str],
        breaker: CircuitBreaker,
        policy: RetryPolicy,
    ) -> None:
        self._client = client
        self._token = token
        self.breaker = breaker
        self._policy = policy

    async def send(self, saga: Saga, step: Step) -> Result:
        """Send one step; returns its result (`Ok`, `Reserved`, `Shortage`, `Refused(code)`)."""
        path, body = _request(saga, step)
        content = b"" if body is None else msgspec.json.encode(body)
        headers = {
            "Authorization": f"Bearer {self._token()}",
            "Idempotency-Key": idempotency_key(saga, step),
            "X-Correlation-ID": str(saga.order_id),
            "X-Causation-ID": f"saga-{saga.order_id}",
            "content-type": "application/json",
        }

        async def attempt() -> httpx.Response:
            traceparent = current_traceparent()
            if traceparent:
                headers["traceparent"] = traceparent
            try:
                response = await self._client.post(path, headers=headers, content=content)
            except httpx.TransportError as error:
                raise Transient(f"command service: {type(error).__name__}: {error}") from error
            if response.status_code >= 500 or response.status_code == 429:
                raise Transient(
                    f"command service answered {response.status_code}", retry_after=_retry_after(response)
                )
            if response.status_code == 409 and _problem(response).code == "contention":
                raise Transient("command service: contention", retry_after=_retry_after(response))
            return response

        response = await call_with_retries(attempt, self.breaker, self._policy)
        if response.is_success:
            if isinstance(step, Reserve):
                events = msgspec.json.decode(response.content, type=_Accepted).events
                return SHORTAGE if "StockReservationFailed" in events else RESERVED
            return OK
        problem = _problem(response)
        if response.status_code == 409:
            return Refused(problem.code)
        raise Refusal(response.status_code, problem.code, problem.detail)


def _problem(response: httpx.Response) -> _Problem:
    try:
        return msgspec.json.decode(response.content, type=_Problem)
    except msgspec.MsgspecError:
        return _Problem(code=f"http-{response.status_code}", detail=response.text[:200])


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return float(response.headers.get("retry-after", ""))
    except ValueError:
        return None
