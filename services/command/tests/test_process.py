"""The service as a real process on a real socket: start, serve, stop gracefully on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest
from command_service.testing import ORDER_BODY, command_headers
from servicekit.testing import ServiceProcess, TokenFactory, running_service

pytestmark = pytest.mark.slow

SECRET = "test-secret-that-is-long-enough-for-hs256"
# uvicorn shuts down gracefully, then re-raises the signal so supervisors see why the process ended.
STOPPED_BY_SIGTERM = {0, -signal.SIGTERM}


@dataclass
class Service:
    process: ServiceProcess
    database_url: str

    @property
    def url(self) -> str:
        return self.process.url

    @property
    def log(self) -> Path:
        return self.process.log

    async def stop(self) -> int:
        return await self.process.stop(signal.SIGTERM, timeout=20)


@pytest.fixture
async def service(fresh_database_url: str, redis_url: str, tmp_path: Path) -> AsyncIterator[Service]:
    environment = {
        "DATABASE_URL": fresh_database_url,
        "REDIS_URL": redis_url,
        "JWT_ISSUER": "https://issuer.test",
        "JWT_AUDIENCE": "command-api",
        "JWT_SECRET": SECRET,
        "SHUTDOWN_TIMEOUT_SECONDS": "10",
    }
    async with running_service(
        "command_service", environment, log=tmp_path / "service.log", port_variable="COMMAND_PORT"
    ) as process:
        yield Service(process, fresh_database_url)


async def test_the_service_serves_commands_over_a_socket_and_stops_cleanly_on_sigterm(
    service: Service, tokens: TokenFactory
) -> None:
    async with httpx.AsyncClient(base_url=service.url) as client:
        placed = await client.post("/orders", json=ORDER_BODY, headers=command_headers(tokens("alice")))
        unauthenticated = await client.post("/orders", json=ORDER_BODY)
        openapi = await client.get("/schema/openapi.json")

    assert placed.status_code == 201, placed.text
    assert placed.json()["events"] == ["OrderPlaced"]
    assert unauthenticated.status_code == 401
    assert openapi.json()["info"]["title"] == "Fulfilment command API"

    assert await service.stop() in STOPPED_BY_SIGTERM
    logs = service.log.read_text()
    assert '"message":"command service stopped"' in logs
    assert '"path":"/orders","status":201' in logs


async def test_requests_in_flight_finish_when_sigterm_arrives(service: Service, tokens: TokenFactory) -> None:
    alice = tokens("alice")
    async with httpx.AsyncClient(base_url=service.url, timeout=30) as client:
        in_flight = [
            asyncio.create_task(client.post("/orders", json=ORDER_BODY, headers=command_headers(alice)))
            for _ in range(20)
        ]
        await asyncio.sleep(0.02)
        stopped = asyncio.create_task(service.stop())
        responses = await asyncio.gather(*in_flight, return_exceptions=True)

    answered = [r for r in responses if isinstance(r, httpx.Response)]
    assert answered, responses
    assert {r.status_code for r in answered} == {201}
    # A connection still in the kernel's backlog when the listener closes is reset; that is the client's
    # cue to retry. What must not happen is work done without an answer, or an answer that is an error.
    assert all(isinstance(r, httpx.TransportError) for r in responses if not isinstance(r, httpx.Response))
    assert await stopped in STOPPED_BY_SIGTERM
    connection = await asyncpg.connect(service.database_url)
    try:
        stored = await connection.fetchval(
            "SELECT count(*) FROM eventstore.events WHERE stream_id LIKE 'order-%'"
        )
    finally:
        await connection.close()
    assert stored == len(answered)


def test_the_service_refuses_to_start_with_bad_settings() -> None:
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith(("JWT_", "DATABASE_URL"))
    }

    result = subprocess.run(
        [sys.executable, "-m", "command_service"],
        env=environment,
        capture_output=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 2
    assert b"DATABASE_URL" in result.stderr


def test_mint_token_prints_a_token_the_service_accepts() -> None:
    import jwt

    result = subprocess.run(
        [sys.executable, "-m", "servicekit.tokens", "--subject", "alice", "--role", "customer"],
        env={**os.environ, "JWT_SECRET": SECRET, "JWT_ISSUER": "https://issuer.test", "JWT_AUDIENCE": "api"},
        capture_output=True,
        timeout=60,
        check=True,
    )

    claims = jwt.decode(result.stdout.strip(), SECRET, algorithms=["HS256"], audience="api")
    assert (claims["sub"], claims["roles"], claims["iss"]) == ("alice", ["customer"], "https://issuer.test")
