"""Retries with exponential backoff and jitter, and a circuit breaker, per downstream.

Only transient failures are retried (the connection failed, the call timed out,
the downstream answered 5xx, 429 or a contention 409): `Transient` marks them.
Each downstream (the command service, the payment provider) has one breaker:
after `failures` consecutive transient failures it opens and calls fail at once
with `CircuitOpen` for `reset_seconds`; then one trial call goes through
(half-open), and its result closes or reopens the breaker. The breaker's state
and counts are Prometheus series on the service's registry.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import IntEnum

from prometheus_client import CollectorRegistry, Counter, Gauge

__all__ = [
    "BreakerMetrics",
    "CircuitBreaker",
    "CircuitOpen",
    "Refusal",
    "RetryPolicy",
    "Transient",
    "call_with_retries",
]


class Transient(Exception):
    """A failure a later attempt may not have; `retry_after` is the downstream's hint, if any."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Refusal(Exception):
    """A downstream refused a request for a reason no retry fixes (a 4xx other than 409 and 429)."""

    def __init__(self, status: int, code: str, detail: str | None) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail


class CircuitOpen(Transient):
    """The downstream's breaker is open: the call was not made."""


class BreakerState(IntEnum):
    CLOSED = 0
    OPEN = 1
    HALF_OPEN = 2


class BreakerMetrics:
    """The series every breaker of one service writes, labelled by downstream."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.state = Gauge(
            "saga_circuit_state",
            "Circuit breaker state: 0 closed, 1 open, 2 half-open",
            ["downstream"],
            registry=registry,
        )
        self.calls = Counter(
            "saga_downstream_calls",
            "Calls to a downstream by result",
            ["downstream", "result"],
            registry=registry,
        )
        self.opened = Counter(
            "saga_circuit_opened", "Times a breaker opened", ["downstream"], registry=registry
        )
        self.retries = Counter(
            "saga_downstream_retries",
            "Attempts repeated after a transient failure",
            ["downstream"],
            registry=registry,
        )


class CircuitBreaker:
    """Fails fast while a downstream keeps failing; lets one trial through after `reset_seconds`."""

    def __init__(self, name: str, metrics: BreakerMetrics, *, failures: int, reset_seconds: float) -> None:
        self.name = name
        self._metrics = metrics
        self._threshold = failures
        self._reset = reset_seconds
        self.state = BreakerState.CLOSED
        self.consecutive_failures = 0
        self._opened_at = 0.0
        self._trial_running = False
        metrics.state.labels(name).set(0)

    def _set(self, state: BreakerState) -> None:
        self.state = state
        self._metrics.state.labels(self.name).set(int(state))

    def before_call(self) -> None:
        """Raise `CircuitOpen` unless a call may go out now."""
        if self.state is BreakerState.OPEN:
            if time.monotonic() - self._opened_at < self._reset:
                self._metrics.calls.labels(self.name, "rejected").inc()
                raise CircuitOpen(f"{self.name}: circuit open", retry_after=self._reset)
            self._set(BreakerState.HALF_OPEN)
        if self.state is BreakerState.HALF_OPEN:
            if self._trial_running:
                self._metrics.calls.labels(self.name, "rejected").inc()
                raise CircuitOpen(
                    f"{self.name}: circuit half-open, trial call running", retry_after=self._reset
                )
            self._trial_running = True

    def retrying(self) -> None:
        self._metrics.retries.labels(self.name).inc()

    def succeeded(self) -> None:
        self._metrics.calls.labels(self.name, "success").inc()
        self._trial_running = False
        self.consecutive_failures = 0
        if self.state is not BreakerState.CLOSED:
            self._set(BreakerState.CLOSED)

    def failed(self) -> None:
        self._metrics.calls.labels(self.name, "failure").inc()
        self._trial_running = False
        self.consecutive_failures += 1
        if self.state is BreakerState.HALF_OPEN or self.consecutive_failures >= self._threshold:
            if self.state is not BreakerState.OPEN:
                self._metrics.opened.labels(self.name).inc()
            self._opened_at = time.monotonic()
            self._set(BreakerState.OPEN)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Up to `attempts` calls; before attempt n+1 a delay drawn uniformly from [0, base * 2**(n-1)]
    ("full jitter", so instances retrying together spread out), capped at `max_delay`."""

    attempts: int
    base_delay: float
    max_delay: float

    def delay(self, attempt: int, hint: float | None = None) -> float:
        ceiling = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        drawn = random.uniform(0, ceiling)
        return max(drawn, min(hint, self.max_delay)) if hint else drawn


async def call_with_retries[T](
    operation: Callable[[], Awaitable[T]], breaker: CircuitBreaker, policy: RetryPolicy
) -> T:
    """Run `operation` through `breaker`, retrying `Transient` failures as `policy` says.

    The last `Transient` propagates; anything else (a refusal no retry fixes) at once.
    """
    for attempt in range(1, policy.attempts + 1):
        try:
            breaker.before_call()
        except CircuitOpen:
            if attempt == policy.attempts:
                raise
            await asyncio.sleep(policy.delay(attempt))
            continue
        try:
            result = await operation()
        except Transient as error:
            breaker.failed()
            if attempt == policy.attempts:
                raise
            breaker.retrying()
            await asyncio.sleep(policy.delay(attempt, error.retry_after))
            continue
        except Exception:
            # A refusal is an answer: the downstream works.
            breaker.succeeded()
            raise
        breaker.succeeded()
        return result
    raise AssertionError("unreachable")  # pragma: no cover
