"""The given / when / then spec folds, decides, and fails loudly on a wrong expectation."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from testkit.deciders import DeciderSpec


def decide(total: int, add: int) -> Sequence[int]:
    if add <= 0:
        raise ValueError("add a positive amount")
    return [add] if total + add <= 10 else []


def evolve(total: int, added: int) -> int:
    return total + added


SPEC = DeciderSpec(decide, evolve, initial_state=0)


def test_given_events_fold_into_the_state_and_when_decides_on_it() -> None:
    assert SPEC.given(3, 4).state == 7
    assert SPEC.given(3, 4).when(2) == [2]
    assert SPEC.given(3, 4).when(5) == []


def test_then_returns_the_state_after_the_decided_events_and_fails_on_others() -> None:
    assert SPEC.given(1).then(2, 2) == 3
    with pytest.raises(AssertionError, match="decided \\[2\\], expected \\[3\\]"):
        SPEC.given(1).then(2, 3)
    with pytest.raises(ValueError, match="positive"):
        SPEC.given().when(0)
