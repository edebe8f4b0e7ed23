"""The sandbox provider's app: accept an authorisation, answer it later through the signed webhook.

Only the merchant may ask: every request carries `Sandbox-Signature` over its
method, path and body with the secret the sandbox shares with its merchant (the
saga), as providers that authenticate merchants by request signing do. The
callback URL is part of the signed body, so the signed answer goes only where
the merchant said; anyone else registering a payment id first, with a callback
of their own, is refused (401) and learns nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import uuid
from typing import Any, Literal
from uuid import UUID

import httpx
import msgspec
from httpx_aiohttp import HttpxAiohttpClient
from litestar import Litestar, Request, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath
from servicekit.problems import ProblemTable, problem
from servicekit.service import Service, Startup
from servicekit.telemetry import current_traceparent

from saga_service.providers import AUTHORIZATIONS_PATH, AuthorizationRequest, WebhookBody
from saga_service.sandbox.settings import SandboxSettings
from saga_service.signatures import SIGNATURE_HEADER, InvalidSignature, sign, verify_request

__all__ = ["create_app"]

log = logging.getLogger("saga_service.sandbox")


class Authorization(msgspec.Struct, kw_only=True):
    """One request and what became of it (`silent`: it will never be answered)."""

    payment_id: UUID
    amount: int
    currency: str
    outcome: Literal["pending", "authorized", "declined", "silent"] = "pending"
    delivered: bool = False
    deliveries: int = 0


class UnknownPayment(Exception):
    pass


class MalformedRequest(Exception):
    """A correctly signed request whose body is not an authorisation request."""


PROBLEMS = ProblemTable(
    {
        UnknownPayment: lambda exc: problem(404, "payment-not-found", "Not found", str(exc)),
        InvalidSignature: lambda exc: problem(401, "invalid-signature", "Invalid signature", str(exc)),
        MalformedRequest: lambda exc: problem(400, "malformed-request", "Malformed request", str(exc)),
    }
)


def create_app(settings: SandboxSettings) -> Litestar:
    """The sandbox as an ASGI app; its answers go out from background tasks."""
    service = Service(settings, "payment-sandbox", problems=PROBLEMS)
    sandbox = Sandbox(settings)
    return service.app([authorize, read], start=sandbox.start, provides={"sandbox": sandbox})


class Sandbox:
    """The authorisations asked for, and the answers on their way back (each a task of its own)."""

    def __init__(self, settings: SandboxSettings) -> None:
        self.settings = settings
        self.chance = random.Random(settings.sandbox_seed)
        self.requests: dict[UUID, Authorization] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.http = HttpxAiohttpClient(timeout=5.0)

    async def start(self, run: Startup) -> None:
        run.on_stop(self.http.aclose)
        run.on_stop(self.cancel_answers)

    async def cancel_answers(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        for task in list(self.tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def authenticate(self, request: Request[Any, Any, Any], path: str, body: bytes = b"") -> None:
        try:
            verify_request(
                self.settings.sandbox_secret,
                request.headers.get(SIGNATURE_HEADER),
                request.method,
                path,
                body,
            )
        except InvalidSignature as refused:
            log.warning("request refused: %s", refused)
            raise

    def authorize(self, data: AuthorizationRequest) -> Authorization:
        existing = self.requests.get(data.payment_id)
        if existing is not None:
            return existing  # a retried request: it is already being answered
        authorization = Authorization(payment_id=data.payment_id, amount=data.amount, currency=data.currency)
        self.requests[data.payment_id] = authorization
        task = asyncio.create_task(self.answer(authorization, data.callback_url, current_traceparent()))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return authorization

    async def answer(self, authorization: Authorization, callback_url: str, traceparent: str | None) -> None:
        settings = self.settings
        delay = settings.sandbox_latency_ms + self.chance.uniform(0, settings.sandbox_jitter_ms)
        await asyncio.sleep(delay / 1000)
        draw = self.chance.random()
        if draw < settings.sandbox_silence_rate:
            authorization.outcome = "silent"
            return
        declined = draw < settings.sandbox_silence_rate + settings.sandbox_decline_rate
        authorization.outcome = "declined" if declined else "authorized"
        body = msgspec.json.encode(
            WebhookBody(
                payment_id=authorization.payment_id,
                status=authorization.outcome,
                reference=None if declined else f"sbx_{uuid.uuid4().hex[:16]}",
                reason="card declined by the sandbox" if declined else None,
            )
        )
        for attempt in range(1, settings.sandbox_callback_attempts + 1):
            authorization.deliveries += 1
            headers = {
                "content-type": "application/json",
                SIGNATURE_HEADER: sign(settings.sandbox_secret, body),
            }
            if traceparent:
                headers["traceparent"] = traceparent
            try:
                response = await self.http.post(callback_url, content=body, headers=headers)
                if response.is_success:
                    authorization.delivered = True
                    return
                if response.status_code < 500 and response.status_code != 429:
                    log.warning("webhook refused with %s: %s", response.status_code, response.text[:300])
                    return
            except httpx.TransportError as error:
                log.info("webhook delivery %d failed: %s", attempt, error)
            # Like a real provider: keep trying for a while, further apart each time.
            await asyncio.sleep(min(5.0, 0.2 * 2 ** (attempt - 1)))
        log.warning("gave up delivering the answer for %s", authorization.payment_id)


@post(AUTHORIZATIONS_PATH, status_code=202, operation_id="requestAuthorization")
async def authorize(request: Request[Any, Any, Any], sandbox: NamedDependency[Sandbox]) -> Authorization:
    body = await request.body()
    sandbox.authenticate(request, AUTHORIZATIONS_PATH, body)
    try:
        data = msgspec.json.decode(body, type=AuthorizationRequest)
    except msgspec.MsgspecError as error:
        raise MalformedRequest(str(error)) from error
    return sandbox.authorize(data)


@get(AUTHORIZATIONS_PATH + "/{payment_id:uuid}", operation_id="getAuthorization")
async def read(
    payment_id: FromPath[UUID], request: Request[Any, Any, Any], sandbox: NamedDependency[Sandbox]
) -> Authorization:
    sandbox.authenticate(request, f"{AUTHORIZATIONS_PATH}/{payment_id}")
    found = sandbox.requests.get(payment_id)
    if found is None:
        raise UnknownPayment(f"no authorisation for {payment_id}")
    return found
