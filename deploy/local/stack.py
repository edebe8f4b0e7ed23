"""`python -m deploy.local up|down|status|env`: the docker-free local stack.

`up` starts every component that is not running, in parallel, waits until each
is ready and writes the endpoints to `.devstack/env`. It is idempotent: a
component whose recorded process is alive is reused, and said to be not ready
yet when it does not answer (it is recovering, say from an outage of what it
depends on; `up` restarts what is dead, never what is recovering), and a URL
already configured in the environment that answers is used instead of starting
a server. `down` stops exactly the processes that `up` recorded.

The suite's services run under a supervisor each (`deploy.local.supervisor`),
which restarts a service that exits, with backoff, as compose's
`restart: unless-stopped` or a kubelet would; `status` shows how often and why.
The servers are not supervised: a killed server stays down until `up`.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

from deploy.local import (
    elasticsearch,
    exporters,
    kafka,
    opensearch,
    postgres,
    prometheus,
    redis,
    supervisor,
    zipkin,
)
from deploy.local.components import Component, Layout
from deploy.local.services import service_components

__all__ = ["components", "main"]

ROOT = Path(os.environ.get("DEVSTACK_DIR", Path(__file__).resolve().parents[2] / ".devstack"))


def components() -> list[Component]:
    """The servers of the local stack, in start order.

    DEVSTACK_PORT_OFFSET shifts every port, so a second stack (a test's, or a
    second checkout's) can run beside the first.
    """
    offset = int(os.environ.get("DEVSTACK_PORT_OFFSET", "0"))
    engine = default_search_engine()
    engines = [opensearch.component(port=59200 + offset), elasticsearch.component(port=59210 + offset)]
    return [
        postgres.component(port=55432 + offset),
        redis.component(port=56379 + offset),
        kafka.component(port=59092 + offset, controller_port=59093 + offset),
        *(replace(c, aliases=("SEARCH_URL",)) if c.name == engine else c for c in engines),
        prometheus.component(port=59090 + offset, offset=offset),
        exporters.postgres_exporter(read_env, offset),
        exporters.redis_exporter(read_env, offset),
        # Not infrastructure: `up --infra` (and so `./dev test`) leaves it out (see deploy.local.zipkin).
        zipkin.component(port=59411 + offset),
        *service_components(offset, read_env),
    ]


INFRASTRUCTURE = (
    "postgres",
    "redis",
    "kafka",
    "opensearch",
    "elasticsearch",
    "prometheus",
    "postgres-exporter",
    "redis-exporter",
)
SEARCH_ENGINES = ("opensearch", "elasticsearch")


def default_search_engine() -> str:
    """The engine SEARCH_URL points at: SEARCH_ENGINE, else OpenSearch.

    Both engines run; the services and the `search_url` fixture use this one,
    the search contract tests use both.
    """
    engine = os.environ.get("SEARCH_ENGINE") or "opensearch"
    if engine not in SEARCH_ENGINES:
        raise RuntimeError(f"SEARCH_ENGINE={engine!r}: expected one of {', '.join(SEARCH_ENGINES)}")
    return engine


@dataclass(frozen=True)
class Recorded:
    """A process that `up` started: its PID and kernel start time, so a reused PID is never killed."""

    pid: int
    started: str

    @staticmethod
    def start_time(pid: int) -> str | None:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return None
        # Field 22 (starttime) follows the parenthesised command name, which may contain spaces.
        return stat.rsplit(")", 1)[1].split()[19]

    def alive(self) -> bool:
        return self.start_time(self.pid) == self.started


def _pidfile(layout: Layout, name: str) -> Path:
    return layout.run / f"{name}.pid"


def _statefile(layout: Layout, name: str) -> Path:
    """What the supervisor of a service writes: the service's PID, restarts, the last exit."""
    return layout.run / f"{name}.state"


def _recorded(layout: Layout, name: str) -> Recorded | None:
    try:
        pid_text, started = _pidfile(layout, name).read_text().split()
    except (OSError, ValueError):
        return None
    return Recorded(int(pid_text), started)


def _external(component: Component) -> tuple[str, str] | None:
    """(variable, URL) configured in the environment that already answers: use it, start nothing.

    An alias counts too (SEARCH_URL for the default engine), but only a server
    that passes this component's probe: an Elasticsearch in SEARCH_URL does not
    stand in for OpenSearch.
    """
    for variable in (component.env_var, *component.aliases):
        configured = os.environ.get(variable)
        if configured and configured != component.url and component.is_ready(configured):
            return variable, configured
    return None


def _log_tail(layout: Layout, name: str, lines: int = 30) -> str:
    try:
        return "\n".join((layout.logs / f"{name}.log").read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _start(layout: Layout, component: Component) -> subprocess.Popen[bytes]:
    launch = component.launch(layout)
    layout.logs.mkdir(parents=True, exist_ok=True)
    layout.run.mkdir(parents=True, exist_ok=True)
    log_path = layout.logs / f"{component.name}.log"
    argv = launch.argv
    if component.supervised:
        state = _statefile(layout, component.name)
        state.unlink(missing_ok=True)  # a new supervisor counts its own restarts
        # The supervisor's file, not its module: it runs from whatever folder the service needs.
        argv = [sys.executable, supervisor.__file__, str(state), str(log_path), "--", *argv]
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **launch.env},
            cwd=launch.cwd,
            start_new_session=True,  # `down` signals the whole group; Ctrl-C in the shell does not
        )
    started = Recorded.start_time(process.pid)
    _pidfile(layout, component.name).write_text(f"{process.pid} {started}\n")
    return process


