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
    SagaParked,
    StepCompleted,
    build_saga_registry,
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
from saga_service.steps import decode_result, decode_step

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
    """A step's answer, both as their events name them."""
    return RecordStep(step=decode_step(name), result=decode_result(result), at=T0)


def next_name(state: Saga | None) -> str | None:
    """The saga's next step as its events name it."""
    found = next_step(state)
    return None if found is None else found.encode()


def plan_of(state: Saga) -> tuple[str, ...]:
    return tuple(step.encode() for step in state.plan)


def done_of(state: Saga) -> dict[str, str]:
    """The steps done and their results, as their events name them."""
    return {step.encode(): result.encode() for step, result in state.done.items()}


def paying() -> Saga:
    state, _ = run(None, begin(), step("reserve:mug", "reserved"), step("reserve:pot", "reserved"))
    assert state is not None
    return state


def drive(state: Saga | None, results: dict[str, str] | None = None) -> Saga | None:
    """Answer every step the saga asks for with `ok` (or the given result) until it waits."""
    while (name := next_name(state)) is not None:
        state, _ = run(state, step(name, (results or {}).get(name, "ok")))
    return state


def test_a_placed_order_reserves_each_line_in_order() -> None:
    state, _events = run(None, begin("mug", "pot"))
    assert state is not None
    assert state.phase is Phase.RESERVING
    assert next_name(state) == "reserve:mug"
    state, _ = run(state, step("reserve:mug", "reserved"))
    assert next_name(state) == "reserve:pot"


def test_all_lines_reserved_requests_payment_with_a_deadline() -> None:
    state = paying()
    assert state.phase is Phase.PAYING
    assert state.payment_due_at == T0 + TIMEOUT
    assert next_name(state) == "request-payment"
    state, _ = run(state, step("request-payment"), step("ask-provider"))
    assert next_name(state) is None  # waiting for the provider


def test_authorisation_confirms_the_order_then_commits_its_stock() -> None:
    state, _ = run(paying(), step("request-payment"), step("ask-provider"))
    state, _ = run(state, ReceiveReply(authorized=True, provider_reference="ref-1", at=T0))
    assert state is not None
    assert plan_of(state) == ("record-authorization", "confirm", "commit:mug", "commit:pot")
    state, _ = run(state, step("record-authorization"), step("confirm"), step("commit:mug"))
    assert state is not None
    # Confirmed, but not over until every line is committed.
    assert (state.phase, state.outcome, next_name(state)) == (Phase.CONFIRMING, None, "commit:pot")
    state, events = run(state, step("commit:pot"))
    assert [type(event) for event in events] == [StepCompleted, SagaCompleted]
    assert state is not None
    assert (state.phase, state.outcome) == (Phase.DONE, Outcome.CONFIRMED)


def test_a_shortage_releases_what_was_reserved_and_rejects() -> None:
    state, _events = run(
        None, begin("mug", "pot", "pan"), step("reserve:mug", "reserved"), step("reserve:pot", "shortage")
    )
    assert state is not None
    assert state.phase is Phase.COMPENSATING
    assert plan_of(state) == ("reject", "release:mug")
    assert state.reason == "insufficient stock of pot"
    state = drive(state)
    assert state is not None
    assert state.outcome is Outcome.REJECTED


def test_a_decline_rejects_the_order_is_recorded_and_releases_in_reverse() -> None:
    state, _ = run(paying(), step("request-payment"), step("ask-provider"))
    state, _ = run(state, ReceiveReply(authorized=False, reason="insufficient funds", at=T0))
    assert state is not None
    assert plan_of(state) == ("reject", "record-decline", "release:pot", "release:mug")


def test_the_deadline_voids_the_payment_releases_and_rejects() -> None:
    state, _ = run(paying(), step("request-payment"), step("ask-provider"))
    state, events = run(state, FireDeadline(deadline="payment", at=T0 + TIMEOUT))
    assert state is not None
    assert isinstance(events[0], DeadlineFired)
    assert plan_of(state) == ("reject", "void-payment", "release:pot", "release:mug")


