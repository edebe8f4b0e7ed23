"""Payment commands, all driven by the saga: request, record the provider's answer, void, refund."""

from __future__ import annotations

from uuid import UUID

import msgspec
from fulfilment.deciders import PAYMENTS
from fulfilment.payments import RecordAuthorization, RecordDecline, RefundPayment, RequestPayment, VoidPayment
from fulfilment.values import Amount, CurrencyCode, ProviderReference, Reason, payment_stream
from litestar import Controller, Response, post
from litestar.params import FromPath, JSONBody
from servicekit.auth import SERVICE, allow

from command_service.handling import CommandAccepted
from command_service.routes.conventions import CommandRequestDep, problem_responses

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


class PaymentController(Controller):
    path = "/payments"
    tags = ["payments"]
    opt = allow(SERVICE)

    @post(
        "/",
        operation_id="requestPayment",
        summary="Request payment of an order's total",
        status_code=201,
        responses=problem_responses(409, 412),
    )
    async def request(
        self, data: JSONBody[RequestPaymentBody], command_request: CommandRequestDep
    ) -> Response[CommandAccepted]:
        command = RequestPayment(order_id=data.order_id, amount=data.amount, currency=data.currency)
        stream_id = payment_stream(data.order_id)
        return await command_request.run(PAYMENTS, stream_id, command, data)

    @post(
        "/{order_id:uuid}/authorization",
        status_code=200,
        operation_id="recordPaymentAuthorization",
        summary="Record that the provider authorised the payment",
        responses=problem_responses(404, 409, 412),
    )
    async def authorize(
        self,
        order_id: FromPath[UUID],
        data: JSONBody[AuthorizationBody],
        command_request: CommandRequestDep,
    ) -> Response[CommandAccepted]:
        command = RecordAuthorization(order_id=order_id, provider_reference=data.provider_reference)
        return await command_request.run(PAYMENTS, payment_stream(order_id), command, data)

    @post(
        "/{order_id:uuid}/decline",
        status_code=200,
        operation_id="recordPaymentDecline",
        summary="Record that the provider declined the payment",
        responses=problem_responses(404, 409, 412),
    )
    async def decline(
        self,
        order_id: FromPath[UUID],
        data: JSONBody[DeclineBody],
        command_request: CommandRequestDep,
    ) -> Response[CommandAccepted]:
        command = RecordDecline(order_id=order_id, reason=data.reason)
        return await command_request.run(PAYMENTS, payment_stream(order_id), command, data)

    @post(
        "/{order_id:uuid}/void",
        status_code=200,
        operation_id="voidPayment",
        summary="Call off a payment still waiting for the provider",
        responses=problem_responses(404, 409, 412),
    )
    async def void(
        self,
        order_id: FromPath[UUID],
        data: JSONBody[VoidBody],
        command_request: CommandRequestDep,
    ) -> Response[CommandAccepted]:
        command = VoidPayment(order_id=order_id, reason=data.reason)
        return await command_request.run(PAYMENTS, payment_stream(order_id), command, data)

    @post(
        "/{order_id:uuid}/refund",
        status_code=200,
        operation_id="refundPayment",
        summary="Pay an authorised payment back in full",
        responses=problem_responses(404, 409, 412),
    )
    async def refund(
        self, order_id: FromPath[UUID], command_request: CommandRequestDep
    ) -> Response[CommandAccepted]:
        command = RefundPayment(order_id=order_id)
        return await command_request.run(PAYMENTS, payment_stream(order_id), command)
