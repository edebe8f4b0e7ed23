"""The docker-free stack: `up` is idempotent, `down` stops exactly what it started.

These tests run a second, small stack (Redis and PostgreSQL) in a temporary
folder on shifted ports, so the stack the other tests use keeps running.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STACK_VARIABLES = ("DATABASE_URL", "REDIS_URL", "KAFKA_BOOTSTRAP_SERVERS", "SEARCH_URL")


def run_stack(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "deploy.local", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def pids(folder: Path) -> dict[str, int]:
    return {path.stem: int(path.read_text().split()[0]) for path in (folder / "run").glob("*.pid")}


def alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()


@pytest.fixture
def side_stack(tmp_path: Path) -> Iterator[dict[str, str]]:
    env = {key: value for key, value in os.environ.items() if key not in STACK_VARIABLES}
    env.update(DEVSTACK_DIR=str(tmp_path / "devstack"), DEVSTACK_PORT_OFFSET="1000")
    yield env
    run_stack(env, "down")


@pytest.mark.slow
def test_up_twice_reuses_the_running_servers_and_down_stops_them(side_stack: dict[str, str]) -> None:
    folder = Path(side_stack["DEVSTACK_DIR"])
    first = run_stack(side_stack, "up", "--only", "postgres", "redis")
    assert first.returncode == 0, first.stderr
    started = pids(folder)
    assert set(started) == {"postgres", "redis"}
    assert all(alive(pid) for pid in started.values())
    assert "REDIS_URL=redis://127.0.0.1:57379/0" in first.stdout

    second = run_stack(side_stack, "up", "--only", "postgres", "redis")
    assert second.returncode == 0, second.stderr
    assert second.stdout.count("already running") == 2
    assert pids(folder) == started

    status = run_stack(side_stack, "status", "--only", "postgres", "redis")
    assert status.returncode == 0
    assert status.stdout.count("ready pid") == 2

    stopped = run_stack(side_stack, "down", "--only", "postgres", "redis")
    assert stopped.returncode == 0, stopped.stderr
    assert not any(alive(pid) for pid in started.values())
    assert not list((folder / "run").glob("*.pid"))
    assert run_stack(side_stack, "status", "--only", "redis").returncode == 1


@pytest.mark.slow
def test_a_configured_reachable_url_is_used_instead_of_starting_a_server(
    side_stack: dict[str, str], redis_url: str
) -> None:
    result = run_stack({**side_stack, "REDIS_URL": redis_url}, "up", "--only", "redis")
    assert result.returncode == 0, result.stderr
    assert f"using {redis_url} from $REDIS_URL" in result.stdout
    assert pids(Path(side_stack["DEVSTACK_DIR"])) == {}


def test_a_server_that_dies_while_starting_is_reported_with_its_log(side_stack: dict[str, str]) -> None:
    with socket.socket() as squatter:  # something else holds the port: redis exits at once
        squatter.bind(("127.0.0.1", 57379))
        squatter.listen()
        result = run_stack(side_stack, "up", "--only", "redis")
    assert result.returncode == 1
    assert "redis exited with" in result.stderr
    assert "Address already in use" in result.stderr
