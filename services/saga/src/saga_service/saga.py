"""The saga's decisions, pure: `decide(state, input) -> events`, `evolve(state, event) -> state`.

A saga works through a *plan*: an ordered list of steps, each one command to the
command service or the payment provider. `next_step(state)` is the first step of
the current plan not done yet; the orchestrator sends it and reports the answer
back (`RecordStep`). Phases follow each other like this:

    reserving ──all reserved──▶ paying ──authorised──▶ confirming ──every line committed──▶ confirmed
        │                         │                        │ refused / abort / cancel
        │                         │ declined / deadline    │ (abort: only before `confirm` is recorded)
        └──shortage / refused─────┴────────────────────────┴──▶ compensating ──▶ rejected / cancelled
                                                                      └─▶ confirming (its `confirm`
                                                                          went through first)

Confirming records the authorisation, confirms the order, then commits each
line's stock (the units leave the warehouse for a confirmed order). Until its
`confirm` is accepted nothing is committed, so a compensation gives every
reservation back; once it is recorded the order is confirmed, and the saga ends
only when every line is committed. An operator cannot abort it then (`SagaRefused`):
only the customer's cancellation undoes a confirmed order, refunding it and
releasing the lines not committed yet. Streams whose confirmation started before
this order carry their own plan (the commits, then `confirm`) and go on with it.

A cancellation by the customer, or an operator's abort, also leads to
`compensating`. A compensation plan undoes what was done: first the order is
rejected (not when the customer cancelled it: it is over already), then the
payment (void, or refund once authorised), then the reservations not committed
are released, last line first. Rejecting first means the order is no longer
pending when its stock is given back, so a reservation still on its way is
refused by the command service (a reservation is only for a pending order)
instead of being made after its release and staying held; and that a `confirm`
still on its way and the reject meet on the order's stream, where only one of
them can go through.

The saga ends as its order did. The customer's cancellation may reach the saga
as the event, or first as a forward step refused `order-not-pending` (the order
was cancelled before the command service saw the step; only the saga confirms or
rejects a pending order), or as its reject refused so. Whichever comes first,
the saga compensates it as a cancellation and ends `cancelled`, not `rejected`.

An abort while confirming may come after the `confirm` command went out and was
accepted, before its answer is recorded. The compensation then meets a confirmed
order: its reject, the first step, is refused (`order-confirmed`; so is the
refund that came first in compensations started before the reject did). The
confirmation won: the saga drops the compensation (`ConfirmationPrevailed`),
undoing nothing of the confirmed order, and goes on with its commits.

Every input is checked against the state, so a duplicate (a redelivered event,
a step answered twice, a webhook retried) decides nothing, and two instances
racing on one saga cannot both move it: the stream's expected version lets only
one of them append, and the other decides again on the new state.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from enum import StrEnum
from uuid import UUID

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
    SagaLine,
    SagaParked,
    SagaResumed,
    SagaStarted,
    StepCompleted,
)

__all__ = [
    "PAYMENT_DEADLINE",
    "Abort",
    "Begin",
    "Cancel",
    "FireDeadline",
    "Park",
    "Parked",
    "Phase",
    "ReceiveReply",
    "RecordStep",
    "Resume",
    "Saga",
    "SagaInput",
    "SagaRefused",
    "decide",
    "evolve",
    "next_step",
    "saga_decider",
]

PAYMENT_DEADLINE = "payment"

# Step names: "reserve:<sku>", "commit:<sku>", "release:<sku>", and these.
REQUEST_PAYMENT = "request-payment"
ASK_PROVIDER = "ask-provider"
RECORD_AUTHORIZATION = "record-authorization"
RECORD_DECLINE = "record-decline"
VOID_PAYMENT = "void-payment"
REFUND_PAYMENT = "refund-payment"
CONFIRM = "confirm"
REJECT = "reject"

RESERVED, SHORTAGE, OK = "reserved", "shortage", "ok"
REFUSED_PREFIX = "refused:"
# The command service's refusal of a refund while the order is confirmed (`fulfilment.rules.check_refund`).
ORDER_CONFIRMED = "order-confirmed"
# Its refusal of a reservation, a payment request, a confirm or a reject of an order no longer pending.
# Only the saga confirms or rejects an order, so a forward step (or the reject) refused so found
# the order cancelled by its customer: the cancellation reached the command service before the saga.
ORDER_NOT_PENDING = "order-not-pending"


class SagaRefused(Exception):
    """An operator's request the saga's state refuses (retry a saga that is not parked)."""


class Phase(StrEnum):
    RESERVING = "reserving"
    PAYING = "paying"
    CONFIRMING = "confirming"
    COMPENSATING = "compensating"
    DONE = "done"


class Parked(msgspec.Struct, frozen=True, kw_only=True):
    step: str
    status: int
    code: str
    detail: str | None = None


class Saga(msgspec.Struct, frozen=True, kw_only=True):
    """One order's saga as far as deciding needs it (`None` before the order was seen)."""

    order_id: UUID
    customer_id: str
    lines: tuple[SagaLine, ...]
    currency: str
    total: int
    phase: Phase
    plan: tuple[str, ...]
    done: Mapping[str, str] = msgspec.field(default_factory=dict)
    payment_due_at: datetime | None = None
    replied: bool = False
    provider_reference: str | None = None
    decline_reason: str | None = None
    cancelled: bool = False
    reason: str | None = None
    parked: Parked | None = None
    outcome: Outcome | None = None
    # The confirmation's plan as `ConfirmationStarted` gave it (a compensation replaces `plan`).
    confirmation: tuple[str, ...] = ()


