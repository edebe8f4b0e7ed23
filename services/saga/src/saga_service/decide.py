"""`decide(state, input) -> events`: what a saga does about one input, pure.

Phases: reserving -> paying -> confirming -> done, or from any of them to
compensating -> done (docs/saga.md tells the whole story). Every input is
checked against the state, so a duplicate (a redelivered event, a step answered
twice, a webhook retried) decides nothing.
"""

from __future__ import annotations

from datetime import timedelta

import msgspec
from eventstore import Decider

from saga_service.events import (
    AbortRequested,
    CancellationReceived,
    CompensationStarted,
    ConfirmationPrevailed,
    ConfirmationStarted,
    DeadlineFired,
    Outcome,
    PaymentAwaited,
    ProviderReplied,
    ReplyIgnored,
    SagaCompleted,
    SagaEvent,
    SagaParked,
    SagaResumed,
    SagaStarted,
    StepCompleted,
)
from saga_service.evolve import evolve
from saga_service.inputs import (
    Abort,
    Begin,
    Cancel,
    FireDeadline,
    Park,
    ReceiveReply,
    RecordStep,
    Resume,
    SagaInput,
)
from saga_service.plan import PAYMENT_PLAN, compensate, confirmation_plan, reservation_plan
from saga_service.state import PAYMENT_DEADLINE, Phase, Saga, SagaRefused, confirmed, next_step
from saga_service.steps import REJECT, Refused, Reserve, Shortage, encode_plan

__all__ = ["ORDER_CONFIRMED", "ORDER_NOT_PENDING", "decide", "saga_decider"]

# The command service's refusal of a refund while the order is confirmed (`fulfilment.rules.check_refund`).
ORDER_CONFIRMED = "order-confirmed"
# Its refusal of a reservation, a payment request, a confirm or a reject of an order no longer pending.
# Only the saga confirms or rejects an order, so a forward step (or the reject) refused so found
# the order cancelled by its customer: the cancellation reached the command service before the saga.
ORDER_NOT_PENDING = "order-not-pending"


def saga_decider(payment_timeout: timedelta) -> Decider[Saga | None, SagaInput, SagaEvent]:
    """The saga as an event store `Decider`; the provider must answer within `payment_timeout`."""

    def decide_with_timeout(state: Saga | None, command: SagaInput) -> list[SagaEvent]:
        return decide(state, command, payment_timeout=payment_timeout)

    return Decider(initial_state=None, decide=decide_with_timeout, evolve=evolve)


def decide(state: Saga | None, command: SagaInput, *, payment_timeout: timedelta) -> list[SagaEvent]:
    """The events `command` causes on the saga in `state` (none for a duplicate or a stale input)."""
    events = _decide(state, command, payment_timeout=payment_timeout)
    if events and isinstance(events[-1], CompensationStarted) and not events[-1].plan:
        # Nothing to undo (a customer's cancellation met before anything was reserved or asked for):
        # the compensation is over as it starts. Waiting for a step that does not exist would hang.
        outcome = Outcome.CANCELLED if events[-1].cancelled else Outcome.REJECTED
        events.append(SagaCompleted(outcome=outcome, at=command.at))
    return events