def test_a_reply_after_the_deadline_fired_is_ignored_and_recorded() -> None:
    state, _ = run(
        paying(), step("request-payment"), step("ask-provider"), FireDeadline(deadline="payment", at=T0)
    )
    plan_before = plan_of(state) if state else None
    state, events = run(state, ReceiveReply(authorized=True, provider_reference="late", at=T0))
    assert state is not None
    assert [type(event) for event in events] == [ReplyIgnored]
    assert plan_of(state) == plan_before


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
    assert plan_of(state) == ("void-payment", "release:pot", "release:mug")
    state = drive(state)
    assert state is not None
    assert state.outcome is Outcome.CANCELLED


def test_cancellation_after_confirmation_refunds() -> None:
    state, _ = run(paying(), step("request-payment"), step("ask-provider"))
    state = drive(run(state, ReceiveReply(authorized=True, provider_reference="r", at=T0))[0])
    state, _ = run(state, Cancel(at=T0))
    assert state is not None
    assert plan_of(state) == ("refund-payment",)


def test_a_refused_compensation_counts_as_nothing_to_undo() -> None:
    state, _ = run(
        None, begin("mug", "pot"), step("reserve:mug", "reserved"), step("reserve:pot", "shortage")
    )
    state = drive(state, {"reject": "refused:order-not-pending"})
    assert state is not None
    assert state.phase is Phase.DONE


def test_a_first_reservation_refused_as_not_pending_ends_the_saga_cancelled_with_nothing_to_undo() -> None:
    # Nothing reserved, nothing asked of the provider: the compensation has no step, so the saga
    # must end as it starts (it waited for a step that did not exist, and hung).
    state, events = run(None, begin("mug"), step("reserve:mug", "refused:order-not-pending"))
    assert state is not None
    assert [type(event) for event in events[-2:]] == [CompensationStarted, SagaCompleted]
    assert (state.phase, state.outcome) == (Phase.DONE, Outcome.CANCELLED)


def test_a_reservation_refused_as_not_pending_is_the_customers_cancellation() -> None:
    # The customer cancelled while the saga was reserving, and the refusal reached the saga
    # before the cancellation event: compensated as a cancellation, the order is not rejected.
    state, events = run(
        None,
        begin("mug", "pot"),
        step("reserve:mug", "reserved"),
        step("reserve:pot", "refused:order-not-pending"),
    )
    assert state is not None
    assert isinstance(events[-1], CompensationStarted)
    assert events[-1].cancelled
    assert (plan_of(state), state.reason) == (
        ("release:mug",),
        "the customer cancelled the order (reserve:pot refused: order-not-pending)",
    )
    state = drive(state)
    assert state is not None
    assert (state.phase, state.outcome) == (Phase.DONE, Outcome.CANCELLED)
    # The cancellation event arriving afterwards decides nothing.
    _, late = run(state, Cancel(reason="changed my mind", at=T0))
    assert late == []


def test_a_payment_request_refused_as_not_pending_ends_cancelled() -> None:
    state, _ = run(paying(), step("request-payment", "refused:order-not-pending"))
    assert state is not None
    assert plan_of(state) == ("void-payment", "release:pot", "release:mug")
    state = drive(state, {"void-payment": "refused:payment-not-found"})
    assert state is not None
    assert state.outcome is Outcome.CANCELLED


def test_the_cancellation_first_then_the_refused_reservation_ends_cancelled() -> None:
    state, _ = run(None, begin("mug", "pot"), step("reserve:mug", "reserved"), Cancel(at=T0))
    _, late = run(state, step("reserve:pot", "refused:order-not-pending"))
    assert late == []  # stale: the cancellation's compensation releases it
    state = drive(state)
    assert state is not None
    assert state.outcome is Outcome.CANCELLED


def test_a_reject_refused_as_not_pending_ends_cancelled() -> None:
    # A shortage turned the saga, and the customer cancelled before its reject reached the order:
    # the order is cancelled, and the saga ends so, even before the cancellation event comes.
    state, _ = run(
        None, begin("mug", "pot"), step("reserve:mug", "reserved"), step("reserve:pot", "shortage")
    )
    state = drive(state, {"reject": "refused:order-not-pending"})
    assert state is not None
    assert (state.phase, state.outcome) == (Phase.DONE, Outcome.CANCELLED)


