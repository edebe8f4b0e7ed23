"""The saga's own events: what happened to one order's fulfilment, stored in its stream `saga-<order id>`.

They are registered in the saga's own `EventRegistry` (`build_saga_registry`), not in
the domain's: other services never consume them, and the relay publishes only
the domain's categories. Replaying a stream through `saga_service.evolve`
gives the saga's state, so its whole history can be read and explained.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from uuid import UUID

import msgspec
from eventstore import EventRegistry

__all__ = [
    "ALL_EVENTS",
    "AbortRequested",
    "CancellationReceived",
    "CompensationStarted",
    "ConfirmationPrevailed",
    "ConfirmationStarted",
    "DeadlineFired",
    "Outcome",
    "PaymentAwaited",
    "ProviderReplied",
    "ReplyIgnored",
    "SagaCompleted",
    "SagaEvent",
    "SagaLine",
    "SagaParked",
    "SagaResumed",
    "SagaStarted",
    "StepCompleted",
    "build_saga_registry",
    "saga_stream",
]


def saga_stream(order_id: UUID) -> str:
    """The id of the stream that holds the saga of one order."""
    return f"saga-{order_id}"


class SagaLine(msgspec.Struct, frozen=True, kw_only=True):
    """One line of the order: which SKU (canonical) and how many units to reserve."""

    sku: str
    quantity: int


class Outcome(StrEnum):
    """How a saga ended."""

    CONFIRMED = "confirmed"
    REJECTED = "rejected"
    CANCELLED = "cancelled"
    ABORTED = "aborted"


class _SagaEvent(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag=True):
    pass


class SagaStarted(_SagaEvent, frozen=True, kw_only=True):
    """An order was placed; `plan` is the first phase's steps (one reservation per line)."""

    order_id: UUID
    customer_id: str
    lines: tuple[SagaLine, ...]
    currency: str
    total: int
    plan: tuple[str, ...]
    at: datetime


class StepCompleted(_SagaEvent, frozen=True, kw_only=True):
    """A step's command was answered; `result` is `ok`, `reserved`, `shortage` or `refused:<code>`."""

    step: str
    result: str
    at: datetime


class PaymentAwaited(_SagaEvent, frozen=True, kw_only=True):
    """Every line is reserved; payment is requested and the provider must answer by `due_at`."""

    plan: tuple[str, ...]
    due_at: datetime


class ProviderReplied(_SagaEvent, frozen=True, kw_only=True):
    """The payment provider answered in time."""

    authorized: bool
    provider_reference: str | None = None
    reason: str | None = None
    at: datetime


class ReplyIgnored(_SagaEvent, frozen=True, kw_only=True):
    """A provider's answer came when the saga no longer waited for one (after its deadline, say)."""

    authorized: bool
    provider_reference: str | None = None
    reason: str | None = None
    why: str
    at: datetime


class DeadlineFired(_SagaEvent, frozen=True, kw_only=True):
    """A deadline passed while the saga still waited."""

    deadline: str
    due_at: datetime
    at: datetime


class ConfirmationStarted(_SagaEvent, frozen=True, kw_only=True):
    """The payment was authorised: record it, confirm the order, commit each line's stock.

    `plan` is the order of these steps. Streams written before the order was confirmed first
    hold the commits before `confirm`, and are carried on with that plan.
    """

    plan: tuple[str, ...]


class CompensationStarted(_SagaEvent, frozen=True, kw_only=True):
    """The saga cannot go forward: `plan` undoes what was done, most recent first.

    `cancelled`: the customer cancelled the order, heard of as `OrderCancelled` or first as a
    forward step refused `order-not-pending`; the plan has no reject, and the saga ends `cancelled`.
    """

    reason: str
    plan: tuple[str, ...]
    cancelled: bool = False


class ConfirmationPrevailed(_SagaEvent, frozen=True, kw_only=True):
    """The order was confirmed before the compensation reached it: the compensation is dropped.

    An operator's abort while the saga was confirming turned it after its `confirm` had
    gone out; the command service accepted that `confirm`, and the compensation's first step
    was refused because the order is confirmed (`step` refused with `code`). Nothing of a
    confirmed order is undone, so the saga goes back to its confirmation, `confirm` done, and
    commits the lines it has not committed yet (none left in streams whose plan committed them
    before `confirm`: those end confirmed at once). `compensation` is why the saga had turned to
    compensating (the abort, its actor and reason), kept so the history says which request came
    too late.
    """

    compensation: str
    step: str
    code: str
    at: datetime


class CancellationReceived(_SagaEvent, frozen=True, kw_only=True):
    """The customer cancelled the order."""

    reason: str | None = None
    at: datetime


class SagaParked(_SagaEvent, frozen=True, kw_only=True):
    """A step's command was refused for a reason no retry fixes; the saga waits for an operator."""

    step: str
    status: int
    code: str
    detail: str | None = None
    at: datetime


class SagaResumed(_SagaEvent, frozen=True, kw_only=True):
    """An operator asked a parked saga to try its step again."""

    actor: str
    at: datetime


class AbortRequested(_SagaEvent, frozen=True, kw_only=True):
    """An operator gave up on the saga; it compensates what it did."""

    actor: str
    reason: str
    at: datetime


class SagaCompleted(_SagaEvent, frozen=True, kw_only=True):
    """The saga has nothing left to do."""

    outcome: Outcome
    at: datetime


type SagaEvent = (
    SagaStarted
    | StepCompleted
    | PaymentAwaited
    | ProviderReplied
    | ReplyIgnored
    | DeadlineFired
    | ConfirmationStarted
    | ConfirmationPrevailed
    | CompensationStarted
    | CancellationReceived
    | SagaParked
    | SagaResumed
    | AbortRequested
    | SagaCompleted
)

ALL_EVENTS: tuple[type[_SagaEvent], ...] = (
    SagaStarted,
    StepCompleted,
    PaymentAwaited,
    ProviderReplied,
    ReplyIgnored,
    DeadlineFired,
    ConfirmationStarted,
    ConfirmationPrevailed,
    CompensationStarted,
    CancellationReceived,
    SagaParked,
    SagaResumed,
    AbortRequested,
    SagaCompleted,
)


def build_saga_registry() -> EventRegistry:
    """The registry of the saga's events (its streams are read and written with it)."""
    registry = EventRegistry()
    for event_type in ALL_EVENTS:
        registry.register(event_type)
    return registry