def _decide(state: Saga | None, command: SagaInput, *, payment_timeout: timedelta) -> list[SagaEvent]:
    if isinstance(command, Begin):
        if state is not None:
            return []
        return [
            SagaStarted(
                order_id=command.order_id,
                customer_id=command.customer_id,
                lines=command.lines,
                currency=command.currency,
                total=command.total,
                plan=encode_plan(reservation_plan(command.lines)),
                at=command.at,
            )
        ]
    if state is None:
        # Webhooks, deadlines and admin calls name an order; one the saga never saw is refused.
        raise SagaRefused("no saga for this order")
    match command:
        case RecordStep():
            return _record_step(state, command, payment_timeout)
        case ReceiveReply():
            return _receive_reply(state, command)
        case FireDeadline():
            if command.deadline != PAYMENT_DEADLINE or state.phase is not Phase.PAYING or state.replied:
                return []
            assert state.payment_due_at is not None
            fired = DeadlineFired(deadline=command.deadline, due_at=state.payment_due_at, at=command.at)
            return [fired, compensate(state, "payment not answered before its deadline")]
        case Cancel():
            return _cancel(state, command)
        case Park():
            if command.step != next_step(state):
                return []
            return [
                SagaParked(
                    step=command.step.encode(),
                    status=command.status,
                    code=command.code,
                    detail=command.detail,
                    at=command.at,
                )
            ]
        case Resume():
            if state.parked is None:
                raise SagaRefused("the saga is not parked")
            return [SagaResumed(actor=command.actor, at=command.at)]
        case Abort():
            return _abort(state, command)
    raise AssertionError(f"unknown input {command!r}")  # pragma: no cover


def _record_step(state: Saga, command: RecordStep, payment_timeout: timedelta) -> list[SagaEvent]:
    step, result = command.step, command.result
    if step != next_step(state):
        return []  # answered twice, or the plan changed while the command was in flight
    completed = StepCompleted(step=step.encode(), result=result.encode(), at=command.at)
    after = evolve(state, completed)
    assert after is not None
    events: list[SagaEvent] = [completed]
    if state.phase is Phase.COMPENSATING:
        # The order is confirmed though the saga never recorded its `confirm`: that one was in
        # flight when the compensation started, and it won. (Once `confirm` is recorded, a refused
        # refund is an ordinary refused compensation.)
        if result == Refused(ORDER_CONFIRMED) and not confirmed(state):
            return [completed, *_confirmed_first(after, command)]
        # A refused compensation had nothing to undo (already released, order already over).
        if next_step(after) is None:
            outcome = Outcome.CANCELLED if _cancelled_by_customer(after) else Outcome.REJECTED
            events.append(SagaCompleted(outcome=outcome, at=command.at))
        return events
    match result:
        case Refused(code=code) if state.phase is Phase.CONFIRMING and confirmed(state):
            # A commit of a confirmed order refused: the saga does not undo a confirmed order on its
            # own. The likely cause is its customer's cancellation (`order-not-active`), on its way
            # to the saga, which then compensates it; anything else is for an operator to look at.
            detail = "refused after the order was confirmed: waiting for its cancellation or an operator"
            return [SagaParked(step=step.encode(), status=409, code=code, detail=detail, at=command.at)]
        case Refused(code=code) if code == ORDER_NOT_PENDING:
            # The customer cancelled the order and the saga hears of it from the command service
            # first: compensated as the cancellation (no reject, outcome `cancelled`), whichever of
            # the two arrives first. The cancellation event, when it comes, then decides nothing.
            cancelled = msgspec.structs.replace(after, cancelled=True)
            reason = f"the customer cancelled the order ({step.encode()} refused: {ORDER_NOT_PENDING})"
            events.append(compensate(cancelled, reason, outside=False))
        case Refused(code=code):
            events.append(compensate(after, f"{step.encode()} refused: {code}", outside=False))
        case Shortage():
            sku = step.sku if isinstance(step, Reserve) else step.encode()
            events.append(compensate(after, f"insufficient stock of {sku}", outside=False))
        case _ if next_step(after) is None:
            if state.phase is Phase.RESERVING:
                due_at = command.at + payment_timeout
                events.append(PaymentAwaited(plan=encode_plan(PAYMENT_PLAN), due_at=due_at))
            elif state.phase is Phase.CONFIRMING:
                events.append(SagaCompleted(outcome=Outcome.CONFIRMED, at=command.at))
    return events


def _cancelled_by_customer(saga: Saga) -> bool:
    """Did the customer cancel the order: the cancellation noted, or the saga's reject refused
    `order-not-pending`? The saga then ends as its order did, `cancelled`."""
    return saga.cancelled or saga.done.get(REJECT) == Refused(ORDER_NOT_PENDING)


