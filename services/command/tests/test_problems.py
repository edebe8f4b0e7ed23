"""How store errors that only a client's input can cause map to problem details."""

from __future__ import annotations

from command_service.problems import PROBLEMS
from eventstore.errors import EventTooLarge, UnstorableEvent


def test_an_event_postgres_cannot_store_is_a_422_not_a_500() -> None:
    problem, _ = PROBLEMS.answer(UnstorableEvent("ProductRegistered", "its text contains a NUL character"))
    assert (problem.status, problem.code) == (422, "unstorable-event")
    assert "NUL" in (problem.detail or "")


def test_an_oversized_event_is_a_413() -> None:
    problem, _ = PROBLEMS.answer(EventTooLarge("OrderPlaced", 2_000_000, 1_048_576))
    assert problem.status == 413