# --- inputs ----------------------------------------------------------------------------------


class Begin(msgspec.Struct, frozen=True, kw_only=True):
    order_id: UUID
    customer_id: str
    lines: tuple[SagaLine, ...]
    currency: str
    total: int
    at: datetime


class RecordStep(msgspec.Struct, frozen=True, kw_only=True):
    step: str
    result: str
    at: datetime


class ReceiveReply(msgspec.Struct, frozen=True, kw_only=True):
    authorized: bool
    provider_reference: str | None = None
    reason: str | None = None
    at: datetime


class FireDeadline(msgspec.Struct, frozen=True, kw_only=True):
    deadline: str
    at: datetime


class Cancel(msgspec.Struct, frozen=True, kw_only=True):
    reason: str | None = None
    at: datetime


class Park(msgspec.Struct, frozen=True, kw_only=True):
    step: str
    status: int
    code: str
    detail: str | None = None
    at: datetime


class Resume(msgspec.Struct, frozen=True, kw_only=True):
    actor: str
    at: datetime


class Abort(msgspec.Struct, frozen=True, kw_only=True):
    actor: str
    reason: str
    at: datetime


type SagaInput = Begin | RecordStep | ReceiveReply | FireDeadline | Cancel | Park | Resume | Abort


# --- the plan --------------------------------------------------------------------------------


def next_step(saga: Saga | None) -> str | None:
    """The step to send now, or None while the saga waits (for the provider, an operator) or is over."""
    if saga is None or saga.parked is not None or saga.phase is Phase.DONE:
        return None
    return next((step for step in saga.plan if step not in saga.done), None)


def _confirmation_plan(lines: tuple[SagaLine, ...]) -> tuple[str, ...]:
    # The order is confirmed before any of its stock is committed: a compensation before the
    # `confirm` then has every reservation to release and nothing shipped to take back (there is
    # no undoing a commit). Streams started earlier keep the plan they were given: the commits,
    # then `confirm`.
    return (RECORD_AUTHORIZATION, CONFIRM, *(f"commit:{line.sku}" for line in lines))


def _confirmed(saga: Saga) -> bool:
    """Is the order confirmed as far as the saga knows (its `confirm` accepted)?"""
    return saga.done.get(CONFIRM) == OK


