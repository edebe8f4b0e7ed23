"""The saga's pure logic in one import: its inputs, state, plans, `decide` and `evolve`.

Each lives in its own module (`inputs`, `state`, `steps`, `plan`, `decide`,
`evolve`); this one gathers what the rest of the service uses.
"""

from saga_service.decide import ORDER_CONFIRMED, ORDER_NOT_PENDING, decide, saga_decider
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
from saga_service.state import PAYMENT_DEADLINE, Parked, Phase, Saga, SagaRefused, next_step

__all__ = [
    "ORDER_CONFIRMED",
    "ORDER_NOT_PENDING",
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
