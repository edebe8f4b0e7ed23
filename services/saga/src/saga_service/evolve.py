"""`evolve(state, event) -> state`: a saga's state after one of its events.

Events hold steps and results in their string form; they are decoded here, so the
state holds typed values only.
"""

from __future__ import annotations

import msgspec

from saga_service.events import (
    AbortRequested,
    CancellationReceived,
    CompensationStarted,
    ConfirmationPrevailed,
    ConfirmationStarted,
    DeadlineFired,
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
from saga_service.state import Parked, Phase, Saga
from saga_service.steps import CONFIRM, OK, decode_plan, decode_result, decode_step

__all__ = ["evolve"]


def evolve(state: Saga | None, event: SagaEvent) -> Saga | None:
    """The saga after `event`."""
    if isinstance(event, SagaStarted):
        return _started(event)
    if state is None:
        raise ValueError(f"{type(event).__name__} before SagaStarted")
    replace = msgspec.structs.replace
    match event:
        case StepCompleted():
            return replace(state, done={**state.done, decode_step(event.step): decode_result(event.result)})
        case PaymentAwaited():
            return replace(
                state, phase=Phase.PAYING, plan=decode_plan(event.plan), payment_due_at=event.due_at
            )
        case ProviderReplied():
            return replace(
                state, replied=True, provider_reference=event.provider_reference, decline_reason=event.reason
            )
        case ReplyIgnored() | DeadlineFired() | AbortRequested():
            return state
        case ConfirmationStarted():
            plan = decode_plan(event.plan)
            return replace(state, phase=Phase.CONFIRMING, plan=plan, confirmation=plan)
        case ConfirmationPrevailed():
            return _confirmation_prevailed(state, event)
        case CompensationStarted():
            return _compensation_started(state, event)
        case CancellationReceived():
            return replace(state, cancelled=True)
        case SagaParked():
            parked = Parked(
                step=decode_step(event.step), status=event.status, code=event.code, detail=event.detail
            )
            return replace(state, parked=parked)
        case SagaResumed():
            return replace(state, parked=None)
        case SagaCompleted():
            return replace(state, phase=Phase.DONE, outcome=event.outcome, parked=None)
    raise AssertionError(f"unknown event {event!r}")  # pragma: no cover


def _started(event: SagaStarted) -> Saga:
    return Saga(
        order_id=event.order_id,
        customer_id=event.customer_id,
        lines=event.lines,
        currency=event.currency,
        total=event.total,
        phase=Phase.RESERVING,
        plan=decode_plan(event.plan),
    )


def _confirmation_prevailed(state: Saga, event: ConfirmationPrevailed) -> Saga:
    # Back to the confirmation, its `confirm` done (the refusal shows the command service
    # accepted it), with the plan it started with. The dropped compensation's steps leave
    # `done`, so a refund after a later cancellation is a step still to send, not one
    # already answered.
    done = {step: result for step, result in state.done.items() if step not in state.plan}
    return msgspec.structs.replace(
        state,
        phase=Phase.CONFIRMING,
        plan=state.confirmation,
        done={**done, CONFIRM: OK},
        reason=f"{event.compensation}: too late, the order was confirmed first "
        f"({event.step} refused: {event.code})",
    )


def _compensation_started(state: Saga, event: CompensationStarted) -> Saga:
    return msgspec.structs.replace(
        state,
        phase=Phase.COMPENSATING,
        plan=decode_plan(event.plan),
        reason=event.reason,
        cancelled=state.cancelled or event.cancelled,
        parked=None,
        # A compensation starting after confirmation (a cancelled order) is a new saga phase.
        outcome=None,
    )
