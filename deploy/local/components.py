"""What a component of the local stack is, and the small probes they share.

Every server in the docker-free stack (PostgreSQL, Redis, Kafka, OpenSearch,
Elasticsearch) is
described by one `Component`: how to prepare it once (install, download, format),
how to launch it as a child process, and how to tell that it is ready. The
stack CLI (`deploy.local.stack`) does the rest: PID files, logs, waiting,
idempotent `up`, exact `down`. Standard library only, so it runs before the
workspace's dependencies are installed.
"""

from __future__ import annotations

import os
import socket
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "Component",
    "Launch",
    "Layout",
    "http_ok",
    "maven_copy",
    "run_checked",
    "tcp_open",
]


@dataclass(frozen=True)
class Layout:
    """Where the stack keeps its files: everything lives under one folder."""

    root: Path

    def data(self, name: str) -> Path:
        """Data directory of one component (removed by `down --purge`)."""
        return self.root / "data" / name

    def cache(self, name: str) -> Path:
        """Downloads of one component; kept across `down --purge`."""
        return self.root / "cache" / name

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def run(self) -> Path:
        """PID files of the processes the stack started."""
        return self.root / "run"


@dataclass(frozen=True)
class Launch:
    """How to start a component's server as a child process."""

    argv: list[str]
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: Path | None = None


@dataclass(frozen=True)
class Component:
    """One server of the local stack."""

    name: str
    env_var: str  # the variable services read, e.g. KAFKA_BOOTSTRAP_SERVERS
    url: str  # the value exported for env_var when the stack starts the server
    prepare: Callable[[Layout], None]  # install / download / initialise; idempotent
    launch: Callable[[Layout], Launch]
    is_ready: Callable[[str], bool]  # probe a url: is the server serving?
    start_timeout: float = 60.0
    # run once the server serves, on every `up` (create databases, topics...); idempotent
    after_ready: Callable[[Layout], None] | None = None
    extra_env: Mapping[str, str] = field(default_factory=dict)  # more exports
    # more variables exported with the same URL as env_var, external or not
    # (SEARCH_URL names whichever search engine is the default)
    aliases: tuple[str, ...] = ()
    phase: int = 0  # components of a later phase start once every earlier one serves
    # run under deploy.local.supervisor, which restarts the process whenever it exits
    supervised: bool = False


def tcp_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def http_ok(url: str, timeout: float = 2.0) -> bool:
    """True when GET url answers 2xx."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - loopback only
            status: int = response.status
            return 200 <= status < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


def run_checked(argv: list[str], *, env: Mapping[str, str] | None = None, cwd: Path | None = None) -> str:
    """Run a set-up command; on failure raise with its output so the user sees why."""
    merged = {**os.environ, **(env or {})}
    result = subprocess.run(argv, env=merged, cwd=cwd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        output = f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
        raise RuntimeError(f"command failed ({result.returncode}): {' '.join(argv)}\n{output}")
    return result.stdout


def maven_copy(artifact: str, folder: Path) -> None:
    """Copy one artifact (group:artifact:version[:type[:classifier]]) from Maven Central into folder."""
    run_checked(
        ["mvn", "-B", "-q", "dependency:copy", f"-Dartifact={artifact}", f"-DoutputDirectory={folder}"],
        cwd=folder,
    )
