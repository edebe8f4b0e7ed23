"""The saga's decisions, without servers: each input against each phase."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from saga_service.events import (
    CompensationStarted,
    DeadlineFired,
    Outcome,
    ReplyIgnored,
    SagaCompleted,
    SagaEvent,
    SagaLine,
)
from saga_service.saga import (
    Abort,
    Begin,
    Cancel,
    FireDeadline,
    Park,
    Phase,
    ReceiveReply,
    RecordStep,
    Resume,
    Saga,
    SagaInput,
    SagaRefused,
    decide,
    evolve,
    next_step,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
TIMEOUT = timedelta(seconds=30)


def run(state: Saga | None, *inputs: SagaInput) -> tuple[Saga | None, list[SagaEvent]]:
    """Decide and evolve each input in turn; return the final state and every event."""
    events: list[SagaEvent] = []
    for command in inputs:
        decided = decide(state, command, payment_timeout=TIMEOUT)
        for event in decided:
            state = evolve(state, event)
        events += decided
    return state, events


def begin(*skus: str) -> Begin:
    lines = tuple(SagaLine(sku=sku, quantity=2) for sku in skus or ("mug", "pot"))
    return Begin(order_id=uuid.uuid4(), customer_id="c-1", lines=lines, currency="EUR", total=900, at=T0)


def step(name: str, result: str = "ok") -> RecordStep:
    return RecordStep(step=name, result=result, at=T0)


def paying() -> Saga:
    state, _ = run(None, begin(), step("reserve:mug", "reserved"), step("reserve:pot", "reserved"))
    assert state is not None
    return state


def drive(state: Saga | None, results: dict[str, str] | None = None) -> Saga | None:
    """Answer every step the saga asks for with `ok` (or the given result) until it waits."""
    while (name := next_step(state)) is not None:
        state, _ = run(state, step(name, (results or {}).get(name, "ok")))
    return state


def test_a_placed_order_reserves_each_line_in_order() -> None:
    state, _events = run(None, begin("mug", "pot"))
    assert state is not None
    assert state.phase is Phase.RESERVING
    assert next_step(state) == "reserve:mug"
    state, _ = run(state, step("reserve:mug", "reserved"))
    assert next_step(state) == "reserve:pot"


def test_all_lines_reserved_requests_payment_with_a_deadline() -> None:
    state = paying()
    assert state.phase is Phase.PAYING
    assert state.payment_due_at == T0 + TIMEOUT
    assert next_step(state) == "request-payment"
    state, _ = run(state, step("request-payment"), step("ask-provider"))
    assert next_step(state) is None  # waiting for the provider


def test_authorisation_commits_stock_and_confirms_the_order() -> None:
    state, _ = run(paying(), step("request-payment"), step("ask-provider"))
    state, _ = run(state, ReceiveReply(authorized=True, provider_reference="ref-1", at=T0))
    assert state is not None
    assert state.plan == ("record-authorization", "commit:mug", "commit:pot", "confirm")
    state = drive(state)
    assert state is not None
    assert (state.phase, state.outcome) == (Phase.DONE, Outcome.CONFIRMED)


def test_a_shortage_releases_what_was_reserved_and_rejects() -> None:
    state, _events = run(
        None, begin("mug", "pot", "pan"), step("reserve:mug", "reserved"), step("reserve:pot", "shortage")
    )
    assert state is not None
    assert state.phase is Phase.COMPENSATING
    assert state.plan == ("reject", "release:mug")
    assert state.reason == "insufficient stock of pot"
    state = drive(state)
    assert state is not None
    assert state.outcome is Outcome.REJECTED


def test_a_decline_is_recorded_then_compensated_in_reverse() -> None:
    state, _ = run(paying(), step("request-payment"), step("ask-provider"))
    state, _ = run(state, ReceiveReply(authorized=False, reason="insufficient funds", at=T0))
    assert state is not None
    assert state.plan == ("record-decline", "reject", "release:pot", "release:mug")


def test_the_deadline_voids_the_payment_releases_and_rejects() -> None:
    state, _ = run(paying(), step("request-payment"), step("ask-provider"))
    state, events = run(state, FireDeadline(deadline="payment", at=T0 + TIMEOUT))
    assert state is not None
    assert isinstance(events[0], DeadlineFired)
    assert state.plan == ("void-payment", "reject", "release:pot", "release:mug")


def test_a_reply_after_the_deadline_fired_is_ignored_and_recorded() -> None:
    state, _ = run(
        paying(), step("request-payment"), step("ask-provider"), FireDeadline(deadline="payment", at=T0)
    )
    plan_before = state.plan if state else None
    state, events = run(state, ReceiveReply(authorized=True, provider_reference="late", at=T0))
    assert state is not None
    assert [type(event) for event in events] == [ReplyIgnored]
    assert state.plan == plan_before


def test_a_deadline_after_the_reply_decides_nothing() -> None:
    state, _ = run(paying(), step("request-payment"), step("ask-provider"))
    state, _ = run(state, ReceiveReply(authorized=True, provider_reference="r", at=T0))
    _, events = run(state, FireDeadline(deadline="payment", at=T0))
    assert events == []


def test_duplicate_inputs_decide_nothing() -> None:
    start = begin()
    state, _ = run(None, start, step("reserve:mug", "reserved"))
    _, events = run(state, start, step("reserve:mug", "reserved"))
    assert events == []


def test_the_reply_may_come_before_the_provider_call_is_recorded() -> None:
    state, _ = run(paying(), step("request-payment"))
    state, _ = run(state, ReceiveReply(authorized=True, provider_reference="fast", at=T0))
    assert state is not None
    assert state.phase is Phase.CONFIRMING
    _, events = run(state, step("ask-provider"))
    assert events == []


def test_cancellation_while_paying_voids_and_releases_without_rejecting() -> None:
    state, _ = run(paying(), step("request-payment"), step("ask-provider"))
    state, _ = run(state, Cancel(reason="changed my mind", at=T0))
    assert state is not None
    assert state.plan == ("void-payment", "release:pot", "release:mug")
    state = drive(state)
    assert state is not None
    assert state.outcome is Outcome.CANCELLED


def test_cancellation_after_confirmation_refunds() -> None:
    state, _ = run(paying(), step("request-payment"), step("ask-provider"))
    state = drive(run(state, ReceiveReply(authorized=True, provider_reference="r", at=T0))[0])
    state, _ = run(state, Cancel(at=T0))
    assert state is not None
    assert state.plan == ("refund-payment",)


def test_a_refused_compensation_counts_as_nothing_to_undo() -> None:
    state, _ = run(
        None, begin("mug", "pot"), step("reserve:mug", "reserved"), step("reserve:pot", "shortage")
    )
    state = drive(state, {"reject": "refused:order-not-pending"})
    assert state is not None
    assert state.phase is Phase.DONE


def test_a_refused_forward_step_compensates() -> None:
    state, _ = run(paying(), step("request-payment", "refused:payment-already-requested"))
    assert state is not None
    assert state.phase is Phase.COMPENSATING
    assert state.plan[0] == "void-payment"


def test_a_parked_saga_waits_until_resumed() -> None:
    state, _ = run(None, begin("mug"))
    state, _ = run(state, Park(step="reserve:mug", status=404, code="product-not-found", at=T0))
    assert state is not None
    assert next_step(state) is None
    state, _ = run(state, Resume(actor="staff-1", at=T0))
    assert next_step(state) == "reserve:mug"


def test_parking_a_step_that_is_not_next_decides_nothing() -> None:
    state, _ = run(None, begin("mug"))
    _, events = run(state, Park(step="confirm", status=400, code="x", at=T0))
    assert events == []


def test_resuming_a_saga_that_is_not_parked_is_refused() -> None:
    state, _ = run(None, begin("mug"))
    with pytest.raises(SagaRefused):
        run(state, Resume(actor="staff-1", at=T0))


def test_aborting_a_parked_saga_compensates() -> None:
    state, _ = run(paying(), Park(step="request-payment", status=422, code="invalid", at=T0))
    state, events = run(state, Abort(actor="staff-1", reason="bad data", at=T0))
    assert state is not None
    assert any(isinstance(event, CompensationStarted) for event in events)
    assert state.parked is None
    assert state.plan == ("void-payment", "reject", "release:pot", "release:mug")


def test_aborting_a_finished_saga_is_refused() -> None:
    state = drive(run(None, begin("mug"), step("reserve:mug", "shortage"))[0])
    with pytest.raises(SagaRefused):
        run(state, Abort(actor="staff-1", reason="x", at=T0))


def test_aborting_a_stuck_compensation_gives_up() -> None:
    state, _ = run(None, begin("mug"), step("reserve:mug", "shortage"))
    state, events = run(state, Abort(actor="staff-1", reason="x", at=T0))
    assert isinstance(events[-1], SagaCompleted)
    assert state is not None
    assert state.outcome is Outcome.ABORTED


def test_inputs_for_an_unknown_saga_are_refused() -> None:
    with pytest.raises(SagaRefused):
        decide(None, ReceiveReply(authorized=True, at=T0), payment_timeout=TIMEOUT)


def test_a_cancellation_while_a_reservation_is_in_flight_releases_that_line_too() -> None:
    state, _ = run(None, begin("mug", "pot"), step("reserve:mug", "reserved"))
    assert next_step(state) == "reserve:pot"  # sent, its answer not recorded yet
    state, _ = run(state, Cancel(at=T0))
    assert state is not None
    assert state.plan == ("release:pot", "release:mug")
    # The late answer of the reservation is stale; the release that follows undoes it.
    _, events = run(state, step("reserve:pot", "reserved"))
    assert events == []
