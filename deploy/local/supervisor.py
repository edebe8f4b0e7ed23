"""`python deploy/local/supervisor.py STATE LOG -- ARGV...`: keep one service process running.

What compose's `restart: unless-stopped` and a kubelet give a container: a
service process that exits, whatever the reason, is started again after a
backoff (1 s doubling to 30 s; back to 1 s once a run lasted 60 s). `up`
starts one supervisor per service as the leader of a new process group and
records the supervisor's PID; the service runs in the same group. `down`
signals the group: the supervisor sees SIGTERM and stops restarting while the
service shuts down, then exits itself, so nothing is restarted behind `down`'s
back. A service whose supervisor is killed is stopped with it (PR_SET_PDEATHSIG),
so no orphan outlives what `down` can see.

After every start and every exit the supervisor writes STATE (JSON): the
service's PID, how many times it was restarted and why the last run ended
(exit code or signal, when, and the last line the process logged), which
`./dev status` shows. Standard library only, like the rest of the stack CLI.
"""

from __future__ import annotations

import ctypes
import json
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType

__all__ = ["Backoff", "ExitReason", "Supervised", "describe_exit", "last_line", "main", "read_state"]

PREFIX = "[supervisor] "  # marks the supervisor's own lines in the service's log
_PR_SET_PDEATHSIG = 1


@dataclass
class Backoff:
    """Delay before the next start: doubles after each short run, resets after a long one."""

    initial: float = 1.0
    ceiling: float = 30.0
    healthy_after: float = 60.0  # a run this long counts as healthy: the next crash is a fresh one
    current: float = field(init=False)

    def __post_init__(self) -> None:
        self.current = self.initial

    def after_run(self, ran_for: float) -> float:
        """The delay before restarting a process that ran `ran_for` seconds."""
        if ran_for >= self.healthy_after:
            self.current = self.initial
        delay = self.current
        self.current = min(self.current * 2, self.ceiling)
        return delay


@dataclass(frozen=True)
class ExitReason:
    """How one run of the service ended."""

    description: str  # "exit code 1" or "signal SIGKILL"
    at: float  # Unix time
    ran_for: float
    last_line: str


@dataclass
class Supervised:
    """What `./dev status` reads: the STATE file."""

    pid: int | None = None
    started_at: float | None = None
    restarts: int = 0
    last_exit: ExitReason | None = None
    next_start_at: float | None = None  # set while waiting out the backoff


def describe_exit(returncode: int) -> str:
    """`exit code N`, or `signal NAME` for a process a signal ended (Popen reports -N)."""
    if returncode < 0:
        try:
            return f"signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"signal {-returncode}"
    return f"exit code {returncode}"


def last_line(log: Path, limit: int = 64 * 1024) -> str:
    """The last non-empty line of the log that the service (not the supervisor) wrote."""
    try:
        with log.open("rb") as file:
            file.seek(max(0, log.stat().st_size - limit))
            tail = file.read().decode(errors="replace")
    except OSError:
        return ""
    for line in reversed(tail.splitlines()):
        if line.strip() and not line.startswith(PREFIX):
            return line.strip()[:500]
    return ""


def read_state(path: Path) -> Supervised | None:
    """The STATE a supervisor wrote, or None when there is none (or it is being replaced)."""
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    last = raw.get("last_exit")
    return Supervised(
        pid=raw.get("pid"),
        started_at=raw.get("started_at"),
        restarts=raw.get("restarts", 0),
        last_exit=ExitReason(**last) if last else None,
        next_start_at=raw.get("next_start_at"),
    )


def _write_state(path: Path, state: Supervised) -> None:
    # Write then rename: a reader never sees half a file.
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(asdict(state)))
    temporary.replace(path)


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: if the supervisor is killed outright,
    # the kernel sends the service SIGTERM instead of leaving it running unsupervised.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _say(message: str) -> None:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
    print(f"{PREFIX}{stamp}Z {message}", flush=True)


def supervise(state_path: Path, log: Path, argv: list[str], backoff: Backoff) -> int:
    """Run argv again and again until SIGTERM or SIGINT; return 0 once stopped."""
    stopping = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        # Not passed on: `down` signals the whole group, so the service has it already, and
        # a second SIGTERM makes uvicorn skip its graceful drain.
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    state = Supervised()
    while not stopping.is_set():
        began = time.time()
        child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
        if stopping.is_set():  # `down` signalled the group just before this child joined it
            child.terminate()
        state.pid, state.started_at, state.next_start_at = child.pid, began, None
        _write_state(state_path, state)
        returncode = child.wait()
        if stopping.is_set():
            break
        ran_for = time.time() - began
        delay = backoff.after_run(ran_for)
        state.last_exit = ExitReason(
            describe_exit(returncode), time.time(), round(ran_for, 1), last_line(log)
        )
        state.pid, state.next_start_at = None, time.time() + delay
        state.restarts += 1
        _write_state(state_path, state)
        ending = f"exited with {state.last_exit.description} after {ran_for:.1f}s"
        _say(f"{ending}; restart {state.restarts} in {delay:.0f}s")
        deadline = time.monotonic() + delay
        while not stopping.is_set() and time.monotonic() < deadline:
            time.sleep(0.1)
    state.pid = None
    _write_state(state_path, state)
    return 0


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    if len(arguments) < 4 or arguments[2] != "--":
        print("usage: supervisor.py STATE LOG -- ARGV...", file=sys.stderr)
        return 2
    state_path, log, command = Path(arguments[0]), Path(arguments[1]), arguments[3:]
    return supervise(state_path, log, command, Backoff())


if __name__ == "__main__":
    sys.exit(main())