def _confirmed_first(state: Saga, command: RecordStep) -> list[SagaEvent]:
    """The compensation met a confirmed order: the `confirm` sent before it started went through.

    Nothing of the confirmed order is undone (the refused step was the plan's first): the saga
    goes back to its confirmation and commits the lines; a cancellation noted meanwhile is then
    compensated like any cancellation of a confirmed order (docs/saga.md).
    """
    prevailed = ConfirmationPrevailed(
        compensation=state.reason or "compensation",
        step=command.step.encode(),
        code=ORDER_CONFIRMED,
        at=command.at,
    )
    confirming = evolve(state, prevailed)
    assert confirming is not None
    events: list[SagaEvent] = [prevailed]
    if next_step(confirming) is None:
        completed = SagaCompleted(outcome=Outcome.CONFIRMED, at=command.at)
        events.append(completed)
        confirming = evolve(confirming, completed)
        assert confirming is not None
    if confirming.cancelled:
        events.append(compensate(confirming, "the customer cancelled the order", outside=False))
    return events


def _receive_reply(state: Saga, command: ReceiveReply) -> list[SagaEvent]:
    if state.replied and (state.provider_reference, state.decline_reason) == (
        command.provider_reference,
        command.reason,
    ):
        return []  # the provider delivered the same answer again
    if state.phase is not Phase.PAYING or state.replied:
        return [
            ReplyIgnored(
                authorized=command.authorized,
                provider_reference=command.provider_reference,
                reason=command.reason,
                why=_why_not_waiting(state),
                at=command.at,
            )
        ]
    replied = ProviderReplied(
        authorized=command.authorized,
        provider_reference=command.provider_reference,
        reason=command.reason,
        at=command.at,
    )
    if command.authorized:
        return [replied, ConfirmationStarted(plan=encode_plan(confirmation_plan(state.lines)))]
    reason = f"payment declined: {command.reason or 'no reason given'}"
    return [replied, compensate(state, reason, declined=True)]


def _why_not_waiting(state: Saga) -> str:
    if state.replied:
        return "the provider already answered"
    if state.phase is Phase.COMPENSATING or (state.phase is Phase.DONE and state.outcome is not None):
        return f"the saga no longer waits for payment ({state.reason or state.outcome})"
    return f"the saga is not waiting for payment ({state.phase})"


def _cancel(state: Saga, command: Cancel) -> list[SagaEvent]:
    if state.cancelled:
        return []
    received = CancellationReceived(reason=command.reason, at=command.at)
    if state.phase in (Phase.RESERVING, Phase.PAYING, Phase.CONFIRMING) or (
        state.phase is Phase.DONE and state.outcome is Outcome.CONFIRMED
    ):
        cancelled = msgspec.structs.replace(state, cancelled=True)
        return [received, compensate(cancelled, "the customer cancelled the order")]
    # Compensating already (its reject will find the order cancelled), or over: only note it.
    return [received]


def _abort(state: Saga, command: Abort) -> list[SagaEvent]:
    if state.phase is Phase.DONE:
        raise SagaRefused(f"the saga is over ({state.outcome})")
    if state.phase is Phase.CONFIRMING and confirmed(state):
        # Its stock is being committed: nothing the saga could undo now would stop it shipping,
        # and a confirmed order is undone by its customer's cancellation only.
        raise SagaRefused("the order is confirmed: its stock is being committed, it cannot be aborted")
    requested = AbortRequested(actor=command.actor, reason=command.reason, at=command.at)
    if state.phase is Phase.COMPENSATING:
        # Already undoing, and stuck at a step: aborting gives up on the rest.
        return [requested, SagaCompleted(outcome=Outcome.ABORTED, at=command.at)]
    return [requested, compensate(state, f"aborted by {command.actor}: {command.reason}")]
