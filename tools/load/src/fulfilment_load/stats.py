"""What a run counts and times: plain bookkeeping without I/O, read alike by the display and the tests."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["OUTCOMES", "STATUSES", "Stats", "Summary", "Timings", "percentile"]

OUTCOMES = ("confirmed", "rejected", "cancelled")
# What the query service may answer for an order, plus `unseen`: placed, but never shown by it.
STATUSES = ("pending", *OUTCOMES, "unseen")


def percentile(samples: Sequence[float], fraction: float) -> float | None:
    """The nearest-rank percentile (`fraction` in (0, 1]) of `samples`, or None when there are none.

    Nearest rank, not interpolation: the figure shown is a time some request really took.
    """
    if not samples:
        return None
    ordered = sorted(samples)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


@dataclass
class Timings:
    """Durations in seconds of one kind (command answers, visibility, saga completion)."""

    samples: list[float] = field(default_factory=list)

    def add(self, seconds: float) -> None:
        self.samples.append(seconds)

    @property
    def p50(self) -> float | None:
        return percentile(self.samples, 0.5)

    @property
    def p99(self) -> float | None:
        return percentile(self.samples, 0.99)


@dataclass
class Stats:
    """The live counts of a run, updated as answers come in."""

    placed: int = 0
    cancels: int = 0  # cancellations the command service accepted
    restocks: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)  # orders seen reaching a final status
    command_answers: Counter[int] = field(default_factory=Counter)
    query_answers: Counter[int] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)  # requests that got no answer, by error
    command: Timings = field(default_factory=Timings)
    visible: Timings = field(default_factory=Timings)
    completion: Timings = field(default_factory=Timings)


@dataclass(frozen=True)
class Summary:
    """How a run ended: its counts, and each placed order's status as the query service showed it last."""

    seconds: float
    stats: Stats
    statuses: Counter[str]
    error: str | None = None

    def as_json(self) -> dict[str, object]:
        """The summary as plain data (`--summary-json`): counts, answers and times in milliseconds."""

        def times(timings: Timings) -> dict[str, float | int | None]:
            return {"count": len(timings.samples), "p50_ms": _ms(timings.p50), "p99_ms": _ms(timings.p99)}

        return {
            "seconds": round(self.seconds, 3),
            "placed": self.stats.placed,
            "cancels_accepted": self.stats.cancels,
            "restocks": self.stats.restocks,
            "statuses": {status: self.statuses.get(status, 0) for status in STATUSES},
            "command_answers": {str(k): v for k, v in sorted(self.stats.command_answers.items())},
            "query_answers": {str(k): v for k, v in sorted(self.stats.query_answers.items())},
            "failures": dict(self.stats.failures),
            "command": times(self.stats.command),
            "visible": times(self.stats.visible),
            "completion": times(self.stats.completion),
            "error": self.error,
        }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)