def test_a_refused_forward_step_compensates() -> None:
    state, _ = run(paying(), step("request-payment", "refused:payment-already-requested"))
    assert state is not None
    assert state.phase is Phase.COMPENSATING
    assert plan_of(state)[:2] == ("reject", "void-payment")


def test_a_parked_saga_waits_until_resumed() -> None:
    state, _ = run(None, begin("mug"))
    state, _ = run(state, Park(step=decode_step("reserve:mug"), status=404, code="product-not-found", at=T0))
    assert state is not None
    assert next_name(state) is None
    state, _ = run(state, Resume(actor="staff-1", at=T0))
    assert next_name(state) == "reserve:mug"


def test_parking_a_step_that_is_not_next_decides_nothing() -> None:
    state, _ = run(None, begin("mug"))
    _, events = run(state, Park(step=decode_step("confirm"), status=400, code="x", at=T0))
    assert events == []


def test_resuming_a_saga_that_is_not_parked_is_refused() -> None:
    state, _ = run(None, begin("mug"))
    with pytest.raises(SagaRefused):
        run(state, Resume(actor="staff-1", at=T0))


def test_aborting_a_parked_saga_compensates() -> None:
    state, _ = run(paying(), Park(step=decode_step("request-payment"), status=422, code="invalid", at=T0))
    state, events = run(state, Abort(actor="staff-1", reason="bad data", at=T0))
    assert state is not None
    assert any(isinstance(event, CompensationStarted) for event in events)
    assert state.parked is None
    assert plan_of(state) == ("reject", "void-payment", "release:pot", "release:mug")


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
    assert next_name(state) == "reserve:pot"  # sent, its answer not recorded yet
    state, _ = run(state, Cancel(at=T0))
    assert state is not None
    assert plan_of(state) == ("release:pot", "release:mug")
    # The late answer of the reservation is stale; the release that follows undoes it.
    _, events = run(state, step("reserve:pot", "reserved"))
    assert events == []


# --- confirming: the order is confirmed, then its stock committed -------------------------------


def confirming() -> Saga:
    """Authorised and recorded: `confirm` is the step on its way to the command service."""
    state, _ = run(paying(), step("request-payment"), step("ask-provider"))
    state, _ = run(state, ReceiveReply(authorized=True, provider_reference="r", at=T0))
    state, _ = run(state, step("record-authorization"))
    assert state is not None
    assert next_name(state) == "confirm"
    return state


def confirmed() -> Saga:
    """`confirm` recorded: the order is confirmed and `commit:mug` is the step on its way."""
    state, _ = run(confirming(), step("confirm"))
    assert state is not None
    assert (state.phase, next_name(state)) == (Phase.CONFIRMING, "commit:mug")
    return state


def aborted_while_confirming() -> Saga:
    state, _ = run(confirming(), Abort(actor="staff-1", reason="fraud check", at=T0))
    assert state is not None
    return state


def sent(state: Saga | None) -> list[str]:
    """Every step the saga had answered, in order."""
    assert state is not None
    return list(done_of(state))


@pytest.mark.parametrize(
    ("landed", "void", "refund"),
    [(False, "ok", "refused:refund-exceeds-captured"), (True, "refused:payment-not-voidable", "ok")],
)
def test_an_abort_while_the_authorisation_is_recorded_voids_or_refunds_whichever_applies(
    landed: bool, void: str, refund: str
) -> None:
    # `record-authorization` on its way when the abort comes: it may land or not. The payment is
    # voided if it did not, refunded if it did; either way no money stays taken for a rejected order.
    state, _ = run(paying(), step("request-payment"), step("ask-provider"))
    state, _ = run(state, ReceiveReply(authorized=True, provider_reference="r", at=T0))
    assert next_name(state) == "record-authorization"
    state, _ = run(state, Abort(actor="staff-1", reason="fraud check", at=T0))
    assert state is not None
    assert plan_of(state) == ("reject", "void-payment", "refund-payment", "release:pot", "release:mug")
    state = drive(state, {"void-payment": void, "refund-payment": refund})
    assert state is not None
    assert (state.phase, state.outcome) == (Phase.DONE, Outcome.REJECTED)
    assert (done_of(state)["void-payment"] == "ok") is not landed
    assert (done_of(state)["refund-payment"] == "ok") is landed