def _compensation(saga: Saga, *, reject: bool, declined: bool, in_flight: str | None) -> tuple[str, ...]:
    # The order is rejected first. A `confirm` may be in flight (an operator's abort while
    # confirming): the reject is a command on the order's stream like it, so exactly one of the two
    # goes through, and a reject refused `order-confirmed` says the confirmation won. A refund first
    # would race it instead: a command on the payment's stream, checked against the order read
    # without a lock, so both could pass their checks at once and the order end confirmed and
    # refunded. A late reservation, too, then meets an order that is not pending and is refused,
    # where after the releases it would be made and stay held.
    steps: list[str] = [REJECT] if reject else []
    if declined:
        steps.append(RECORD_DECLINE)
    elif saga.done.get(RECORD_AUTHORIZATION) == OK:
        steps.append(REFUND_PAYMENT)
    elif in_flight == RECORD_AUTHORIZATION:
        # The authorisation may be recorded or not: voided if it is not, refunded once captured
        # (the one that does not apply is refused, which counts as nothing to undo).
        steps += [VOID_PAYMENT, REFUND_PAYMENT]
    elif REQUEST_PAYMENT in saga.done or saga.phase in (Phase.PAYING, Phase.CONFIRMING):
        # Requested (or possibly requested by a step still in flight): a payment nobody answered is voided.
        steps.append(VOID_PAYMENT)
    # A reservation whose answer is still on its way (the step in flight when an outside input turned
    # the saga) may have been made: releasing it is harmless if not, and the driver that sent it sends
    # the release after it, so the release cannot overtake it.
    # A committed line has shipped and stays so (the command service refuses to release it); a
    # commit refused or still in flight is released (refused in turn if that commit went through).
    for line in reversed(saga.lines):
        reserve = f"reserve:{line.sku}"
        if (saga.done.get(reserve) == RESERVED or in_flight == reserve) and saga.done.get(
            f"commit:{line.sku}"
        ) != OK:
            steps.append(f"release:{line.sku}")
    return tuple(steps)


def _compensate(
    saga: Saga, reason: str, *, declined: bool = False, outside: bool = True
) -> CompensationStarted:
    """Start undoing; `outside`: the input came from outside the drive (the next step may be in flight)."""
    in_flight = next_step(saga) if outside else None
    plan = _compensation(saga, reject=not saga.cancelled, declined=declined, in_flight=in_flight)
    return CompensationStarted(reason=reason, plan=plan, cancelled=saga.cancelled)


# --- decide ----------------------------------------------------------------------------------


def saga_decider(payment_timeout: timedelta) -> Decider[Saga | None, SagaInput, SagaEvent]:
    """The saga as an event store `Decider`; the provider must answer within `payment_timeout`."""

    def decide_with_timeout(state: Saga | None, command: SagaInput) -> list[SagaEvent]:
        return decide(state, command, payment_timeout=payment_timeout)

    return Decider(initial_state=None, decide=decide_with_timeout, evolve=evolve)


