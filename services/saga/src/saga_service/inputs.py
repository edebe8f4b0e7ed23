"""What a saga is asked to decide on: an order placed or cancelled, a step's answer, the provider's
answer, a deadline, an operator's retry or abort."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import msgspec

from saga_service.events import SagaLine
from saga_service.steps import Result, Step

__all__ = [
    "Abort",
    "Begin",
    "Cancel",
    "FireDeadline",
    "Park",
    "ReceiveReply",
    "RecordStep",
    "Resume",
    "SagaInput",
]


class Begin(msgspec.Struct, frozen=True, kw_only=True):
    order_id: UUID
    customer_id: str
    lines: tuple[SagaLine, ...]
    currency: str
    total: int
    at: datetime


class RecordStep(msgspec.Struct, frozen=True, kw_only=True):
    step: Step
    result: Result
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
    step: Step
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
