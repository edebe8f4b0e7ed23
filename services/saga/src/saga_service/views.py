"""What the saga's API shows: one saga as a view, and the answers of the webhook.

Steps and results are shown in the string form their events store them in.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

import msgspec
from eventstore import RecordedEvent

from saga_service.state import Saga, next_step
from saga_service.timers import TimerRow

__all__ = ["HistoryEntry", "ParkedView", "SagaNotFound", "SagaView", "StepView", "WebhookStatus", "view_of"]

# What became of a provider's answer: a new one recorded, a late one ignored, or one seen before.
type WebhookStatus = Literal["recorded", "ignored", "duplicate"]


class SagaNotFound(Exception):
    """No saga exists for the order (or no provider of that name)."""


class StepView(msgspec.Struct, frozen=True, kw_only=True):
    step: str
    result: str


class ParkedView(msgspec.Struct, frozen=True, kw_only=True):
    step: str
    status: int
    code: str
    detail: str | None = None


class HistoryEntry(msgspec.Struct, frozen=True, kw_only=True):
    version: int
    type: str
    recorded_at: datetime
    data: dict[str, Any]


class SagaView(msgspec.Struct, frozen=True, kw_only=True):
    """A saga: where it is, what it did, what happened to it, and its deadlines."""

    order_id: UUID
    phase: str
    outcome: str | None
    reason: str | None
    parked: ParkedView | None
    plan: list[str]
    next_step: str | None
    steps: list[StepView]
    history: list[HistoryEntry]
    deadlines: list[TimerRow]
    version: int


def view_of(saga: Saga, history: Sequence[RecordedEvent], deadlines: list[TimerRow]) -> SagaView:
    """The view of `saga`, folded from `history`, with its timers."""
    parked = saga.parked
    shown = None
    if parked is not None:
        step_name = parked.step.encode()
        shown = ParkedView(step=step_name, status=parked.status, code=parked.code, detail=parked.detail)
    step = next_step(saga)
    return SagaView(
        order_id=saga.order_id,
        phase=str(saga.phase),
        outcome=None if saga.outcome is None else str(saga.outcome),
        reason=saga.reason,
        parked=shown,
        plan=[step.encode() for step in saga.plan],
        next_step=None if step is None else step.encode(),
        steps=[StepView(step=step.encode(), result=result.encode()) for step, result in saga.done.items()],
        history=[
            HistoryEntry(
                version=recorded.version,
                type=recorded.event_type,
                recorded_at=recorded.recorded_at,
                data=msgspec.to_builtins(recorded.data),
            )
            for recorded in history
        ],
        deadlines=deadlines,
        version=history[-1].version,
    )
