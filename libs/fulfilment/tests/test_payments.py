from __future__ import annotations

from uuid import UUID

import pytest
from fulfilment import Conflict, InvalidCommand, NotFound
from fulfilment.events import (
    PaymentAuthorized,
    PaymentDeclined,
    PaymentEvent,
    PaymentRefunded,
    PaymentRequested,
    PaymentVoided,
)
from fulfilment.payments import (
    Payment,
    PaymentStatus,
    RecordAuthorization,
    RecordDecline,
    RefundPayment,
    RequestPayment,
    VoidPayment,
    decide,
    evolve,
)
from testkit.deciders import DeciderSpec

ORDER = UUID("7a2f9b3c-1d4e-4f50-8a6b-5c4d3e2f1a33")
REQUESTED = PaymentRequested(order_id=ORDER, amount=315, currency="EUR")
AUTHORIZED = PaymentAuthorized(order_id=ORDER, provider_reference="psp-1")


SPEC = DeciderSpec(decide, evolve, initial_state=None)


def given_events(*events: PaymentEvent) -> Payment | None:
    return SPEC.given(*events).state


def test_requesting_a_payment() -> None:
    assert decide(None, RequestPayment(order_id=ORDER, amount=315, currency="EUR")) == [REQUESTED]


def test_requesting_the_same_payment_again_decides_nothing() -> None:
    assert SPEC.given(REQUESTED).when(RequestPayment(order_id=ORDER, amount=315, currency="EUR")) == []


def test_requesting_a_different_amount_for_the_same_order_is_refused() -> None:
    with pytest.raises(Conflict):
        SPEC.given(REQUESTED).when(RequestPayment(order_id=ORDER, amount=316, currency="EUR"))


def test_a_payment_is_for_a_positive_amount() -> None:
    with pytest.raises(InvalidCommand):
        decide(None, RequestPayment(order_id=ORDER, amount=0, currency="EUR"))


def test_recording_an_authorisation_keeps_the_provider_reference() -> None:
    state = given_events(REQUESTED)

    [event] = decide(state, RecordAuthorization(order_id=ORDER, provider_reference="psp-1"))

    assert event == AUTHORIZED
    payment = evolve(state, event)
    assert payment is not None
    assert (payment.status, payment.provider_reference) == (PaymentStatus.AUTHORIZED, "psp-1")


def test_the_same_authorisation_twice_decides_nothing_but_a_different_one_is_refused() -> None:
    state = given_events(REQUESTED, AUTHORIZED)

    assert decide(state, RecordAuthorization(order_id=ORDER, provider_reference="psp-1")) == []
    with pytest.raises(Conflict):
        decide(state, RecordAuthorization(order_id=ORDER, provider_reference="psp-2"))


def test_a_decline_after_an_authorisation_is_refused() -> None:
    with pytest.raises(Conflict) as refused:
        decide(
            given_events(REQUESTED, AUTHORIZED), RecordDecline(order_id=ORDER, reason="insufficient funds")
        )
    assert refused.value.code == "payment-not-pending"


def test_recording_a_decline() -> None:
    state = given_events(REQUESTED)

    assert decide(state, RecordDecline(order_id=ORDER, reason="no")) == [
        PaymentDeclined(order_id=ORDER, reason="no")
    ]
    assert (
        decide(
            given_events(REQUESTED, PaymentDeclined(order_id=ORDER, reason="no")),
            RecordDecline(order_id=ORDER, reason="no"),
        )
        == []
    )


def test_a_requested_payment_can_be_voided_once() -> None:
    [event] = SPEC.given(REQUESTED).when(VoidPayment(order_id=ORDER))

    assert event == PaymentVoided(order_id=ORDER)
    assert SPEC.given(REQUESTED, event).when(VoidPayment(order_id=ORDER)) == []


def test_an_authorised_payment_is_refunded_not_voided() -> None:
    state = given_events(REQUESTED, AUTHORIZED)

    with pytest.raises(Conflict) as refused:
        decide(state, VoidPayment(order_id=ORDER))
    assert refused.value.code == "payment-not-voidable"
    assert decide(state, RefundPayment(order_id=ORDER)) == [
        PaymentRefunded(order_id=ORDER, amount=315, currency="EUR", provider_reference="psp-1")
    ]


def test_refunding_twice_decides_nothing() -> None:
    refunded = PaymentRefunded(order_id=ORDER, amount=315, currency="EUR", provider_reference="psp-1")

    assert SPEC.given(REQUESTED, AUTHORIZED, refunded).when(RefundPayment(order_id=ORDER)) == []


def test_a_payment_never_authorised_cannot_be_refunded() -> None:
    with pytest.raises(Conflict) as refused:
        SPEC.given(REQUESTED).when(RefundPayment(order_id=ORDER))
    assert refused.value.code == "payment-not-refundable"


def test_answers_for_a_payment_never_requested_are_not_found() -> None:
    with pytest.raises(NotFound):
        decide(None, RecordAuthorization(order_id=ORDER, provider_reference="psp-1"))