def test_an_abort_before_the_confirm_is_recorded_releases_every_line_and_commits_nothing() -> None:
    state = aborted_while_confirming()
    assert state.phase is Phase.COMPENSATING
    # Nothing is committed before `confirm`: every reservation is given back. The reject comes
    # first: it meets a `confirm` in flight on the order's stream, where only one goes through.
    assert plan_of(state) == ("reject", "refund-payment", "release:pot", "release:mug")
    state = drive(state)
    assert state is not None
    assert (state.phase, state.outcome) == (Phase.DONE, Outcome.REJECTED)
    assert not [name for name in sent(state) if name.startswith("commit:")]
    assert sent(state)[-4:] == ["reject", "refund-payment", "release:pot", "release:mug"]


def test_a_refused_confirm_compensates_with_every_line_still_reserved() -> None:
    # The customer cancelled before the saga heard of it: the `confirm` is refused, and no line
    # was committed before it.
    state, events = run(confirming(), step("confirm", "refused:order-not-pending"))
    assert isinstance(events[-1], CompensationStarted)
    assert state is not None
    assert plan_of(state) == ("refund-payment", "release:pot", "release:mug")
    state = drive(state)
    assert state is not None
    assert state.outcome is Outcome.CANCELLED


def test_an_abort_after_the_confirm_is_recorded_is_refused_and_the_commits_go_on() -> None:
    state = confirmed()
    with pytest.raises(SagaRefused, match="the order is confirmed"):
        run(state, Abort(actor="staff-1", reason="fraud check", at=T0))
    # Refused as well half-way through the commits, and once parked at one.
    state, _ = run(state, step("commit:mug"))
    with pytest.raises(SagaRefused, match="the order is confirmed"):
        run(state, Abort(actor="staff-1", reason="fraud check", at=T0))
    parked, _ = run(state, Park(step=decode_step("commit:pot"), status=403, code="forbidden", at=T0))
    with pytest.raises(SagaRefused, match="the order is confirmed"):
        run(parked, Abort(actor="staff-1", reason="fraud check", at=T0))
    state = drive(state)
    assert state is not None
    assert (state.phase, state.outcome) == (Phase.DONE, Outcome.CONFIRMED)


def test_an_abort_after_the_confirm_was_accepted_goes_on_with_the_commits_and_says_it_came_too_late() -> None:
    state, events = run(aborted_while_confirming(), step("reject", "refused:order-confirmed"))
    assert [type(event) for event in events] == [StepCompleted, ConfirmationPrevailed]
    prevailed = events[1]
    assert isinstance(prevailed, ConfirmationPrevailed)
    assert (prevailed.compensation, prevailed.step, prevailed.code) == (
        "aborted by staff-1: fraud check",
        "reject",
        "order-confirmed",
    )
    assert state is not None
    assert state.reason == (
        "aborted by staff-1: fraud check: too late, the order was confirmed first "
        "(reject refused: order-confirmed)"
    )
    # Back to the confirmation, `confirm` done: the refund and the releases are never sent, the
    # commits are.
    assert (state.phase, state.outcome) == (Phase.CONFIRMING, None)
    assert plan_of(state) == ("record-authorization", "confirm", "commit:mug", "commit:pot")
    assert next_name(state) == "commit:mug"
    assert "reject" not in done_of(state)
    # The answer of the `confirm` that won arrives late and decides nothing.
    _, late = run(state, step("confirm"))
    assert late == []
    with pytest.raises(SagaRefused, match="the order is confirmed"):
        run(state, Abort(actor="staff-2", reason="again", at=T0))
    state = drive(state)
    assert state is not None
    assert (state.phase, state.outcome) == (Phase.DONE, Outcome.CONFIRMED)
    assert sent(state)[-2:] == ["commit:mug", "commit:pot"]
    assert not [name for name in sent(state) if name.startswith(("release:", "refund"))]


def test_an_abort_reaching_the_order_before_its_confirm_still_rejects_it() -> None:
    # The reject went through, so the `confirm` arriving after it is refused (the order is no
    # longer pending): the compensation stands, the payment is refunded and every line released.
    state = drive(aborted_while_confirming())
    assert state is not None
    assert (state.phase, state.outcome) == (Phase.DONE, Outcome.REJECTED)
    assert (done_of(state)["reject"], done_of(state)["refund-payment"]) == ("ok", "ok")
    _, late = run(state, step("confirm", "refused:order-not-pending"))
    assert late == []


