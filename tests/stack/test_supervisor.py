"""The local stack restarts a service that exits, says so in `status`, and `down` leaves nothing behind.

The sandbox (the payment provider's stand-in, which needs no server) runs in a
stack of its own in a temporary folder on shifted ports, so the shared stack
keeps running.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.local.supervisor import Backoff, Supervised, describe_exit, last_line, read_state

ROOT = Path(__file__).resolve().parents[2]
OFFSET = 5650  # above the ephemeral range, see test_local_stack
SANDBOX = f"http://127.0.0.1:{8006 + OFFSET}"


def run_stack(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "deploy.local", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip


def group_members(pgid: int) -> list[int]:
    """Live processes of one process group: the supervisor and the service it runs."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(stat.parent.name))
    return members


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_for(predicate, timeout: float = 60, what: str = "") -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[dict[str, str], Path]]:
    env = {key: value for key, value in os.environ.items() if not key.endswith(("_URL", "_SERVERS"))}
    folder = tmp_path / "devstack"
    env.update(DEVSTACK_DIR=str(folder), DEVSTACK_PORT_OFFSET=str(OFFSET))
    yield env, folder
    run_stack(env, "down")


def supervised(folder: Path, name: str) -> Supervised:
    state = read_state(folder / "run" / f"{name}.state")
    assert state is not None, f"no state file for {name}"
    return state


@pytest.mark.slow
def test_a_killed_service_is_restarted_and_status_says_how_often_and_why(
    stack: tuple[dict[str, str], Path],
) -> None:
    env, folder = stack
    started = run_stack(env, "up", "--only", "sandbox")
    assert started.returncode == 0, started.stdout + started.stderr
    supervisor_pid = int((folder / "run" / "sandbox.pid").read_text().split()[0])
    first = supervised(folder, "sandbox")
    assert first.pid is not None
    assert first.pid != supervisor_pid
    assert first.restarts == 0

    os.kill(first.pid, signal.SIGKILL)
    wait_for(lambda: supervised(folder, "sandbox").restarts == 1, 10, "the supervisor to see the exit")
    wait_for(
        lambda: run_stack(env, "status", "--only", "sandbox").returncode == 0,
        60,
        "the sandbox to serve again",
    )

    again = supervised(folder, "sandbox")
    assert again.pid is not None
    assert again.pid != first.pid
    assert alive(again.pid)
    assert again.last_exit is not None
    assert again.last_exit.description == "signal SIGKILL"
    assert again.last_exit.last_line, "the dead process's last log line is kept"
    status = run_stack(env, "status", "--only", "sandbox")
    assert f"ready pid {supervisor_pid} {SANDBOX} service pid {again.pid}, restarts 1" in status.stdout
    assert "last exit: signal SIGKILL at " in status.stdout
    assert f"last log line: {again.last_exit.last_line}" in status.stdout

    # `up` reuses the supervised service instead of starting a second one.
    reused = run_stack(env, "up", "--only", "sandbox")
    assert "sandbox       already running" in reused.stdout, reused.stdout + reused.stderr

    members = group_members(supervisor_pid)
    assert set(members) >= {supervisor_pid, again.pid}
    stopped = run_stack(env, "down", "--only", "sandbox")
    assert stopped.returncode == 0, stopped.stderr
    assert not any(alive(pid) for pid in members), "down left a process of the group running"
    time.sleep(2)  # longer than the first backoff: a supervisor still around would have restarted it
    assert group_members(supervisor_pid) == []
    assert not list((folder / "run").glob("sandbox.*"))
    assert run_stack(env, "status", "--only", "sandbox").returncode == 1


@pytest.mark.slow
def test_down_during_the_backoff_restarts_nothing_and_a_killed_supervisor_takes_its_service_along(
    stack: tuple[dict[str, str], Path],
) -> None:
    env, folder = stack
    assert run_stack(env, "up", "--only", "sandbox").returncode == 0
    supervisor_pid = int((folder / "run" / "sandbox.pid").read_text().split()[0])
    service = supervised(folder, "sandbox").pid
    assert service is not None
    os.kill(service, signal.SIGTERM)  # stopped from outside, not by down: restarted too (unless-stopped)
    wait_for(lambda: supervised(folder, "sandbox").restarts == 1, 10, "the exit")
    assert supervised(folder, "sandbox").last_exit.description == "signal SIGTERM"  # type: ignore[union-attr]
    stopped = run_stack(env, "down", "--only", "sandbox")  # within the 1 s backoff
    assert stopped.returncode == 0, stopped.stderr
    time.sleep(2)
    assert group_members(supervisor_pid) == [], "the supervisor restarted the service behind down"

    assert run_stack(env, "up", "--only", "sandbox").returncode == 0
    supervisor_pid = int((folder / "run" / "sandbox.pid").read_text().split()[0])
    service = supervised(folder, "sandbox").pid
    assert service is not None
    os.kill(supervisor_pid, signal.SIGKILL)
    wait_for(lambda: not alive(service), 30, "the service to stop with its supervisor")


def test_the_backoff_doubles_up_to_its_ceiling_and_starts_over_after_a_long_run() -> None:
    backoff = Backoff(initial=1, ceiling=30, healthy_after=60)
    assert [backoff.after_run(0.5) for _ in range(7)] == [1, 2, 4, 8, 16, 30, 30]
    assert backoff.after_run(61) == 1
    assert backoff.after_run(3) == 2


def test_an_exit_is_named_by_its_code_or_its_signal() -> None:
    assert describe_exit(3) == "exit code 3"
    assert describe_exit(-signal.SIGKILL) == "signal SIGKILL"
    assert describe_exit(-signal.SIGSEGV) == "signal SIGSEGV"


def test_the_last_log_line_is_the_service_s_not_the_supervisor_s(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text("starting\nconnection refused: postgres\n\n[supervisor] 2026 exited with exit code 1\n")
    assert last_line(log) == "connection refused: postgres"
    assert last_line(tmp_path / "missing.log") == ""


def test_a_service_that_crashes_while_starting_fails_up_with_its_reason(
    stack: tuple[dict[str, str], Path],
) -> None:
    env, _ = stack
    # The sandbox refuses a provider secret that is too short and exits at once.
    (Path(env["DEVSTACK_DIR"])).mkdir(parents=True)
    (Path(env["DEVSTACK_DIR"]) / "provider-secret").write_text("x")
    result = run_stack(env, "up", "--only", "sandbox")
    assert result.returncode == 1, result.stdout
    assert "sandbox exited with exit code" in result.stderr
    assert "supervisor restarts it with backoff" in result.stderr
