"""The saga's HTTP API: read a saga, list the ones that need a look, retry or abort one; the webhook.

`/sagas...` needs a bearer token with the role `staff` or `service`. The
provider's webhook is authenticated by its HMAC signature instead (a bad one is
refused with 401 and logged); it records the answer and answers 200 whether the
saga still waited for it or not, so the provider stops retrying.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from uuid import UUID

import msgspec
from eventstore import StoreUnavailable
from fulfilment.values import whole
from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, Parameter, SkipValidation
from servicekit.auth import SERVICE, STAFF, allow, principal_of
from servicekit.problems import ProblemTable, problem

from saga_service.orchestrator import Orchestrator
from saga_service.providers import MalformedWebhook
from saga_service.saga import Abort, Parked, ReceiveReply, Resume, SagaRefused, next_step
from saga_service.sagas import SagaSummary
from saga_service.signatures import InvalidSignature
from saga_service.timers import TimerRow

__all__ = ["PROBLEMS", "SagaController", "SagaNotFound", "WebhookController"]

log = logging.getLogger("saga_service.routes")

OrchestratorDep = NamedDependency[SkipValidation[Orchestrator]]


class SagaNotFound(Exception):
    """No saga exists for the order."""


class Step(msgspec.Struct, frozen=True, kw_only=True):
    step: str
    result: str


class HistoryEntry(msgspec.Struct, frozen=True, kw_only=True):
    version: int
    type: str
    recorded_at: datetime
    data: dict[str, Any]


class SagaView(msgspec.Struct, frozen=True, kw_only=True):
    """A saga: where it is, what it did, what happened to it, and its deadlines."""

    order_id: UUID
    phase: str
    outcome: str | None
    reason: str | None
    parked: Parked | None
    plan: list[str]
    next_step: str | None
    steps: list[Step]
    history: list[HistoryEntry]
    deadlines: list[TimerRow]
    version: int


class SagaList(msgspec.Struct, frozen=True, kw_only=True):
    sagas: list[SagaSummary]


class AbortBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=500, pattern=whole(r"[^\x00-\x1f\x7f]+"))]


class WebhookAnswer(msgspec.Struct, frozen=True, kw_only=True):
    status: Literal["recorded", "ignored", "duplicate"]


async def view_of(orchestrator: Orchestrator, order_id: UUID) -> SagaView:
    """Everything the API shows about one saga."""
    history = await orchestrator.streams.read(order_id)
    if not history:
        raise SagaNotFound(f"no saga for order {order_id}")
    current = await orchestrator.streams.load(order_id)
    saga = current.state
    assert saga is not None
    return SagaView(
        order_id=order_id,
        phase=str(saga.phase),
        outcome=None if saga.outcome is None else str(saga.outcome),
        reason=saga.reason,
        parked=saga.parked,
        plan=list(saga.plan),
        next_step=next_step(saga),
        steps=[Step(step=step, result=result) for step, result in saga.done.items()],
        history=[
            HistoryEntry(
                version=recorded.version,
                type=recorded.event_type,
                recorded_at=recorded.recorded_at,
                data=msgspec.to_builtins(recorded.data),
            )
            for recorded in history
        ],
        deadlines=await orchestrator.timers.of(order_id),
        version=current.version,
    )


class SagaController(Controller):
    path = "/sagas"
    tags = ["sagas"]
    opt = allow(STAFF, SERVICE)
    security = [{"bearer": []}]

    @get("/", operation_id="listSagas", summary="Sagas that need a look: parked, stuck, failed or open")
    async def list_sagas(
        self,
        orchestrator: OrchestratorDep,
        status: Annotated[
            Literal["parked", "stuck", "failed", "open"], Parameter(query="status", default="parked")
        ] = "parked",
        limit: Annotated[int, Parameter(query="limit", ge=1, le=1000)] = 100,
    ) -> SagaList:
        stuck_after: float = orchestrator.stuck_after
        return SagaList(
            sagas=await orchestrator.streams.listing(status, stuck_after=stuck_after, limit=limit)
        )

    @get(
        "/{order_id:uuid}",
        operation_id="getSaga",
        summary="One order's saga: state, steps, history, deadlines",
    )
    async def get_saga(self, order_id: FromPath[UUID], orchestrator: OrchestratorDep) -> SagaView:
        return await view_of(orchestrator, order_id)

    @post(
        "/{order_id:uuid}/retry",
        status_code=200,
        operation_id="retrySaga",
        summary="Try a parked saga's step again",
    )
    async def retry(
        self, order_id: FromPath[UUID], orchestrator: OrchestratorDep, request: Request[Any, Any, Any]
    ) -> SagaView:
        await _exists(orchestrator, order_id)
        actor = principal_of(request).subject
        await orchestrator.record(order_id, Resume(actor=actor, at=datetime.now(UTC)))
        await orchestrator.drive_now(order_id)
        return await view_of(orchestrator, order_id)

    @post("/{order_id:uuid}/abort", status_code=200, operation_id="abortSaga", summary="Give up: compensate")
    async def abort(
        self,
        order_id: FromPath[UUID],
        data: JSONBody[AbortBody],
        orchestrator: OrchestratorDep,
        request: Request[Any, Any, Any],
    ) -> SagaView:
        await _exists(orchestrator, order_id)
        actor = principal_of(request).subject
        await orchestrator.record(order_id, Abort(actor=actor, reason=data.reason, at=datetime.now(UTC)))
        await orchestrator.drive_now(order_id)
        return await view_of(orchestrator, order_id)


async def _exists(orchestrator: Orchestrator, order_id: UUID) -> None:
    if (await orchestrator.streams.load(order_id)).state is None:
        raise SagaNotFound(f"no saga for order {order_id}")


class WebhookController(Controller):
    path = "/webhooks/payments"
    tags = ["webhooks"]

    @post(
        "/{provider:str}",
        status_code=200,
        operation_id="paymentWebhook",
        summary="A payment provider's answer, signed with HMAC",
        security=[],
    )
    async def webhook(
        self, provider: FromPath[str], request: Request[Any, Any, Any], orchestrator: OrchestratorDep
    ) -> WebhookAnswer:
        if provider != orchestrator.provider.name:
            raise SagaNotFound(f"no payment provider named {provider!r}")
        body = await request.body()
        try:
            reply = orchestrator.provider.parse_webhook(body, dict(request.headers))
        except InvalidSignature as error:
            log.warning("webhook refused: %s", error, extra={"provider": provider})
            raise
        command = ReceiveReply(
            authorized=reply.authorized,
            provider_reference=reply.provider_reference,
            reason=reply.reason,
            at=datetime.now(UTC),
        )
        try:
            applied = await orchestrator.record(reply.payment_id, command)
        except SagaRefused as error:
            raise SagaNotFound(f"no saga for payment {reply.payment_id}") from error
        orchestrator.kick(reply.payment_id)
        if not applied.events:
            return WebhookAnswer(status="duplicate")
        ignored = type(applied.events[0]).__name__ == "ReplyIgnored"
        if ignored:
            log.info("late or unexpected provider reply ignored", extra={"order_id": str(reply.payment_id)})
        return WebhookAnswer(status="ignored" if ignored else "recorded")


PROBLEMS = ProblemTable(
    {
        SagaNotFound: lambda exc: problem(404, "saga-not-found", "Not found", str(exc)),
        SagaRefused: lambda exc: problem(409, "saga-refused", "Refused by the saga's state", str(exc)),
        InvalidSignature: lambda exc: (
            problem(401, "invalid-signature", "Invalid webhook signature", str(exc)),
            {"WWW-Authenticate": "Signature"},
        ),
        MalformedWebhook: lambda exc: problem(422, "malformed-webhook", "Unreadable webhook", str(exc)),
    },
    unavailable=(StoreUnavailable,),
)