def test_a_cancellation_after_an_abort_came_too_late_refunds_and_releases_what_is_not_committed() -> None:
    state, _ = run(aborted_while_confirming(), step("reject", "refused:order-confirmed"))
    state, _ = run(state, step("commit:mug"), Cancel(reason="changed my mind", at=T0))
    assert state is not None
    # `commit:pot` was on its way: released too (refused if that commit went through).
    assert plan_of(state) == ("refund-payment", "release:pot")
    assert next_name(state) == "refund-payment"
    state = drive(state)
    assert state is not None
    assert (state.outcome, done_of(state)["refund-payment"]) == (Outcome.CANCELLED, "ok")


def test_a_cancellation_noted_while_a_late_abort_compensates_is_compensated_once_the_confirmation_wins() -> (
    None
):
    # The customer cancelled the order after it was confirmed; the saga, compensating for the
    # abort, only notes it. Its reject was refused while the order stood confirmed: the abort
    # came too late, and the cancellation is then compensated like any of a confirmed order,
    # before a single line is committed.
    state, _ = run(aborted_while_confirming(), Cancel(reason="changed my mind", at=T0))
    state, events = run(state, step("reject", "refused:order-confirmed"))
    assert [type(event) for event in events] == [StepCompleted, ConfirmationPrevailed, CompensationStarted]
    assert state is not None
    assert (state.phase, plan_of(state), state.reason) == (
        Phase.COMPENSATING,
        ("refund-payment", "release:pot", "release:mug"),
        "the customer cancelled the order",
    )
    state = drive(state)
    assert state is not None
    assert (state.outcome, done_of(state)["refund-payment"]) == (Outcome.CANCELLED, "ok")
    assert not [name for name in sent(state) if name.startswith("commit:")]


def test_a_cancellation_before_the_confirm_is_recorded_refunds_and_releases_every_line() -> None:
    # The customer's cancellation is in the order's stream before the saga hears of it: a
    # `confirm` in flight is refused, or, confirmed first, the order is cancelled after it; either
    # way the refund finds the order cancelled and goes through, and nothing was committed.
    state, _ = run(confirming(), Cancel(reason="changed my mind", at=T0))
    assert state is not None
    assert plan_of(state) == ("refund-payment", "release:pot", "release:mug")
    state = drive(state)
    assert state is not None
    assert state.outcome is Outcome.CANCELLED


def test_a_cancellation_between_the_commits_refunds_and_releases_the_lines_not_committed() -> None:
    # A confirmed order may be cancelled by its customer (`fulfilment.orders`); the lines not
    # committed yet are given back (their commits are refused now, `order-not-active`), the
    # committed ones have shipped and stay so.
    state, _ = run(confirmed(), step("commit:mug"))
    assert next_name(state) == "commit:pot"  # sent, its answer not recorded yet
    state, _ = run(state, Cancel(reason="changed my mind", at=T0))
    assert state is not None
    assert (state.phase, plan_of(state)) == (Phase.COMPENSATING, ("refund-payment", "release:pot"))
    _, late = run(state, step("commit:pot", "refused:order-not-active"))
    assert late == []  # stale: the release that follows gives the line back
    state = drive(state)
    assert state is not None
    assert (state.outcome, done_of(state)["release:pot"]) == (Outcome.CANCELLED, "ok")


def test_a_commit_that_went_through_before_the_cancellation_stays_shipped() -> None:
    # The commit in flight was accepted just before the cancellation: its release is refused and
    # counts as nothing to undo.
    state, _ = run(confirmed(), step("commit:mug"), Cancel(at=T0))
    state = drive(state, {"release:pot": "refused:reservation-committed"})
    assert state is not None
    assert (state.phase, state.outcome) == (Phase.DONE, Outcome.CANCELLED)


def test_cancellation_after_every_line_is_committed_only_refunds() -> None:
    state = drive(confirmed())
    state, _ = run(state, Cancel(at=T0))
    assert state is not None
    assert plan_of(state) == ("refund-payment",)


