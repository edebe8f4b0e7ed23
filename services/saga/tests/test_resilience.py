"""Retries, the circuit breaker and webhook signatures, without servers."""

from __future__ import annotations

import time

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from saga_service.resilience import (
    BreakerMetrics,
    BreakerState,
    CircuitBreaker,
    CircuitOpen,
    Refusal,
    RetryPolicy,
    Transient,
    call_with_retries,
)
from saga_service.signatures import InvalidSignature, sign, verify

FAST = RetryPolicy(attempts=3, base_delay=0.001, max_delay=0.002)


def breaker(failures: int = 2, reset: float = 0.05) -> tuple[CircuitBreaker, CollectorRegistry]:
    registry = CollectorRegistry()
    return CircuitBreaker(
        "command", BreakerMetrics(registry), failures=failures, reset_seconds=reset
    ), registry


async def test_transient_failures_are_retried_until_one_succeeds() -> None:
    calls = []

    async def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise Transient("503")
        return "done"

    circuit, _ = breaker(failures=5)
    assert await call_with_retries(flaky, circuit, FAST) == "done"
    assert len(calls) == 3
    assert circuit.state is BreakerState.CLOSED


async def test_a_refusal_is_not_retried() -> None:
    calls = []

    async def refused() -> None:
        calls.append(1)
        raise Refusal(404, "product-not-found", "no such product")

    with pytest.raises(Refusal):
        await call_with_retries(refused, breaker()[0], FAST)
    assert len(calls) == 1


async def test_the_breaker_opens_after_consecutive_failures_and_shows_it_in_metrics() -> None:
    async def down() -> None:
        raise Transient("connection refused")

    circuit, registry = breaker(failures=2, reset=60)
    with pytest.raises(Transient):
        await call_with_retries(down, circuit, RetryPolicy(attempts=2, base_delay=0.001, max_delay=0.001))
    assert circuit.state is BreakerState.OPEN
    with pytest.raises(CircuitOpen):
        circuit.before_call()
    text = generate_latest(registry).decode()
    assert 'saga_circuit_state{downstream="command"} 1.0' in text
    assert 'saga_circuit_opened_total{downstream="command"} 1.0' in text
    assert 'saga_downstream_calls_total{downstream="command",result="failure"} 2.0' in text
    assert 'saga_downstream_calls_total{downstream="command",result="rejected"} 1.0' in text


def test_a_half_open_breaker_lets_one_trial_through_and_closes_on_success() -> None:
    circuit, registry = breaker(failures=1, reset=0.01)
    circuit.failed()
    assert circuit.state is BreakerState.OPEN
    time.sleep(0.02)
    circuit.before_call()
    assert circuit.state is BreakerState.HALF_OPEN
    with pytest.raises(CircuitOpen):
        circuit.before_call()  # a second caller while the trial runs
    circuit.succeeded()
    assert circuit.state is BreakerState.CLOSED
    assert 'saga_circuit_state{downstream="command"} 0.0' in generate_latest(registry).decode()


def test_a_failed_trial_reopens_the_breaker() -> None:
    circuit, _ = breaker(failures=1, reset=0.01)
    circuit.failed()
    time.sleep(0.02)
    circuit.before_call()
    circuit.failed()
    assert circuit.state is BreakerState.OPEN


def test_backoff_is_jittered_within_an_exponential_ceiling() -> None:
    policy = RetryPolicy(attempts=10, base_delay=0.1, max_delay=1.0)
    for attempt, ceiling in ((1, 0.1), (2, 0.2), (3, 0.4), (6, 1.0)):
        delays = [policy.delay(attempt) for _ in range(200)]
        assert all(0 <= delay <= ceiling for delay in delays)
        assert len(set(delays)) > 1
    assert policy.delay(1, hint=0.5) >= 0.5


def test_a_signature_verifies_only_the_body_it_signed() -> None:
    header = sign("secret-secret-secret", b'{"a":1}')
    verify("secret-secret-secret", header, b'{"a":1}')
    for secret, body, value in (
        ("another-secret-here", b'{"a":1}', header),
        ("secret-secret-secret", b'{"a":2}', header),
        ("secret-secret-secret", b'{"a":1}', None),
        ("secret-secret-secret", b'{"a":1}', "v1=abc"),
        ("secret-secret-secret", b'{"a":1}', sign("secret-secret-secret", b'{"a":1}', now=time.time() - 600)),
    ):
        with pytest.raises(InvalidSignature):
            verify(secret, value, body)


@pytest.mark.parametrize(
    "value",
    [
        "t={t},v1=\u00e9" + "0" * 63,  # not ASCII: hmac.compare_digest raises TypeError on such a str
        "t={t},v1=" + "\u00ff" * 64,
        "t={t},v1=" + "\u0661" * 64,
        "t=\u0661\u0662,v1=" + "0" * 64,  # digits int() reads, but not ASCII
        "t={t},v1=" + "A" * 64,  # upper-case hex is not what is sent
        "t={t},v1=" + "0" * 63,
        "t={t},v1=" + "0" * 65,
        "t=" + "9" * 5000 + ",v1=" + "0" * 64,
        "t=-{t},v1=" + "0" * 64,
    ],
)
def test_a_malformed_signature_header_is_an_invalid_signature_never_an_error(value: str) -> None:
    header = value.replace("{t}", str(int(time.time())))
    with pytest.raises(InvalidSignature, match="malformed"):
        verify("secret-secret-secret", header, b'{"a":1}')