def _wait_ready(
    layout: Layout, component: Component, process: subprocess.Popen[bytes], report: Callable[[str], None]
) -> None:
    deadline = time.monotonic() + component.start_timeout
    next_note = time.monotonic() + 10
    while not component.is_ready(component.url):
        supervised = supervisor.read_state(_statefile(layout, component.name))
        if supervised is not None and supervised.last_exit is not None:
            raise RuntimeError(
                f"{component.name} exited with {supervised.last_exit.description} while starting "
                f"(its supervisor restarts it with backoff; `./dev down --only {component.name}` stops it); "
                f"log {layout.logs / (component.name + '.log')}:\n{_log_tail(layout, component.name)}"
            )
        if process.poll() is not None:
            raise RuntimeError(
                f"{component.name} exited with {process.returncode} while starting; "
                f"log {layout.logs / (component.name + '.log')}:\n{_log_tail(layout, component.name)}"
            )
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"{component.name} not ready after {component.start_timeout:.0f}s; "
                f"log {layout.logs / (component.name + '.log')}:\n{_log_tail(layout, component.name)}"
            )
        if time.monotonic() > next_note:
            report(f"  … waiting for {component.name}")
            next_note = time.monotonic() + 10
        time.sleep(0.25)


def up(
    layout: Layout, selected: Sequence[Component], report: Callable[[str], None] = print
) -> dict[str, str]:
    """Make every selected component serve, phase by phase; return the environment to export."""
    began = time.monotonic()
    exports: dict[str, str] = {}
    # Services start only once the servers they need serve and their URLs are written.
    for phase in sorted({component.phase for component in selected}):
        exports.update(_up_phase(layout, [c for c in selected if c.phase == phase], report))
        _write_env(layout, exports)
    report(f"stack up in {time.monotonic() - began:.1f}s; endpoints:")
    for key, value in exports.items():
        report(f"  {key}={value}")
    report(f"(load them with: set -a; . {layout.root / 'env'}; set +a)")
    return exports


def _up_phase(layout: Layout, selected: Sequence[Component], report: Callable[[str], None]) -> dict[str, str]:
    exports: dict[str, str] = {}
    to_start: list[Component] = []
    recovering: list[Component] = []
    for component in selected:
        external = _external(component)
        if external is not None:
            variable, url = external
            report(f"{component.name:<13} using {url} from ${variable}")
            exports.update(dict.fromkeys((component.env_var, *component.aliases), url))
            continue
        recorded = _recorded(layout, component.name)
        if recorded is not None and recorded.alive():
            # Alive is reused even when not ready: a relay waiting for Kafka, or a server
            # still recovering, gets well by itself, and a restart would only hide whether it does.
            if component.is_ready(component.url):
                report(f"{component.name:<13} already running (pid {recorded.pid})")
            else:
                recovering.append(component)
                report(
                    f"{component.name:<13} running (pid {recorded.pid}) but not ready yet; left to "
                    f"recover (`./dev status` shows when it is; `./dev down --only {component.name}` "
                    "then `up` restarts it)"
                )
        else:
            report(f"{component.name:<13} starting")
            to_start.append(component)
        exports.update(dict.fromkeys((component.env_var, *component.aliases), component.url))
        exports.update(component.extra_env)
    # Downloads and first-time set-up run side by side, and so do the boots:
    # a cold start costs the slowest component, not the sum of them.
    with ThreadPoolExecutor(max_workers=max(1, len(to_start))) as pool:
        list(pool.map(lambda component: component.prepare(layout), to_start))
    starting = [(component, _start(layout, component)) for component in to_start]
    for component, process in starting:
        _wait_ready(layout, component, process, report)
        report(f"{component.name:<13} ready (pid {process.pid})")
    for component in selected:
        if component.after_ready is not None and _external(component) is None and component not in recovering:
            component.after_ready(layout)
    return exports


