"""The payment aggregate, one per order: request, authorise, decline, void, refund.

A payment is requested for an amount, then the provider answers: authorised
(with its reference) or declined. In this suite an authorisation takes the
money, so undoing an authorised payment is a refund; a payment still waiting for
the provider is called off by voiding it. Repeating an answer already recorded
decides nothing (the provider and the saga both retry); a contradicting answer
is refused.
"""

from __future__ import annotations

from enum import StrEnum
from uuid import UUID

import msgspec

from fulfilment.errors import Conflict, InvalidCommand, NotFound
from fulfilment.events import (
    PaymentAuthorized,
    PaymentDeclined,
    PaymentEvent,
    PaymentRefunded,
    PaymentRequested,
    PaymentVoided,
)
from fulfilment.values import Amount, CurrencyCode, ProviderReference, Reason

__all__ = [
    "Payment",
    "PaymentCommand",
    "PaymentStatus",
    "RecordAuthorization",
    "RecordDecline",
    "RefundPayment",
    "RequestPayment",
    "VoidPayment",
    "decide",
    "evolve",
]


class RequestPayment(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    order_id: UUID
    amount: Amount
    currency: CurrencyCode


class RecordAuthorization(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    order_id: UUID
    provider_reference: ProviderReference


class RecordDecline(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    order_id: UUID
    reason: Reason


class VoidPayment(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    order_id: UUID
    reason: Reason | None = None


class RefundPayment(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    order_id: UUID


type PaymentCommand = RequestPayment | RecordAuthorization | RecordDecline | VoidPayment | RefundPayment


class PaymentStatus(StrEnum):
    REQUESTED = "requested"
    AUTHORIZED = "authorized"
    DECLINED = "declined"
    VOIDED = "voided"
    REFUNDED = "refunded"


class Payment(msgspec.Struct, frozen=True, kw_only=True):
    """An order's payment as far as deciding needs it; `None` stands for one not requested yet."""

    order_id: UUID
    amount: int
    currency: str
    status: PaymentStatus
    provider_reference: str | None = None


def decide(state: Payment | None, command: PaymentCommand) -> list[PaymentEvent]:
    """The events `command` causes on a payment in `state`, or a `DomainError` refusing it."""
    match command:
        case RequestPayment():
            return _request(state, command)
        case RecordAuthorization():
            payment = _existing(state, command.order_id)
            if (
                payment.status is PaymentStatus.AUTHORIZED
                and payment.provider_reference == command.provider_reference
            ):
                return []
            _require_status(
                payment, PaymentStatus.REQUESTED, "payment-not-pending", "record an authorisation for"
            )
            return [
                PaymentAuthorized(order_id=payment.order_id, provider_reference=command.provider_reference)
            ]
        case RecordDecline():
            payment = _existing(state, command.order_id)
            if payment.status is PaymentStatus.DECLINED:
                return []
            _require_status(payment, PaymentStatus.REQUESTED, "payment-not-pending", "record a decline for")
            return [PaymentDeclined(order_id=payment.order_id, reason=command.reason)]
        case VoidPayment():
            payment = _existing(state, command.order_id)
            if payment.status is PaymentStatus.VOIDED:
                return []
            _require_status(payment, PaymentStatus.REQUESTED, "payment-not-voidable", "void")
            return [PaymentVoided(order_id=payment.order_id, reason=command.reason)]
        case RefundPayment():
            return _refund(_existing(state, command.order_id))


def evolve(state: Payment | None, event: PaymentEvent) -> Payment | None:
    """The payment after `event`."""
    match event:
        case PaymentRequested():
            return Payment(
                order_id=event.order_id,
                amount=event.amount,
                currency=event.currency,
                status=PaymentStatus.REQUESTED,
            )
        case PaymentAuthorized():
            return msgspec.structs.replace(
                _requested(state),
                status=PaymentStatus.AUTHORIZED,
                provider_reference=event.provider_reference,
            )
        case PaymentDeclined():
            return msgspec.structs.replace(_requested(state), status=PaymentStatus.DECLINED)
        case PaymentVoided():
            return msgspec.structs.replace(_requested(state), status=PaymentStatus.VOIDED)
        case PaymentRefunded():
            return msgspec.structs.replace(_requested(state), status=PaymentStatus.REFUNDED)


def _request(state: Payment | None, command: RequestPayment) -> list[PaymentEvent]:
    if state is None:
        if command.amount < 1:
            raise InvalidCommand("invalid-amount", "a payment is for a positive amount")
        return [PaymentRequested(order_id=command.order_id, amount=command.amount, currency=command.currency)]
    if (state.amount, state.currency) == (command.amount, command.currency):
        return []
    raise Conflict(
        "payment-already-requested",
        f"payment of order {command.order_id} was already requested for {state.amount} {state.currency}",
    )


def _refund(payment: Payment) -> list[PaymentEvent]:
    if payment.status is PaymentStatus.REFUNDED:
        return []
    _require_status(payment, PaymentStatus.AUTHORIZED, "payment-not-refundable", "refund")
    reference = payment.provider_reference
    if reference is None:
        raise ValueError("an authorised payment without the provider's reference")
    return [
        PaymentRefunded(
            order_id=payment.order_id,
            amount=payment.amount,
            currency=payment.currency,
            provider_reference=reference,
        )
    ]


def _existing(state: Payment | None, order_id: UUID) -> Payment:
    if state is None:
        raise NotFound("payment-not-found", f"no payment was requested for order {order_id}")
    return state


def _require_status(payment: Payment, status: PaymentStatus, code: str, action: str) -> None:
    if payment.status is not status:
        raise Conflict(code, f"cannot {action} a payment that is {payment.status}")


def _requested(state: Payment | None) -> Payment:
    # A stream whose first event is not PaymentRequested is corrupt, not a refused command.
    if state is None:
        raise ValueError("payment event before PaymentRequested")
    return state
