"""A decider's behaviour as given / when / then, with no store:

spec = DeciderSpec(decide, evolve, initial_state=None)
assert spec.given(REQUESTED).when(RequestPayment(...)) == []
assert spec.given(REQUESTED, AUTHORIZED).state.status is PaymentStatus.AUTHORIZED
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = ["DeciderSpec", "Given"]


@dataclass(frozen=True)
class Given[S, C, E]:
    """The state after the given events, and what a command decides on it."""

    spec: DeciderSpec[S, C, E]
    state: S

    def when(self, command: C) -> Sequence[E]:
        """The events `command` decides on this state (raising what `decide` raises)."""
        return self.spec.decide(self.state, command)

    def then(self, command: C, *expected: E) -> S:
        """Assert that `command` decides exactly `expected`; the state after them."""
        decided = list(self.when(command))
        assert decided == list(expected), f"decided {decided}, expected {list(expected)}"
        return self.spec.given_state(self.state, *decided).state


@dataclass(frozen=True)
class DeciderSpec[S, C, E]:
    """`decide` and `evolve` of one aggregate, folded from `initial_state`."""

    decide: Callable[[S, C], Sequence[E]]
    evolve: Callable[[S, E], S]
    initial_state: S

    def given(self, *events: E) -> Given[S, C, E]:
        """The aggregate as these events, in order, left it."""
        return self.given_state(self.initial_state, *events)

    def given_state(self, state: S, *events: E) -> Given[S, C, E]:
        for event in events:
            state = self.evolve(state, event)
        return Given(self, state)
