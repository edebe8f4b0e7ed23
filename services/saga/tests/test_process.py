"""The entry points: a bad variable stops start-up naming it; SIGTERM stops the service cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest


def run(module: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {key: value for key, value in os.environ.items() if not key.startswith(("SAGA_", "SANDBOX_"))}
    return subprocess.run(
        [sys.executable, "-m", module], env={**clean, **env}, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({}, "SAGA_PROVIDER_SECRET"),
        (
            {"SAGA_PROVIDER_SECRET": "long-enough-secret!", "SAGA_PAYMENT_TIMEOUT": "soon"},
            "SAGA_PAYMENT_TIMEOUT",
        ),
        ({"SAGA_PROVIDER_SECRET": "short"}, "SAGA_PROVIDER_SECRET"),
    ],
)
def test_the_saga_refuses_bad_settings_naming_the_variable(env: dict[str, str], named: str) -> None:
    base = {
        "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none",
        "REDIS_URL": "redis://127.0.0.1:1/0",
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
        "JWT_ISSUER": "i",
        "JWT_AUDIENCE": "a",
        "JWT_SECRET": "x" * 40,
    }
    result = run("saga_service", {**base, **env})
    assert result.returncode == 2, result.stderr
    assert named in result.stderr


def test_the_sandbox_refuses_a_rate_above_one() -> None:
    result = run(
        "saga_service.sandbox", {"SANDBOX_SECRET": "long-enough-secret!", "SANDBOX_DECLINE_RATE": "2"}
    )
    assert result.returncode == 2
    assert "SANDBOX_DECLINE_RATE" in result.stderr


@pytest.mark.slow
async def test_sigterm_stops_the_saga_cleanly(start_suite) -> None:
    async with start_suite() as suite:
        # uvicorn re-raises the signal once it has shut down gracefully.
        assert await suite.saga.stop(signal.SIGTERM) in {0, -signal.SIGTERM}
        assert "saga service stopped" in suite.saga.log_tail()
