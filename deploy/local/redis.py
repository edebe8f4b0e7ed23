"""Redis from the Debian package."""

from __future__ import annotations

import shutil
import socket
from urllib.parse import urlsplit

from deploy.local.components import Component, Launch, Layout
from deploy.local.system import apt_install

__all__ = ["component"]


def _server() -> str:
    # /usr/bin may be missing from PATH in minimal environments
    found = shutil.which("redis-server") or shutil.which("redis-server", path="/usr/bin")
    if found is None:
        apt_install("redis-server")
        found = shutil.which("redis-server", path="/usr/bin:/usr/local/bin")
    if found is None:
        raise RuntimeError("redis-server is not installed and could not be installed")
    return found


def component(host: str = "127.0.0.1", port: int = 56379) -> Component:
    def prepare(layout: Layout) -> None:
        _server()
        layout.data("redis").mkdir(parents=True, exist_ok=True)

    def launch(layout: Layout) -> Launch:
        # No persistence: read models in Redis are derived and can be rebuilt
        # from the event store (see docs/architecture.md).
        return Launch(
            argv=[
                _server(),
                "--bind",
                host,
                "--port",
                str(port),
                "--dir",
                str(layout.data("redis")),
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--protected-mode",
                "no",
            ]
        )

    def ready(probe_url: str) -> bool:
        parts = urlsplit(probe_url)
        try:
            with socket.create_connection((parts.hostname or host, parts.port or 6379), timeout=1.0) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith((b"+PONG", b"-NOAUTH"))
        except OSError:
            return False

    return Component(
        name="redis",
        env_var="REDIS_URL",
        url=f"redis://{host}:{port}/0",
        prepare=prepare,
        launch=launch,
        is_ready=ready,
        start_timeout=20.0,
    )
