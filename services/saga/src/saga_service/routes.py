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

from saga_service.inputs import Abort, Resume
from saga_service.orchestrator import Orchestrator
from saga_service.providers import MalformedWebhook
from saga_service.signatures import InvalidSignature
from saga_service.state import SagaRefused
from saga_service.streams import SagaSummary
from saga_service.views import SagaNotFound, SagaView, WebhookStatus

__all__ = ["PROBLEMS", "SagaController", "SagaNotFound", "WebhookController"]

log = logging.getLogger("saga_service.routes")

OrchestratorDep = NamedDependency[SkipValidation[Orchestrator]]


class SagaList(msgspec.Struct, frozen=True, kw_only=True):
    sagas: list[SagaSummary]


class AbortBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=500, pattern=whole(r"[^\x00-\x1f\x7f]+"))]


class WebhookAnswer(msgspec.Struct, frozen=True, kw_only=True):
    status: WebhookStatus


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
        return SagaList(sagas=await orchestrator.listing(status, limit=limit))

    @get(
        "/{order_id:uuid}",
        operation_id="getSaga",
        summary="One order's saga: state, steps, history, deadlines",
    )
    async def get_saga(self, order_id: FromPath[UUID], orchestrator: OrchestratorDep) -> SagaView:
        return await orchestrator.view(order_id)

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
        return await orchestrator.view(order_id)

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
        return await orchestrator.view(order_id)


async def _exists(orchestrator: Orchestrator, order_id: UUID) -> None:
    if await orchestrator.state(order_id) is None:
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
        try:
            status = await orchestrator.receive_webhook(provider, await request.body(), dict(request.headers))
        except InvalidSignature as error:
            log.warning("webhook refused: %s", error, extra={"provider": provider})
            raise
        return WebhookAnswer(status=status)


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
