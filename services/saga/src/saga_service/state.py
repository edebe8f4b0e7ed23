"""A saga's state as deciding needs it, folded from its stream by `saga_service.evolve`."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from uuid import UUID

import msgspec

from saga_service.events import Outcome, SagaLine
from saga_service.steps import CONFIRM, OK, Result, Step

__all__ = ["PAYMENT_DEADLINE", "Parked", "Phase", "Saga", "SagaRefused", "confirmed", "next_step"]

# The one deadline a saga waits on: the provider's answer.
PAYMENT_DEADLINE = "payment"


class SagaRefused(Exception):
    """An input the saga's state refuses (an operator's retry of a saga that is not parked, say)."""


class Phase(StrEnum):
    RESERVING = "reserving"
    PAYING = "paying"
    CONFIRMING = "confirming"
    COMPENSATING = "compensating"
    DONE = "done"


class Parked(msgspec.Struct, frozen=True, kw_only=True):
    """The step an operator has to look at, and how the command service refused it."""

    step: Step
    status: int
    code: str
    detail: str | None = None


class Saga(msgspec.Struct, frozen=True, kw_only=True):
    """One order's saga (`None` before the order was seen)."""

    order_id: UUID
    customer_id: str
    lines: tuple[SagaLine, ...]
    currency: str
    total: int
    phase: Phase
    plan: tuple[Step, ...]
    done: Mapping[Step, Result] = msgspec.field(default_factory=dict)
    payment_due_at: datetime | None = None
    replied: bool = False
    provider_reference: str | None = None
    decline_reason: str | None = None
    cancelled: bool = False
    reason: str | None = None
    parked: Parked | None = None
    outcome: Outcome | None = None
    # The confirmation's plan as `ConfirmationStarted` gave it (a compensation replaces `plan`).
    confirmation: tuple[Step, ...] = ()


def next_step(saga: Saga | None) -> Step | None:
    """The step to send now, or None while the saga waits (for the provider, an operator) or is over."""
    if saga is None or saga.parked is not None or saga.phase is Phase.DONE:
        return None
    return next((step for step in saga.plan if step not in saga.done), None)


def confirmed(saga: Saga) -> bool:
    """Is the order confirmed as far as the saga knows (its `confirm` accepted)?"""
    return saga.done.get(CONFIRM) == OK