def test_a_commit_refused_after_the_confirm_parks_until_the_cancellation_compensates() -> None:
    # The saga does not undo a confirmed order on its own: a refused commit waits for the
    # customer's cancellation it most likely comes from (or for an operator's retry).
    state, events = run(confirmed(), step("commit:mug", "refused:order-not-active"))
    assert [type(event) for event in events] == [SagaParked]
    assert state is not None
    assert state.parked is not None
    assert (state.parked.step.encode(), state.parked.status, state.parked.code) == (
        "commit:mug",
        409,
        "order-not-active",
    )
    assert (state.phase, next_name(state)) == (Phase.CONFIRMING, None)
    state, _ = run(state, Cancel(reason="changed my mind", at=T0))
    assert state is not None
    assert (state.phase, state.parked) == (Phase.COMPENSATING, None)
    assert plan_of(state) == ("refund-payment", "release:pot", "release:mug")
    state = drive(state)
    assert state is not None
    assert state.outcome is Outcome.CANCELLED


def test_a_refund_refused_after_the_confirmation_was_recorded_counts_as_done() -> None:
    # Only a compensation that overtook an unrecorded `confirm` is dropped; a refused refund of an
    # order the saga saw confirmed is the refused compensation it always was (no loop of refunds).
    state = drive(confirmed())
    state, _ = run(state, Cancel(at=T0))
    state, events = run(state, step("refund-payment", "refused:order-confirmed"))
    assert [type(event) for event in events] == [StepCompleted, SagaCompleted]
    assert state is not None
    assert state.outcome is Outcome.CANCELLED


# --- streams stored before the order was confirmed before its commits ---------------------------


def replay(stored: list[dict[str, object]]) -> Saga:
    """The saga of a stored stream, decoded as the store decodes it."""
    registry = build_saga_registry()
    state: Saga | None = None
    for payload in stored:
        name = str(payload["type"])
        event = registry.decode(name, registry.current_version(name), msgspec.json.encode(payload))
        state = evolve(state, event)  # type: ignore[arg-type]
    assert state is not None
    return state


def stored_until_committed(
    order_id: uuid.UUID, *, skus: tuple[str, ...], committed: int
) -> list[dict[str, object]]:
    """A stream of the earlier plan (commits, then `confirm`), its first `committed` lines committed."""
    lines = [{"sku": sku, "quantity": 2} for sku in skus]
    at = "2026-01-01T00:00:00Z"
    return [
        {
            "type": "SagaStarted",
            "order_id": str(order_id),
            "customer_id": "c-1",
            "lines": lines,
            "currency": "EUR",
            "total": 600 * len(skus),
            "plan": [f"reserve:{sku}" for sku in skus],
            "at": at,
        },
        *(
            {"type": "StepCompleted", "step": f"reserve:{sku}", "result": "reserved", "at": at}
            for sku in skus
        ),
        {"type": "PaymentAwaited", "plan": ["request-payment", "ask-provider"], "due_at": at},
        {"type": "StepCompleted", "step": "request-payment", "result": "ok", "at": at},
        {"type": "StepCompleted", "step": "ask-provider", "result": "ok", "at": at},
        {"type": "ProviderReplied", "authorized": True, "provider_reference": "r", "at": at},
        {
            "type": "ConfirmationStarted",
            "plan": ["record-authorization", *(f"commit:{sku}" for sku in skus), "confirm"],
        },
        {"type": "StepCompleted", "step": "record-authorization", "result": "ok", "at": at},
        *(
            {"type": "StepCompleted", "step": f"commit:{sku}", "result": "ok", "at": at}
            for sku in skus[:committed]
        ),
    ]


def test_a_stream_of_the_earlier_plan_replayed_mid_way_carries_on_with_its_own_plan() -> None:
    state = replay(stored_until_committed(uuid.uuid4(), skus=("mug", "pot"), committed=1))
    assert (state.phase, next_name(state)) == (Phase.CONFIRMING, "commit:pot")
    state, _ = run(state, step("commit:pot"))
    assert next_name(state) == "confirm"
    state, events = run(state, step("confirm"))
    assert [type(event) for event in events] == [StepCompleted, SagaCompleted]
    assert state is not None
    assert (state.phase, state.outcome) == (Phase.DONE, Outcome.CONFIRMED)
    assert sent(state)[-4:] == ["record-authorization", "commit:mug", "commit:pot", "confirm"]


