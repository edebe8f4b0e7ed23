"""The kit-owned app: start-up that waits for dependencies, supervised loops, health that tells the truth."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from litestar import Litestar, get
from litestar.di import NamedDependency
from servicekit.runner import EXIT_TASK_ENDED
from servicekit.service import Service, Startup, where
from servicekit.settings import ServiceSettings
from testkit.harness import free_port, lifespan_of

ROOT = Path(__file__).resolve().parents[3]


class Flaky(ConnectionError):
    """What a dependency fails with while it restarts."""


def service_with(start: Callable[[Startup], Awaitable[None]], fatal: list[str] | None = None) -> Litestar:
    service = Service(ServiceSettings(), "demo")
    if fatal is not None:
        service.on_fatal = lambda: fatal.append(service.failed or "")

    @get("/thing", operation_id="thing")
    async def thing(thing: NamedDependency[str]) -> dict[str, str]:
        return {"thing": thing}

    return service.app([thing], start=start, provides=["thing"])


async def client_of(app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    async with lifespan_of(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://demo") as client:
            yield client


async def eventually(client: httpx.AsyncClient, path: str, status: int) -> httpx.Response:
    async with asyncio.timeout(10):
        while (response := await client.get(path)).status_code != status:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    return response


def test_where_names_host_and_port_never_the_password() -> None:
    assert where("postgresql://suite:s3cret@db.internal:5432/suite") == "db.internal:5432"
    assert where("redis://:s3cret@cache:6379/0") == "cache:6379"
    assert where("broker-1:9092,broker-2:9092") == "broker-1:9092,broker-2:9092"


async def test_a_dependency_down_at_start_up_is_awaited_and_named_and_requests_meanwhile_get_503() -> None:
    up = asyncio.Event()

    async def attempt() -> str:
        if not up.is_set():
            raise ConnectionRefusedError("connection refused")
        return "the thing"

    async def start(run: Startup) -> None:
        run.provide("thing", await run.connect("postgres", "postgresql://u:pw@db:5432/x", attempt))

    async for client in client_of(service_with(start)):
        ready = await client.get("/health/ready")
        assert ready.status_code == 503
        assert ready.json()["checks"]["startup"] == (
            "waiting for postgres at db:5432: ConnectionRefusedError: connection refused"
        )
        assert "pw" not in ready.text
        assert (await client.get("/health/live")).status_code == 200
        early = await client.get("/thing")
        assert (early.status_code, early.headers["retry-after"], early.json()["code"]) == (
            503,
            "1",
            "starting",
        )

        up.set()
        await eventually(client, "/health/ready", 200)
        assert (await client.get("/thing")).json() == {"thing": "the thing"}


async def test_a_loop_failing_transiently_is_restarted_and_readiness_says_so_meanwhile() -> None:
    runs = 0
    carry_on = asyncio.Event()

    async def loop() -> None:
        nonlocal runs
        runs += 1
        if runs <= 2:
            raise Flaky("the database system is starting up")
        await carry_on.wait()
        await asyncio.Event().wait()

    async def start(run: Startup) -> None:
        run.provide("thing", "x")
        run.spawn("timers", loop, transient=(Flaky,))

    async for client in client_of(service_with(start)):
        waiting = await eventually(client, "/health/ready", 503)
        assert waiting.json()["checks"]["loops"].startswith("timers restarting after Flaky: the database")
        carry_on.set()
        await eventually(client, "/health/ready", 200)
        assert runs == 3
        assert (await client.get("/health/live")).status_code == 200


@pytest.mark.parametrize("ending", ["raises", "returns"])
async def test_a_loop_that_ends_for_good_makes_the_process_not_alive_and_asks_for_its_end(
    ending: str,
) -> None:
    fatal: list[str] = []

    async def loop() -> None:
        await asyncio.sleep(0.05)
        if ending == "raises":
            raise KeyError("a bug")

    async def start(run: Startup) -> None:
        run.provide("thing", "x")
        run.spawn("timers", loop)

    async for client in client_of(service_with(start, fatal)):
        live = await eventually(client, "/health/live", 503)
        reason = "timers failed: KeyError: 'a bug'" if ending == "raises" else "timers ended"
        assert live.json()["checks"] == {"loops": reason}
        assert (await client.get("/health/ready")).json()["checks"]["startup"] == reason
        assert fatal == [reason]


async def test_a_start_up_that_fails_for_good_is_fatal() -> None:
    fatal: list[str] = []

    async def start(run: Startup) -> None:
        raise ValueError("PROJECTOR_PROJECTIONS: unknown projection(s) ['nope']")

    async for client in client_of(service_with(start, fatal)):
        live = await eventually(client, "/health/live", 503)
        assert live.json()["checks"]["loops"].startswith("start-up failed: ValueError: PROJECTOR_PROJECTIONS")
        assert len(fatal) == 1


DYING_SERVICE = """
import asyncio, sys
from servicekit.runner import serve
from servicekit.service import Service
from servicekit.settings import ServiceSettings

def create_app(settings):
    service = Service(settings, "dying")

    async def loop():
        await asyncio.sleep(0.5)
        raise RuntimeError("lost my mind")

    async def start(run):
        run.spawn("worker", loop)

    return service.app([], start=start)

sys.exit(serve("dying-service", ServiceSettings, create_app, prefix="DYING_"))
"""


def test_a_served_process_whose_loop_ends_exits_non_zero_with_one_line_saying_why(tmp_path: Path) -> None:
    script = tmp_path / "dying.py"
    script.write_text(textwrap.dedent(DYING_SERVICE))
    env = {**os.environ, "DYING_PORT": str(free_port()), "DYING_ACCESS_LOG": "false"}
    done = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == EXIT_TASK_ENDED, done.stderr
    lines = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    critical = [line for line in lines if line["level"] == "CRITICAL"]
    assert [line["message"] for line in critical] == [
        "dying: worker failed: RuntimeError: lost my mind; "
        "exiting so that the supervisor restarts the process"
    ]


def test_help_lists_the_variables_with_their_defaults_and_starts_nothing() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "relay_service", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={key: value for key, value in os.environ.items() if key != "DATABASE_URL"},
    )
    assert done.returncode == 0, done.stderr
    assert "usage: relay-service" in done.stdout
    assert "DATABASE_URL" in done.stdout
    assert "(required)" in done.stdout
    assert "RELAY_BATCH_SIZE" in done.stdout
    assert "default 1000" in done.stdout
