"""Steps and results are typed in the saga and keep their string form in its stored events."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import msgspec
import pytest
from eventstore import EventRegistry
from saga_service.events import SagaParked, SagaStarted, StepCompleted, build_saga_registry
from saga_service.evolve import evolve
from saga_service.steps import (
    ASK_PROVIDER,
    CONFIRM,
    OK,
    RESERVED,
    SHORTAGE,
    Commit,
    Refused,
    Release,
    Reserve,
    decode_plan,
    decode_result,
    decode_step,
    encode_plan,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "step"),
    [
        ("reserve:mug", Reserve("mug")),
        ("commit:mug", Commit("mug")),
        ("release:mug", Release("mug")),
        ("reserve:sku:with:colons", Reserve("sku:with:colons")),
        ("ask-provider", ASK_PROVIDER),
        ("confirm", CONFIRM),
    ],
)
def test_a_step_decodes_from_its_stored_name_and_encodes_back_identically(text: str, step: object) -> None:
    decoded = decode_step(text)
    assert decoded == step
    assert decoded.encode() == text


@pytest.mark.parametrize(
    ("text", "result"),
    [
        ("ok", OK),
        ("reserved", RESERVED),
        ("shortage", SHORTAGE),
        ("refused:order-not-pending", Refused("order-not-pending")),
    ],
)
def test_a_result_decodes_from_its_stored_form_and_encodes_back_identically(
    text: str, result: object
) -> None:
    decoded = decode_result(text)
    assert decoded == result
    assert decoded.encode() == text


def test_steps_of_different_kinds_on_one_line_differ() -> None:
    assert len({Reserve("mug"), Commit("mug"), Release("mug")}) == 3
    assert OK != RESERVED


@pytest.mark.parametrize("text", ["", "reserve", "reserve:", "ship:mug", "Confirm"])
def test_an_unknown_step_name_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="unknown saga step"):
        decode_step(text)


@pytest.mark.parametrize("text", ["", "OK", "refusedx", "accepted"])
def test_an_unknown_result_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="unknown saga step result"):
        decode_result(text)


def _stored(registry: EventRegistry, event_type: str, data: bytes) -> object:
    """An event as the store hands it back: its stored type name and JSON payload, decoded."""
    return registry.decode(event_type, 1, data)


def test_events_stored_in_the_string_form_load_as_typed_steps_and_encode_back_identically() -> None:
    # Exactly what saga streams hold (before steps were typed and after).
    registry = build_saga_registry()
    order_id = uuid.uuid4()
    started_json = msgspec.json.encode(
        {
            "order_id": str(order_id),
            "customer_id": "c-1",
            "lines": [{"sku": "mug", "quantity": 2}],
            "currency": "EUR",
            "total": 900,
            "plan": ["reserve:mug"],
            "at": T0.isoformat(),
        }
    )
    completed_json = msgspec.json.encode(
        {"step": "reserve:mug", "result": "refused:product-inactive", "at": T0.isoformat()}
    )
    parked_json = msgspec.json.encode(
        {"step": "reserve:mug", "status": 404, "code": "x", "at": T0.isoformat()}
    )
    started = _stored(registry, "SagaStarted", started_json)
    completed = _stored(registry, "StepCompleted", completed_json)
    parked = _stored(registry, "SagaParked", parked_json)
    assert isinstance(started, SagaStarted)
    assert isinstance(completed, StepCompleted)
    assert isinstance(parked, SagaParked)

    state = evolve(None, started)
    assert state is not None
    assert state.plan == (Reserve("mug"),)
    state = evolve(state, completed)
    assert state is not None
    assert state.done == {Reserve("mug"): Refused("product-inactive")}
    state = evolve(state, parked)
    assert state is not None
    assert state.parked is not None
    assert state.parked.step == Reserve("mug")

    # Encoded back, the typed values give the very strings the events held.
    assert decode_plan(started.plan) == state.plan
    assert encode_plan(state.plan) == started.plan
    [(step, result)] = state.done.items()
    assert (step.encode(), result.encode()) == (completed.step, completed.result)
    rewritten = StepCompleted(step=step.encode(), result=result.encode(), at=T0)
    assert registry.encode(rewritten) == registry.encode(completed)
    payload = msgspec.json.decode(registry.encode(rewritten)[2])
    assert (payload["step"], payload["result"]) == ("reserve:mug", "refused:product-inactive")
