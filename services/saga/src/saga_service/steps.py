"""A saga's steps and their results as typed values, and their string form in the saga's events.

Events store a step as `reserve:<sku>`, `commit:<sku>`, `release:<sku>` or a fixed
name (`confirm`, ...), and a result as `ok`, `reserved`, `shortage` or
`refused:<code>`. That form is kept so every stored stream still loads: it is
written by `encode_*` where events are made and read by `decode_*` where they are
folded, and nowhere else.
"""

from __future__ import annotations

from typing import ClassVar

import msgspec

__all__ = [
    "ASK_PROVIDER",
    "CONFIRM",
    "OK",
    "RECORD_AUTHORIZATION",
    "RECORD_DECLINE",
    "REFUND_PAYMENT",
    "REJECT",
    "REQUEST_PAYMENT",
    "RESERVED",
    "SHORTAGE",
    "VOID_PAYMENT",
    "AskProvider",
    "Commit",
    "Confirm",
    "Ok",
    "RecordAuthorization",
    "RecordDecline",
    "RefundPayment",
    "Refused",
    "Reject",
    "Release",
    "RequestPayment",
    "Reserve",
    "Reserved",
    "Result",
    "Shortage",
    "Step",
    "VoidPayment",
    "decode_plan",
    "decode_result",
    "decode_step",
    "encode_plan",
]


class _LineStep(msgspec.Struct, frozen=True):
    sku: str
    kind: ClassVar[str]

    def encode(self) -> str:
        return f"{self.kind}:{self.sku}"


class Reserve(_LineStep, frozen=True):
    """Reserve the line's units for the order."""

    kind = "reserve"


class Commit(_LineStep, frozen=True):
    """Commit the line's reservation: its units leave the warehouse."""

    kind = "commit"


class Release(_LineStep, frozen=True):
    """Give the line's reservation back."""

    kind = "release"


class _FixedStep(msgspec.Struct, frozen=True):
    kind: ClassVar[str]

    def encode(self) -> str:
        return self.kind


class RequestPayment(_FixedStep, frozen=True):
    kind = "request-payment"


class AskProvider(_FixedStep, frozen=True):
    """Ask the payment provider to authorise; its answer comes by webhook."""

    kind = "ask-provider"


class RecordAuthorization(_FixedStep, frozen=True):
    kind = "record-authorization"


class RecordDecline(_FixedStep, frozen=True):
    kind = "record-decline"


class VoidPayment(_FixedStep, frozen=True):
    kind = "void-payment"


class RefundPayment(_FixedStep, frozen=True):
    kind = "refund-payment"


class Confirm(_FixedStep, frozen=True):
    kind = "confirm"


class Reject(_FixedStep, frozen=True):
    kind = "reject"


type Step = (
    Reserve
    | Commit
    | Release
    | RequestPayment
    | AskProvider
    | RecordAuthorization
    | RecordDecline
    | VoidPayment
    | RefundPayment
    | Confirm
    | Reject
)

REQUEST_PAYMENT = RequestPayment()
ASK_PROVIDER = AskProvider()
RECORD_AUTHORIZATION = RecordAuthorization()
RECORD_DECLINE = RecordDecline()
VOID_PAYMENT = VoidPayment()
REFUND_PAYMENT = RefundPayment()
CONFIRM = Confirm()
REJECT = Reject()

_FIXED: dict[str, Step] = {
    step.kind: step
    for step in (
        REQUEST_PAYMENT,
        ASK_PROVIDER,
        RECORD_AUTHORIZATION,
        RECORD_DECLINE,
        VOID_PAYMENT,
        REFUND_PAYMENT,
        CONFIRM,
        REJECT,
    )
}
_LINE: dict[str, type[Reserve | Commit | Release]] = {kind.kind: kind for kind in (Reserve, Commit, Release)}


def decode_step(text: str) -> Step:
    """The step a saga event names; ValueError for a name no version of the saga wrote."""
    if (fixed := _FIXED.get(text)) is not None:
        return fixed
    kind, colon, sku = text.partition(":")
    if colon and sku and (line := _LINE.get(kind)) is not None:
        return line(sku)
    raise ValueError(f"unknown saga step {text!r}")


def encode_plan(plan: tuple[Step, ...]) -> tuple[str, ...]:
    """A plan as its events store it."""
    return tuple(step.encode() for step in plan)


def decode_plan(plan: tuple[str, ...]) -> tuple[Step, ...]:
    """A plan as its events stored it."""
    return tuple(decode_step(step) for step in plan)


class _FixedResult(msgspec.Struct, frozen=True):
    kind: ClassVar[str]

    def encode(self) -> str:
        return self.kind


class Ok(_FixedResult, frozen=True):
    """The command service (or the provider) accepted the step."""

    kind = "ok"


class Reserved(_FixedResult, frozen=True):
    """A reservation made (`StockReserved`)."""

    kind = "reserved"


class Shortage(_FixedResult, frozen=True):
    """A reservation the stock could not cover (`StockReservationFailed`)."""

    kind = "shortage"


class Refused(msgspec.Struct, frozen=True):
    """The command service's state refused the step (a 409 with this problem `code`)."""

    code: str

    def encode(self) -> str:
        return f"refused:{self.code}"


type Result = Ok | Reserved | Shortage | Refused

OK = Ok()
RESERVED = Reserved()
SHORTAGE = Shortage()

_RESULTS: dict[str, Result] = {result.kind: result for result in (OK, RESERVED, SHORTAGE)}


def decode_result(text: str) -> Result:
    """The result a `StepCompleted` event holds; ValueError for one no version of the saga wrote."""
    if (result := _RESULTS.get(text)) is not None:
        return result
    if text.startswith("refused:"):
        return Refused(text.removeprefix("refused:"))
    raise ValueError(f"unknown saga step result {text!r}")
