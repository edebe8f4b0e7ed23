"""Payment commands, all driven by the saga: request, record the provider's answer, void, refund."""

from __future__ import annotations

from uuid import UUID

import msgspec
from fulfilment.deciders import PAYMENTS
from fulfilment.payments import RecordAuthorization, RecordDecline, RefundPayment, RequestPayment, VoidPayment
from fulfilment.rules import check_payment_request, check_refund
from fulfilment.values import Amount, CurrencyCode, ProviderReference, Reason, payment_stream
from litestar import Controller, Response, post
from litestar.params import FromPath, JSONBody
from servicekit.auth import SERVICE, requires
from servicekit.openapi import OptionalBodyOperation

from command_service.handling import CommandAccepted
from command_service.routes.conventions import CommandRequestDep, problem_responses, run

__all__ = ["PaymentController"]


class RequestPaymentBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    order_id: UUID
    amount: Amount
    currency: CurrencyCode


class AuthorizationBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    provider_reference: ProviderReference


class DeclineBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    reason: Reason


class VoidBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    reason: Reason | None = None


class RefundBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What the caller expects to pay back: if given, it must be the whole amount captured."""

    amount: Amount | None = None


class PaymentController(Controller):
    path = "/payments"
    tags = ["payments"]

    @post(
        "/",
        operation_id="requestPayment",
        summary="Request payment of a pending order's total, in its currency",
        status_code=201,
        **requires(SERVICE),
        responses=problem_responses(409, 412),
    )
    async def request(
        self, data: JSONBody[RequestPaymentBody], command_request: CommandRequestDep
    ) -> Response[CommandAccepted]:
        related = command_request.services.related

        async def the_order_total() -> None:
            order = await related.order(data.order_id)
            check_payment_request(order, data.order_id, data.amount, data.currency)

        command = RequestPayment(order_id=data.order_id, amount=data.amount, currency=data.currency)
        stream_id = payment_stream(data.order_id)
        return await run(command_request, PAYMENTS, stream_id, command, data, check=the_order_total)

    @post(
        "/{order_id:uuid}/authorization",
        status_code=200,
        operation_id="recordPaymentAuthorization",
        summary="Record that the provider authorised the payment",
        **requires(SERVICE),
        responses=problem_responses(404, 409, 412),
    )
    async def authorize(
        self,
        order_id: FromPath[UUID],
        data: JSONBody[AuthorizationBody],
        command_request: CommandRequestDep,
    ) -> Response[CommandAccepted]:
        command = RecordAuthorization(order_id=order_id, provider_reference=data.provider_reference)
        return await run(command_request, PAYMENTS, payment_stream(order_id), command, data)

    @post(
        "/{order_id:uuid}/decline",
        status_code=200,
        operation_id="recordPaymentDecline",
        summary="Record that the provider declined the payment",
        **requires(SERVICE),
        responses=problem_responses(404, 409, 412),
    )
    async def decline(
        self,
        order_id: FromPath[UUID],
        data: JSONBody[DeclineBody],
        command_request: CommandRequestDep,
    ) -> Response[CommandAccepted]:
        command = RecordDecline(order_id=order_id, reason=data.reason)
        return await run(command_request, PAYMENTS, payment_stream(order_id), command, data)

    @post(
        "/{order_id:uuid}/void",
        status_code=200,
        operation_id="voidPayment",
        operation_class=OptionalBodyOperation,
        summary="Call off a payment still waiting for the provider",
        **requires(SERVICE),
        responses=problem_responses(404, 409, 412),
    )
    async def void(
        self,
        order_id: FromPath[UUID],
        command_request: CommandRequestDep,
        # Every field is optional, so is the body: no body (or `null`) is the same as `{}`.
        data: JSONBody[VoidBody | None] = None,
    ) -> Response[CommandAccepted]:
        body = data or VoidBody()
        command = VoidPayment(order_id=order_id, reason=body.reason)
        return await run(command_request, PAYMENTS, payment_stream(order_id), command, body)

    @post(
        "/{order_id:uuid}/refund",
        status_code=200,
        operation_id="refundPayment",
        operation_class=OptionalBodyOperation,
        summary="Pay an authorised payment back in full (not while its order is confirmed)",
        **requires(SERVICE),
        responses=problem_responses(404, 409, 412),
    )
    async def refund(
        self,
        order_id: FromPath[UUID],
        command_request: CommandRequestDep,
        # Every field is optional, so is the body: no body (or `null`) is the same as `{}`.
        data: JSONBody[RefundBody | None] = None,
    ) -> Response[CommandAccepted]:
        body = data or RefundBody()
        related = command_request.services.related

        async def captured_and_not_confirmed() -> None:
            order, payment = await related.order(order_id), await related.payment(order_id)
            check_refund(order, payment, body.amount)

        command = RefundPayment(order_id=order_id)
        stream_id = payment_stream(order_id)
        return await run(
            command_request, PAYMENTS, stream_id, command, body, check=captured_and_not_confirmed
        )
