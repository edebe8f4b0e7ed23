"""Redis from the Debian package."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

from deploy.local.components import Component, Launch, Layout
from deploy.local.system import debian_binary

__all__ = ["component"]


def _server() -> str:
    return debian_binary("redis-server", "redis-server")


def component(host: str = "127.0.0.1", port: int = 56379) -> Component:
    def prepare(layout: Layout) -> None:
        _server()
        layout.data("redis").mkdir(parents=True, exist_ok=True)

    def launch(layout: Layout) -> Launch:
        # Append-only file, fsynced before each answer: a restart keeps the read models and
        # their positions instead of costing a rebuild of both projections. Not `everysec`:
        # a crash would lose up to a second of acknowledged writes whose Kafka offsets are
        # committed, a hole the projector cannot see (docs/redis-persistence.md). The
        # projector repairs an emptied Redis either way.
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
                "yes",
                "--appendfsync",
                "always",
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
