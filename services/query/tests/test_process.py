"""The service as a real process: serves over a socket, stops cleanly on SIGTERM, refuses bad settings."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from testkit.harness import TokenFactory, running_service

from services.query.tests.conftest import AUDIENCE, ISSUER, SECRET, bearer
from services.query.tests.seeding import SeededModels, order

pytestmark = pytest.mark.slow

STOPPED_BY_SIGTERM = {0, -signal.SIGTERM}


async def test_the_service_serves_reads_over_a_socket_and_stops_cleanly_on_sigterm(
    redis_url: str, search_url: str, prefix: str, models: SeededModels, tokens: TokenFactory, tmp_path: Path
) -> None:
    placed = order("alice")
    await models.put(placed)
    env = {
        "REDIS_URL": redis_url,
        "SEARCH_URL": search_url,
        "QUERY_KEY_PREFIX": prefix,
        "JWT_SECRET": SECRET,
        "JWT_ISSUER": ISSUER,
        "JWT_AUDIENCE": AUDIENCE,
    }
    async with running_service(
        "query_service", env, log=tmp_path / "query.log", port_variable="QUERY_PORT"
    ) as query:
        async with httpx.AsyncClient(base_url=query.url) as client:
            found = await client.get(f"/orders/{placed.order_id}", headers=bearer(tokens("alice")))
            openapi = await client.get("/schema/openapi.json")
        assert await query.stop(signal.SIGTERM) in STOPPED_BY_SIGTERM

    assert found.status_code == 200
    assert openapi.json()["info"]["title"] == "Fulfilment query API"
    logs = query.log.read_text()
    assert '"message":"query service stopped"' in logs
    assert '"level":"ERROR"' not in logs


@pytest.mark.parametrize(
    ("variable", "value"),
    [("QUERY_CONSISTENCY_TIMEOUT_SECONDS", "0"), ("SEARCH_URL", "not-a-url"), ("QUERY_PORT", "70000")],
)
def test_a_bad_setting_exits_2_naming_the_variable(redis_url: str, variable: str, value: str) -> None:
    env = {
        "REDIS_URL": redis_url,
        "SEARCH_URL": "http://127.0.0.1:9",
        "JWT_SECRET": SECRET,
        "JWT_ISSUER": ISSUER,
        "JWT_AUDIENCE": AUDIENCE,
        "PATH": "/usr/bin:/bin",
        variable: value,
    }
    finished = subprocess.run(
        [sys.executable, "-m", "query_service"], env=env, capture_output=True, text=True, timeout=120
    )

    assert finished.returncode == 2, finished.stderr
    assert variable in finished.stderr
