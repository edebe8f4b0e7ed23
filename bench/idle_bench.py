"""What each service of the local stack costs with nothing to do: CPU per second, idle.

    .venv/bin/python bench/idle_bench.py [--seconds 20]

Reads the services' process ids from the local stack's run directory (`./dev up`
starts each under a supervisor; the service is the supervisor's child), samples
their CPU (user + system, children included) over `--seconds` while nothing is
sent to them, and prints milliseconds of CPU per second of each, beside the
supervisor's own as the floor a sleeping Python process costs. Send nothing to
the stack while it runs: any request counts.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import psutil  # type: ignore[import-untyped]

RUN = Path(__file__).resolve().parents[1] / ".devstack" / "run"
SERVICES = ("command", "query", "relay", "projector", "saga", "sandbox")


def supervisor(name: str) -> psutil.Process:
    pid_file = RUN / f"{name}.pid"
    try:
        return psutil.Process(int(pid_file.read_text().split()[0]))
    except (OSError, ValueError, psutil.NoSuchProcess) as error:
        sys.exit(f"{name} is not running ({error}); start the stack with ./dev up")


def cpu_seconds(process: psutil.Process) -> float:
    """User + system CPU of the process and every process under it."""
    total = 0.0
    for each in (process, *process.children(recursive=True)):
        try:
            times = each.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()

    supervisors = {name: supervisor(name) for name in SERVICES}
    services = {}
    for name, parent in supervisors.items():
        children = parent.children()
        if not children:
            sys.exit(f"{name}'s supervisor has no service process (restarting?); try again")
        services[name] = children[0]
    before = {name: cpu_seconds(process) for name, process in services.items()}
    floor_before = {name: supervisor.cpu_times() for name, supervisor in supervisors.items()}
    started = time.monotonic()
    while (elapsed := time.monotonic() - started) < args.seconds:
        print(f"\rsampling {elapsed:4.0f} / {args.seconds:.0f} s", end="", file=sys.stderr, flush=True)
        time.sleep(min(1.0, args.seconds - elapsed))
    print(file=sys.stderr)
    elapsed = time.monotonic() - started

    print(f"idle CPU over {elapsed:.1f} s, ms of CPU per second")
    print()
    print("| service | pid | service ms/s | its supervisor ms/s |")
    print("|---|--:|--:|--:|")
    for name, process in services.items():
        spent = cpu_seconds(process) - before[name]
        times = supervisors[name].cpu_times()
        floor = max(0.0, times.user + times.system - floor_before[name].user - floor_before[name].system)
        print(f"| {name} | {process.pid} | {1000 * spent / elapsed:.1f} | {1000 * floor / elapsed:.1f} |")


if __name__ == "__main__":
    main()
