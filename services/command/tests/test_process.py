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
from testkit.harness import ServiceProcess, TokenFactory, running_service

from services.command.tests.support import ORDER_BODY, command_headers

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
        "HEADER_TIMEOUT_SECONDS": "1",
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


async def _exchange(url: str, request: bytes, *, pause: float = 0.0, tail: bytes = b"") -> bytes:
    """Send raw bytes on a new connection (optionally pausing before `tail`); return all that comes back."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(request)
        await writer.drain()
        if pause:
            await asyncio.sleep(pause)
        if tail:
            writer.write(tail)
            await writer.drain()
        async with asyncio.timeout(15):
            return await reader.read()
    finally:
        writer.close()


async def test_oversized_request_headers_are_refused_with_431(service: Service) -> None:
    big = b"GET /health/live HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n"
    many = b"GET /health/live HTTP/1.1\r\nHost: t\r\n" + b"".join(b"X-%d: 1\r\n" % n for n in range(500))

    assert (await _exchange(service.url, big)).startswith(b"HTTP/1.1 431 ")
    assert (await _exchange(service.url, many + b"\r\n")).startswith(b"HTTP/1.1 431 ")


async def test_an_overlong_url_is_refused_with_414(service: Service) -> None:
    request = b"GET /" + b"a" * 40_000 + b" HTTP/1.1\r\nHost: t\r\n\r\n"

    assert (await _exchange(service.url, request)).startswith(b"HTTP/1.1 414 ")


async def test_a_refusal_reaches_the_client_with_most_of_a_huge_request_unread(service: Service) -> None:
    # The server refuses after the first 16 KiB; the rest keeps coming. Closing at once would reset
    # the connection, and the reset often destroys the answer before the client reads it.
    url = b"GET /" + b"a" * 2_000_000 + b" HTTP/1.1\r\nHost: t\r\n\r\n"
    header = b"GET /health/live HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 2_000_000 + b"\r\n\r\n"

    answers = [await _exchange(service.url, request) for request in (url, header) * 5]

    assert [answer.split(b" ", 2)[1] for answer in answers] == [b"414", b"431"] * 5


async def test_headers_sent_too_slowly_get_408_and_idle_connections_are_closed(service: Service) -> None:
    slow = await _exchange(service.url, b"GET /health/live HTTP/1.1\r\nHost: t\r\n", pause=2.5)
    idle = await _exchange(service.url, b"", pause=2.5)

    assert slow.startswith(b"HTTP/1.1 408 ")
    assert idle == b""


async def test_requests_within_the_limits_still_pass(service: Service) -> None:
    ok = b"GET /health/live HTTP/1.1\r\nHost: t\r\nX-Some: " + b"a" * 4000 + b"\r\nConnection: close\r\n\r\n"

    assert (await _exchange(service.url, ok)).startswith(b"HTTP/1.1 200 ")
