"""The saga's decisions, without servers: each input against each phase."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from saga_service.events import (
    CompensationStarted,
    ConfirmationPrevailed,
    DeadlineFired,
    Outcome,
    ReplyIgnored,
    SagaCompleted,
    SagaEvent,
    SagaLine,
    StepCompleted,
    build_registry,
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


# --- an abort (or a cancellation) racing the `confirm` ------------------------------------------


def confirming() -> Saga:
    """Authorised, every line committed: `confirm` is the step on its way to the command service."""
    state, _ = run(paying(), step("request-payment"), step("ask-provider"))
    state, _ = run(state, ReceiveReply(authorized=True, provider_reference="r", at=T0))
    state, _ = run(state, step("record-authorization"), step("commit:mug"), step("commit:pot"))
    assert state is not None
    assert next_step(state) == "confirm"
    return state


def aborted_while_confirming() -> Saga:
    state, _ = run(confirming(), Abort(actor="staff-1", reason="fraud check", at=T0))
    assert state is not None
    return state


def test_an_abort_while_confirming_plans_a_refund_and_a_reject_and_no_release() -> None:
    state = aborted_while_confirming()
    assert state.phase is Phase.COMPENSATING
    # Every line was committed before `confirm` went out: none is planned to be released.
    assert state.plan == ("refund-payment", "reject")


def test_an_abort_after_the_confirm_was_accepted_ends_confirmed_and_says_it_came_too_late() -> None:
    state, events = run(aborted_while_confirming(), step("refund-payment", "refused:order-confirmed"))
    assert [type(event) for event in events] == [StepCompleted, ConfirmationPrevailed, SagaCompleted]
    prevailed = events[1]
    assert isinstance(prevailed, ConfirmationPrevailed)
    assert (prevailed.compensation, prevailed.step, prevailed.code) == (
        "aborted by staff-1: fraud check",
        "refund-payment",
        "order-confirmed",
    )
    assert state is not None
    assert (state.phase, state.outcome) == (Phase.DONE, Outcome.CONFIRMED)
    assert state.reason == (
        "aborted by staff-1: fraud check: too late, the order was confirmed first "
        "(refund-payment refused: order-confirmed)"
    )
    # The reject after the refund is never sent; the saga shows the confirmation it completed.
    assert next_step(state) is None
    assert state.plan == ("record-authorization", "commit:mug", "commit:pot", "confirm")
    assert state.done == {
        "reserve:mug": "reserved",
        "reserve:pot": "reserved",
        "request-payment": "ok",
        "ask-provider": "ok",
        "record-authorization": "ok",
        "commit:mug": "ok",
        "commit:pot": "ok",
        "confirm": "ok",
    }
    # The answer of the `confirm` that won arrives last and decides nothing.
    _, late = run(state, step("confirm"))
    assert late == []


def test_an_abort_reaching_the_order_before_its_confirm_still_rejects_it() -> None:
    # The refund went through, so the `confirm` arriving after it is refused (the payment is no
    # longer authorised, then the order no longer pending): the compensation stands.
    state = drive(aborted_while_confirming())
    assert state is not None
    assert (state.phase, state.outcome) == (Phase.DONE, Outcome.REJECTED)
    assert (state.done["refund-payment"], state.done["reject"]) == ("ok", "ok")
    _, late = run(state, step("confirm", "refused:order-not-pending"))
    assert late == []


def test_aborting_a_saga_that_ended_confirmed_because_its_abort_came_too_late_is_refused() -> None:
    state, _ = run(aborted_while_confirming(), step("refund-payment", "refused:order-confirmed"))
    with pytest.raises(SagaRefused):
        run(state, Abort(actor="staff-2", reason="again", at=T0))


def test_a_cancellation_after_an_abort_came_too_late_refunds_the_confirmed_order() -> None:
    state, _ = run(aborted_while_confirming(), step("refund-payment", "refused:order-confirmed"))
    state, _ = run(state, Cancel(reason="changed my mind", at=T0))
    assert state is not None
    assert state.plan == ("refund-payment",)
    # The refused refund of the dropped compensation is not taken for this one's answer.
    assert next_step(state) == "refund-payment"
    state = drive(state)
    assert state is not None
    assert (state.outcome, state.done["refund-payment"]) == (Outcome.CANCELLED, "ok")


def test_a_cancellation_noted_while_a_late_abort_compensates_is_refunded_once_the_confirmation_wins() -> None:
    # The customer cancelled the order after it was confirmed; the saga, compensating for the
    # abort, only notes it. Its refund was refused while the order stood confirmed: the abort
    # came too late, and the cancellation is then compensated like any of a confirmed order.
    state, _ = run(aborted_while_confirming(), Cancel(reason="changed my mind", at=T0))
    state, events = run(state, step("refund-payment", "refused:order-confirmed"))
    assert [type(event) for event in events] == [
        StepCompleted,
        ConfirmationPrevailed,
        SagaCompleted,
        CompensationStarted,
    ]
    assert state is not None
    assert (state.phase, state.plan, state.reason) == (
        Phase.COMPENSATING,
        ("refund-payment",),
        "the customer cancelled the order",
    )
    state = drive(state)
    assert state is not None
    assert (state.outcome, state.done["refund-payment"]) == (Outcome.CANCELLED, "ok")


def test_a_cancellation_while_confirming_refunds_without_rejecting() -> None:
    # The customer's cancellation is in the order's stream before the saga hears of it: a
    # `confirm` in flight is refused, or, confirmed first, the order is cancelled after it; either
    # way the refund finds the order cancelled and goes through.
    state, _ = run(confirming(), Cancel(reason="changed my mind", at=T0))
    assert state is not None
    assert state.plan == ("refund-payment",)
    state = drive(state)
    assert state is not None
    assert state.outcome is Outcome.CANCELLED


def test_a_refund_refused_after_the_confirmation_was_recorded_counts_as_done() -> None:
    # Only a compensation that overtook an unrecorded `confirm` is dropped; a refused refund of an
    # order the saga saw confirmed is the refused compensation it always was (no loop of refunds).
    state, _ = run(paying(), step("request-payment"), step("ask-provider"))
    state = drive(run(state, ReceiveReply(authorized=True, provider_reference="r", at=T0))[0])
    state, _ = run(state, Cancel(at=T0))
    state, events = run(state, step("refund-payment", "refused:order-confirmed"))
    assert [type(event) for event in events] == [StepCompleted, SagaCompleted]
    assert state is not None
    assert state.outcome is Outcome.CANCELLED


def test_a_stream_stored_before_late_aborts_were_recognised_replays_as_it_ended() -> None:
    # Sagas whose abort came too late used to end rejected, their refund and reject refused. Their
    # streams replay unchanged: the new event type is only ever appended, never inferred.
    order_id = uuid.uuid4()
    stored: list[dict[str, object]] = [
        {
            "type": "SagaStarted",
            "order_id": str(order_id),
            "customer_id": "c-1",
            "lines": [{"sku": "mug", "quantity": 2}],
            "currency": "EUR",
            "total": 600,
            "plan": ["reserve:mug"],
            "at": "2026-01-01T00:00:00Z",
        },
        {"type": "StepCompleted", "step": "reserve:mug", "result": "reserved", "at": "2026-01-01T00:00:01Z"},
        {
            "type": "PaymentAwaited",
            "plan": ["request-payment", "ask-provider"],
            "due_at": "2026-01-01T00:00:31Z",
        },
        {"type": "StepCompleted", "step": "request-payment", "result": "ok", "at": "2026-01-01T00:00:02Z"},
        {"type": "StepCompleted", "step": "ask-provider", "result": "ok", "at": "2026-01-01T00:00:02Z"},
        {
            "type": "ProviderReplied",
            "authorized": True,
            "provider_reference": "r",
            "at": "2026-01-01T00:00:03Z",
        },
        {"type": "ConfirmationStarted", "plan": ["record-authorization", "commit:mug", "confirm"]},
        {
            "type": "StepCompleted",
            "step": "record-authorization",
            "result": "ok",
            "at": "2026-01-01T00:00:04Z",
        },
        {"type": "StepCompleted", "step": "commit:mug", "result": "ok", "at": "2026-01-01T00:00:04Z"},
        {"type": "AbortRequested", "actor": "staff-1", "reason": "fraud", "at": "2026-01-01T00:00:05Z"},
        {
            "type": "CompensationStarted",
            "reason": "aborted by staff-1: fraud",
            "plan": ["refund-payment", "reject"],
        },
        {
            "type": "StepCompleted",
            "step": "refund-payment",
            "result": "refused:order-confirmed",
            "at": "2026-01-01T00:00:06Z",
        },
        {
            "type": "StepCompleted",
            "step": "reject",
            "result": "refused:order-not-pending",
            "at": "2026-01-01T00:00:06Z",
        },
        {"type": "SagaCompleted", "outcome": "rejected", "at": "2026-01-01T00:00:06Z"},
    ]
    registry = build_registry()
    state: Saga | None = None
    for payload in stored:
        name = str(payload["type"])
        event = registry.decode(name, registry.current_version(name), msgspec.json.encode(payload))
        state = evolve(state, event)  # type: ignore[arg-type]
    assert state is not None
    assert (state.phase, state.outcome, state.reason) == (
        Phase.DONE,
        Outcome.REJECTED,
        "aborted by staff-1: fraud",
    )
    assert (state.done["refund-payment"], state.done["reject"]) == (
        "refused:order-confirmed",
        "refused:order-not-pending",
    )
    # A cancellation after it is only noted, as before.
    _, events = run(state, Cancel(at=T0))
    assert [type(event).__name__ for event in events] == ["CancellationReceived"]
