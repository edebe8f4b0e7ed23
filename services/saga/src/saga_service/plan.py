"""The saga's plans: which steps each phase sends, in which order.

Reserving reserves each line; paying requests the payment and asks the
provider; confirming records the authorisation, confirms the order, then commits
each line. A compensation undoes what was done, the order's reject first, then
the payment, then the reservations, last line first (docs/saga.md says why).
"""

from __future__ import annotations

from saga_service.events import CompensationStarted, SagaLine
from saga_service.state import Phase, Saga, next_step
from saga_service.steps import (
    ASK_PROVIDER,
    CONFIRM,
    OK,
    RECORD_AUTHORIZATION,
    RECORD_DECLINE,
    REFUND_PAYMENT,
    REJECT,
    REQUEST_PAYMENT,
    RESERVED,
    VOID_PAYMENT,
    Commit,
    Release,
    Reserve,
    Step,
    encode_plan,
)

__all__ = ["PAYMENT_PLAN", "compensate", "compensation_plan", "confirmation_plan", "reservation_plan"]

PAYMENT_PLAN: tuple[Step, ...] = (REQUEST_PAYMENT, ASK_PROVIDER)


def reservation_plan(lines: tuple[SagaLine, ...]) -> tuple[Step, ...]:
    return tuple(Reserve(line.sku) for line in lines)


def confirmation_plan(lines: tuple[SagaLine, ...]) -> tuple[Step, ...]:
    # The order is confirmed before any of its stock is committed: a compensation before the
    # `confirm` then has every reservation to release and nothing shipped to take back (there is
    # no undoing a commit). Streams started earlier keep the plan they were given: the commits,
    # then `confirm`.
    return (RECORD_AUTHORIZATION, CONFIRM, *(Commit(line.sku) for line in lines))


def compensation_plan(
    saga: Saga, *, reject: bool, declined: bool, in_flight: Step | None
) -> tuple[Step, ...]:
    """The steps that undo what `saga` did; `in_flight`: a step sent whose answer is not recorded."""
    # The order is rejected first. A `confirm` may be in flight (an operator's abort while
    # confirming): the reject is a command on the order's stream like it, so exactly one of the two
    # goes through, and a reject refused `order-confirmed` says the confirmation won. A refund first
    # would race it instead: a command on the payment's stream, checked against the order read
    # without a lock, so both could pass their checks at once and the order end confirmed and
    # refunded. A late reservation, too, then meets an order that is not pending and is refused,
    # where after the releases it would be made and stay held.
    steps: list[Step] = [REJECT] if reject else []
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
        reserve = Reserve(line.sku)
        if (saga.done.get(reserve) == RESERVED or in_flight == reserve) and saga.done.get(
            Commit(line.sku)
        ) != OK:
            steps.append(Release(line.sku))
    return tuple(steps)


def compensate(
    saga: Saga, reason: str, *, declined: bool = False, outside: bool = True
) -> CompensationStarted:
    """Start undoing; `outside`: the input came from outside the drive (the next step may be in flight)."""
    in_flight = next_step(saga) if outside else None
    plan = compensation_plan(saga, reject=not saga.cancelled, declined=declined, in_flight=in_flight)
    return CompensationStarted(reason=reason, plan=encode_plan(plan), cancelled=saga.cancelled)