def test_an_abort_of_a_stream_of_the_earlier_plan_compensates_as_before() -> None:
    # Its committed line has shipped (the command service cannot take it back); the others are
    # released, as they always were.
    state = replay(stored_until_committed(uuid.uuid4(), skus=("mug", "pot"), committed=1))
    state, _ = run(state, Abort(actor="staff-1", reason="fraud", at=T0))
    assert state is not None
    assert plan_of(state) == ("reject", "refund-payment", "release:pot")
    state = drive(state)
    assert state is not None
    assert state.outcome is Outcome.REJECTED


def test_a_late_abort_of_a_stream_of_the_earlier_plan_ends_confirmed_at_once() -> None:
    # Its `confirm` was the last step: everything was committed before it went out.
    state = replay(stored_until_committed(uuid.uuid4(), skus=("mug", "pot"), committed=2))
    assert next_name(state) == "confirm"
    state, _ = run(state, Abort(actor="staff-1", reason="fraud", at=T0))
    assert state is not None
    assert plan_of(state) == ("reject", "refund-payment")
    state, events = run(state, step("reject", "refused:order-confirmed"))
    assert [type(event) for event in events] == [StepCompleted, ConfirmationPrevailed, SagaCompleted]
    assert state is not None
    assert (state.phase, state.outcome, next_name(state)) == (Phase.DONE, Outcome.CONFIRMED, None)
    assert plan_of(state) == ("record-authorization", "commit:mug", "commit:pot", "confirm")


def test_a_refused_commit_of_the_earlier_plan_releases_its_line() -> None:
    # The customer cancelled while the stock was being committed: the refused commit's line still
    # holds its reservation and is released with the others not committed.
    state = replay(stored_until_committed(uuid.uuid4(), skus=("mug", "pot"), committed=1))
    state, events = run(state, step("commit:pot", "refused:order-not-active"))
    assert isinstance(events[-1], CompensationStarted)
    assert state is not None
    assert plan_of(state) == ("reject", "refund-payment", "release:pot")


def late_abort_stored() -> list[dict[str, object]]:
    """A stream of the earlier plan, every line committed, whose abort's refund met the confirmed order."""
    return [
        *stored_until_committed(uuid.uuid4(), skus=("mug",), committed=1),
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
    ]


def test_a_stream_stored_before_late_aborts_were_recognised_replays_as_it_ended() -> None:
    # Sagas whose abort came too late used to end rejected, their refund and reject refused. Their
    # streams replay unchanged: the new event type is only ever appended, never inferred.
    stored = late_abort_stored()
    stored += [
        {
            "type": "StepCompleted",
            "step": "reject",
            "result": "refused:order-not-pending",
            "at": "2026-01-01T00:00:06Z",
        },
        {"type": "SagaCompleted", "outcome": "rejected", "at": "2026-01-01T00:00:06Z"},
    ]
    state = replay(stored)
    assert (state.phase, state.outcome, state.reason) == (
        Phase.DONE,
        Outcome.REJECTED,
        "aborted by staff-1: fraud",
    )
    assert (done_of(state)["refund-payment"], done_of(state)["reject"]) == (
        "refused:order-confirmed",
        "refused:order-not-pending",
    )
    # A cancellation after it is only noted, as before.
    _, events = run(state, Cancel(at=T0))
    assert [type(event).__name__ for event in events] == ["CancellationReceived"]


def test_a_stream_where_a_late_abort_prevailed_under_the_earlier_plan_replays_as_it_ended() -> None:
    stored = late_abort_stored()
    stored += [
        {
            "type": "ConfirmationPrevailed",
            "compensation": "aborted by staff-1: fraud",
            "step": "refund-payment",
            "code": "order-confirmed",
            "at": "2026-01-01T00:00:06Z",
        },
        {"type": "SagaCompleted", "outcome": "confirmed", "at": "2026-01-01T00:00:06Z"},
    ]
    state = replay(stored)
    assert (state.phase, state.outcome, next_name(state)) == (Phase.DONE, Outcome.CONFIRMED, None)
    assert plan_of(state) == ("record-authorization", "commit:mug", "confirm")
    assert done_of(state)["confirm"] == "ok"