def decide(state: Saga | None, command: SagaInput, *, payment_timeout: timedelta) -> list[SagaEvent]:
    """The events `command` causes on the saga in `state` (none for a duplicate or a stale input)."""
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
                plan=tuple(f"reserve:{line.sku}" for line in command.lines),
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
            return [fired, _compensate(state, "payment not answered before its deadline")]
        case Cancel():
            return _cancel(state, command)
        case Park():
            if command.step != next_step(state):
                return []
            return [
                SagaParked(
                    step=command.step,
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
    if command.step != next_step(state):
        return []  # answered twice, or the plan changed while the command was in flight
    completed = StepCompleted(step=command.step, result=command.result, at=command.at)
    after = evolve(state, completed)
    assert after is not None
    events: list[SagaEvent] = [completed]
    refused = command.result.startswith(REFUSED_PREFIX)
    if state.phase is Phase.COMPENSATING:
        # The order is confirmed though the saga never recorded its `confirm`: that one was in
        # flight when the compensation started, and it won. (Once `confirm` is recorded, a refused
        # refund is an ordinary refused compensation.)
        if command.result == REFUSED_PREFIX + ORDER_CONFIRMED and not _confirmed(state):
            return [completed, *_confirmed_first(after, command)]
        # A refused compensation had nothing to undo (already released, order already over).
        if next_step(after) is None:
            outcome = Outcome.CANCELLED if _cancelled_by_customer(after) else Outcome.REJECTED
            events.append(SagaCompleted(outcome=outcome, at=command.at))
        return events
    if refused and state.phase is Phase.CONFIRMING and _confirmed(state):
        # A commit of a confirmed order refused: the saga does not undo a confirmed order on its
        # own. The likely cause is its customer's cancellation (`order-not-active`), on its way to
        # the saga, which then compensates it; anything else is for an operator to look at.
        return [
            SagaParked(
                step=command.step,
                status=409,
                code=command.result.removeprefix(REFUSED_PREFIX),
                detail="refused after the order was confirmed: waiting for its cancellation or an operator",
                at=command.at,
            )
        ]
    if command.result == SHORTAGE:
        sku = command.step.removeprefix("reserve:")
        events.append(_compensate(after, f"insufficient stock of {sku}", outside=False))
    elif command.result == REFUSED_PREFIX + ORDER_NOT_PENDING:
        # The customer cancelled the order and the saga hears of it from the command service
        # first: compensated as the cancellation (no reject, outcome `cancelled`), whichever of the
        # two arrives first. The cancellation event, when it comes, then decides nothing.
        cancelled = msgspec.structs.replace(after, cancelled=True)
        reason = f"the customer cancelled the order ({command.step} refused: {ORDER_NOT_PENDING})"
        events.append(_compensate(cancelled, reason, outside=False))
    elif refused:
        code = command.result.removeprefix(REFUSED_PREFIX)
        events.append(_compensate(after, f"{command.step} refused: {code}", outside=False))
    elif next_step(after) is None:
        if state.phase is Phase.RESERVING:
            events.append(
                PaymentAwaited(plan=(REQUEST_PAYMENT, ASK_PROVIDER), due_at=command.at + payment_timeout)
            )
        elif state.phase is Phase.CONFIRMING:
            events.append(SagaCompleted(outcome=Outcome.CONFIRMED, at=command.at))
    return events


def _cancelled_by_customer(saga: Saga) -> bool:
    """Did the customer cancel the order: the cancellation noted, or the saga's reject refused because
    the order was no longer pending (cancelled before the reject reached it; confirmed reads
    `order-confirmed`)? The saga then ends as its order did, `cancelled`."""
    return saga.cancelled or saga.done.get(REJECT) == REFUSED_PREFIX + ORDER_NOT_PENDING


def _confirmed_first(state: Saga, command: RecordStep) -> list[SagaEvent]:
    """The compensation met a confirmed order: the `confirm` sent before it started went through.

    Only a compensation that turned the saga while its `confirm` was in flight gets here (an
    operator's abort; a customer's cancellation is appended to the order before the saga hears
    of it, so its refund finds the order cancelled, not confirmed). Nothing of the confirmed
    order is undone: the reject is the plan's first step (the refund, in compensations started
    before the reject came first), and was refused, so no other step of the plan was sent. The saga goes back
    to its confirmation, `confirm` done, and commits the lines (a confirmation started before
    `confirm` came first committed them all already: the saga ends confirmed at once). A
    cancellation noted while compensating (the customer cancelled the order once it was
    confirmed) is then compensated like any cancellation of a confirmed order: its refund goes
    out again, and is accepted now that the order is cancelled.
    """
    prevailed = ConfirmationPrevailed(
        compensation=state.reason or "compensation", step=command.step, code=ORDER_CONFIRMED, at=command.at
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
        events.append(_compensate(confirming, "the customer cancelled the order", outside=False))
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
        return [replied, ConfirmationStarted(plan=_confirmation_plan(state.lines))]
    reason = f"payment declined: {command.reason or 'no reason given'}"
    return [replied, _compensate(state, reason, declined=True)]


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
        return [received, _compensate(cancelled, "the customer cancelled the order")]
    # Compensating already (its reject will find the order cancelled), or over: only note it.
    return [received]


def _abort(state: Saga, command: Abort) -> list[SagaEvent]:
    if state.phase is Phase.DONE:
        raise SagaRefused(f"the saga is over ({state.outcome})")
    if state.phase is Phase.CONFIRMING and _confirmed(state):
        # Its stock is being committed: nothing the saga could undo now would stop it shipping,
        # and a confirmed order is undone by its customer's cancellation only.
        raise SagaRefused("the order is confirmed: its stock is being committed, it cannot be aborted")
    requested = AbortRequested(actor=command.actor, reason=command.reason, at=command.at)
    if state.phase is Phase.COMPENSATING:
        # Already undoing, and stuck at a step: aborting gives up on the rest.
        return [requested, SagaCompleted(outcome=Outcome.ABORTED, at=command.at)]
    return [requested, _compensate(state, f"aborted by {command.actor}: {command.reason}")]


# --- evolve ----------------------------------------------------------------------------------


def evolve(state: Saga | None, event: SagaEvent) -> Saga | None:
    """The saga after `event`."""
    if isinstance(event, SagaStarted):
        return Saga(
            order_id=event.order_id,
            customer_id=event.customer_id,
            lines=event.lines,
            currency=event.currency,
            total=event.total,
            phase=Phase.RESERVING,
            plan=event.plan,
        )
    if state is None:
        raise ValueError(f"{type(event).__name__} before SagaStarted")
    replace = msgspec.structs.replace
    match event:
        case StepCompleted():
            return replace(state, done={**state.done, event.step: event.result})
        case PaymentAwaited():
            return replace(state, phase=Phase.PAYING, plan=event.plan, payment_due_at=event.due_at)
        case ProviderReplied():
            return replace(
                state, replied=True, provider_reference=event.provider_reference, decline_reason=event.reason
            )
        case ReplyIgnored() | DeadlineFired() | AbortRequested():
            return state
        case ConfirmationStarted():
            return replace(state, phase=Phase.CONFIRMING, plan=event.plan, confirmation=event.plan)
        case ConfirmationPrevailed():
            # Back to the confirmation, its `confirm` done (the refusal shows the command service
            # accepted it), with the plan it started with. The dropped compensation's steps leave
            # `done`, so a refund after a later cancellation is a step still to send, not one
            # already answered.
            done = {step: result for step, result in state.done.items() if step not in state.plan}
            return replace(
                state,
                phase=Phase.CONFIRMING,
                plan=state.confirmation,
                done={**done, CONFIRM: OK},
                reason=f"{event.compensation}: too late, the order was confirmed first "
                f"({event.step} refused: {event.code})",
            )
        case CompensationStarted():
            return replace(
                state,
                phase=Phase.COMPENSATING,
                plan=event.plan,
                reason=event.reason,
                cancelled=state.cancelled or event.cancelled,
                parked=None,
                # A compensation starting after confirmation (a cancelled order) is a new saga phase.
                outcome=None,
            )
        case CancellationReceived():
            return replace(state, cancelled=True)
        case SagaParked():
            parked = Parked(step=event.step, status=event.status, code=event.code, detail=event.detail)
            return replace(state, parked=parked)
        case SagaResumed():
            return replace(state, parked=None)
        case SagaCompleted():
            return replace(state, phase=Phase.DONE, outcome=event.outcome, parked=None)
    raise AssertionError(f"unknown event {event!r}")  # pragma: no cover