def _write_env(layout: Layout, exports: dict[str, str]) -> None:
    layout.root.mkdir(parents=True, exist_ok=True)
    existing = read_env(layout)
    existing.update(exports)
    lines = [f"{key}={shlex.quote(value)}" for key, value in sorted(existing.items())]
    (layout.root / "env").write_text("\n".join(lines) + "\n")


def read_env(layout: Layout) -> dict[str, str]:
    """The endpoints the last `up` wrote."""
    try:
        text = (layout.root / "env").read_text()
    except OSError:
        return {}
    pairs = (line.split("=", 1) for line in text.splitlines() if "=" in line)
    return {key: shlex.split(value)[0] if value else "" for key, value in pairs}


def _stop(layout: Layout, name: str, report: Callable[[str], None], grace: float = 30.0) -> None:
    recorded = _recorded(layout, name)
    pidfile = _pidfile(layout, name)
    if recorded is None or not recorded.alive():
        pidfile.unlink(missing_ok=True)
        _statefile(layout, name).unlink(missing_ok=True)
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(recorded.pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait
        while recorded.alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        if not recorded.alive():
            break
    if recorded.alive():
        raise RuntimeError(f"{name} (pid {recorded.pid}) did not stop")
    pidfile.unlink(missing_ok=True)
    _statefile(layout, name).unlink(missing_ok=True)
    report(f"{name:<13} stopped (pid {recorded.pid})")


def down(layout: Layout, selected: Sequence[Component], report: Callable[[str], None] = print) -> None:
    """Stop exactly the processes `up` started, newest first."""
    for component in reversed(selected):
        _stop(layout, component.name, report)


def status(layout: Layout, selected: Sequence[Component], report: Callable[[str], None] = print) -> bool:
    """Print each component's state; True when all serve."""
    all_ready = True
    for component in selected:
        external = _external(component)
        recorded = _recorded(layout, component.name)
        if external is not None:
            state = f"external {external[1]}"
        elif recorded is not None and recorded.alive():
            serving = component.is_ready(component.url)
            all_ready &= serving
            state = f"{'ready' if serving else 'NOT READY'} pid {recorded.pid} {component.url}"
            if component.supervised:
                state += _supervision(supervisor.read_state(_statefile(layout, component.name)))
        else:
            all_ready = False
            state = "stopped"
        report(f"{component.name:<13} {state}")
    return all_ready


def _supervision(state: supervisor.Supervised | None) -> str:
    """What `status` adds for a supervised service: its own PID, restarts and the last exit."""
    if state is None:
        return " (supervisor starting)"
    now = time.time()
    if state.pid is not None:
        text = f" service pid {state.pid}, restarts {state.restarts}"
    elif state.next_start_at is not None:
        text = f" service down, restart {state.restarts + 1} in {max(0.0, state.next_start_at - now):.0f}s"
    else:
        text = f" service stopped, restarts {state.restarts}"
    last = state.last_exit
    if last is not None:
        when = time.strftime("%H:%M:%SZ", time.gmtime(last.at))
        text += f"\n{'':<14}last exit: {last.description} at {when} after {last.ran_for:.1f}s"
        text += f"; last log line: {last.last_line or '(none)'}"
    return text


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.local", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["up", "down", "status", "env", "run", "prune-topics"])
    parser.add_argument("--only", nargs="+", metavar="NAME", help="limit to these components")
    parser.add_argument("--infra", action="store_true", help="only the servers, not the services")
    parser.add_argument(
        "--purge", action="store_true", help="with down: also delete the data (keeps downloads)"
    )
    args = parser.parse_args(argv)
    layout = Layout(ROOT)
    try:
        every = components()
    except RuntimeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    wanted = set(args.only or []) | (set(INFRASTRUCTURE) if args.infra else set())
    selected = [c for c in every if not wanted or c.name in wanted]
    try:
        if args.command == "up":
            up(layout, selected)
        elif args.command == "down":
            down(layout, selected)
            if args.purge:
                for component in selected:
                    shutil.rmtree(layout.data(component.name), ignore_errors=True)
        elif args.command == "run":
            # One component in the foreground (for Tilt, or a debugger), set up as `up` would.
            if len(selected) != 1:
                raise RuntimeError("run takes exactly one component: run --only NAME")
            launch = selected[0].launch(layout)
            os.execvpe(launch.argv[0], launch.argv, {**os.environ, **launch.env})  # noqa: S606
        elif args.command == "status":
            return 0 if status(layout, selected) else 1
        elif args.command == "prune-topics":
            pruned = kafka.prune_test_topics(read_env(layout)["KAFKA_BOOTSTRAP_SERVERS"])
            print(f"deleted {pruned} topics left by tests")
        else:
            for key, value in read_env(layout).items():
                print(f"export {key}={shlex.quote(value)}")
    except RuntimeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0
