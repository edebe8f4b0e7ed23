"""Test harness for the suite's services: real processes, free ports, tokens, app lifespans.

    async with running_service("relay_service", env, log=tmp_path / "relay.log") as relay:
        await relay.wait_for(lambda status, body: body["checks"]["kafka"] == "ok")
        relay.kill()  # SIGKILL: the crash case

`running_service` starts `python -m <module>` with the given environment and a
free port, waits until `/health/ready` answers 200 (failing the test with the
tail of the log if the process exits or never gets ready), and on the way out
sends SIGTERM and waits, killing it if it does not stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import httpx
from litestar import Litestar
from servicekit.tokens import mint

__all__ = [
    "ServiceProcess",
    "TcpProxy",
    "TokenFactory",
    "free_port",
    "lifespan_of",
    "running_service",
    "token_factory",
]


@functools.cache
def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


# Ports handed out by this process: a service not started yet still owns its port.
_handed_out: set[int] = set()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now, below the ephemeral range.

    A port the kernel gave a probe socket (bind to port 0) comes from the ephemeral range,
    where any outgoing connection may take it before the service binds it. Below that
    range only an explicit bind can, so a random free port there stays free.
    """
    low = min(_ephemeral_low(), 32768)
    for _ in range(1000):
        port = random.randrange(15000, low)  # above the side stacks' services (8001 + offset)
        if port in _handed_out:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free TCP port between 15000 and {low}")


class ServiceProcess:
    """One service started as `python -m <module>`, its output in `log`."""

    def __init__(self, module: str, env: Mapping[str, str], *, port: int, log: Path) -> None:
        self.module = module
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        self.env = dict(env)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> ServiceProcess:
        """Start the process (again, after a stop or kill), appending to the same log."""
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", self.module], env=self.env, stdout=out, stderr=subprocess.STDOUT
            )
        return self

    @property
    def returncode(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def log_tail(self, characters: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-characters:]
        except OSError:
            return "(no log)"

    def log_lines(self) -> list[str]:
        return self.log.read_text(errors="replace").splitlines()

    async def get(self, path: str, **kwargs: Any) -> httpx.Response:
        async with httpx.AsyncClient(base_url=self.url, timeout=5) as client:
            return await client.get(path, **kwargs)

    async def wait_for(
        self,
        condition: Callable[[int, Any], bool],
        *,
        path: str = "/health/ready",
        timeout: float = 60.0,
    ) -> Any:
        """Poll `path` until `condition(status_code, json_body)` holds; return the body."""
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(base_url=self.url, timeout=5) as client:
            while True:
                if self.returncode is not None:
                    raise AssertionError(f"{self.module} exited with {self.returncode}:\n{self.log_tail()}")
                try:
                    response = await client.get(path)
                    body = response.json() if response.content else None
                    if condition(response.status_code, body):
                        return body
                except (httpx.TransportError, ValueError):
                    pass  # not listening yet, or not JSON yet
                if time.monotonic() > deadline:
                    raise AssertionError(
                        f"{self.module}: {path} did not satisfy the condition within {timeout:g} s:\n"
                        f"{self.log_tail()}"
                    )
                await asyncio.sleep(0.05)

    async def ready(self, timeout: float = 60.0) -> None:
        """Wait until `/health/ready` answers 200."""
        await self.wait_for(lambda status, _: status == 200, timeout=timeout)

    def ready_blocking(self, timeout: float = 60.0) -> None:
        """`ready` for synchronous fixtures (such as schemathesis's)."""
        deadline = time.monotonic() + timeout
        while True:
            if self.returncode is not None:
                raise AssertionError(f"{self.module} exited with {self.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/health/ready", timeout=5).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.module} was not ready within {timeout:g} s:\n{self.log_tail()}")
            time.sleep(0.1)

    def send(self, sig: int) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)

    async def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Send `sig` and wait for the exit; SIGKILL if it does not come in time. Returns the exit code."""
        if self.process is None:
            return 0
        self.send(sig)
        try:
            return await asyncio.wait_for(asyncio.to_thread(self.process.wait), timeout)
        except TimeoutError:
            self.process.kill()
            return await asyncio.to_thread(self.process.wait)

    def kill(self) -> None:
        """SIGKILL, as a crash would: no shutdown code runs."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)


@contextlib.asynccontextmanager
async def running_service(
    module: str,
    env: Mapping[str, str],
    *,
    log: Path,
    port_variable: str = "PORT",
    ready: bool = True,
    timeout: float = 60.0,
) -> AsyncIterator[ServiceProcess]:
    """A started service process (ready, unless `ready=False`), stopped with SIGTERM on the way out.

    The environment is the test process's own, updated with `env`, plus a free
    port in `port_variable`.
    """
    port = free_port()
    service = ServiceProcess(module, {**os.environ, **env, port_variable: str(port)}, port=port, log=log)
    service.start()
    try:
        if ready:
            await service.ready(timeout)
        yield service
    finally:
        if service.returncode is None:
            await service.stop()


class TokenFactory(Protocol):
    def __call__(
        self, subject: str | None = None, roles: Sequence[str] = ("customer",), **claims: Any
    ) -> str: ...


def token_factory(*, secret: str, issuer: str, audience: str) -> TokenFactory:
    """Mints HS256 tokens.

    Keyword overrides: issuer, audience, key, algorithm, ttl_seconds, now, kid; other keywords become claims.
    """

    def token(subject: str | None = None, roles: Sequence[str] = ("customer",), **claims: Any) -> str:
        return mint(
            subject=subject or f"user-{uuid.uuid4().hex[:8]}",
            roles=roles,
            issuer=claims.pop("issuer", issuer),
            audience=claims.pop("audience", audience),
            key=claims.pop("key", secret),
            algorithm=claims.pop("algorithm", "HS256"),
            ttl_seconds=claims.pop("ttl_seconds", 600),
            now=claims.pop("now", None),
            kid=claims.pop("kid", None),
            extra_claims=claims or None,
        )

    return token


@contextlib.asynccontextmanager
async def lifespan_of(app: Litestar) -> AsyncIterator[None]:
    """Runs the app's lifespan in a task of its own: its cancel scopes must start and end in one task,
    while pytest-asyncio sets a fixture up and tears it down in different ones."""
    started, stopping = asyncio.Event(), asyncio.Event()

    async def run() -> None:
        async with app.lifespan():
            started.set()
            await stopping.wait()

    task = asyncio.create_task(run())
    waiter = asyncio.create_task(started.wait())
    await asyncio.wait([task, waiter], return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        waiter.cancel()
        task.result()  # start-up failed: raise its error
    try:
        yield
    finally:
        stopping.set()
        await task


class TcpProxy:
    """A TCP proxy in front of a real server, for outages a test controls without stopping the server.

    `freeze()` holds every byte in both directions (requests in flight hang),
    `stop()` cuts every open connection and refuses new ones (what a client sees
    when the server is SIGKILLed), `start()` accepts again on the same port.
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._holding: set[asyncio.StreamWriter] = set()
        self._held_more = asyncio.Event()

    async def start(self) -> TcpProxy:
        self._flowing.set()
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port, reuse_address=True)
        return self

    @property
    def held(self) -> int:
        """Connections whose client sent something since `freeze()`: requests in flight."""
        return len(self._holding)

    def freeze(self) -> None:
        self._holding.clear()
        self._flowing.clear()

    async def stop(self) -> None:
        """Refuse new connections and abort the open ones (no FIN: a reset, as after a crash)."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        self._holding.clear()
        self._flowing.set()

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection(*self.target)
        except OSError:
            client_writer.transport.abort()
            return
        if self._server is None:  # stopped while this connection was being set up
            for writer in (client_writer, server_writer):
                writer.transport.abort()
            return
        self._writers |= {client_writer, server_writer}
        await asyncio.gather(
            self._pipe(client_reader, server_writer, upstream=True),
            self._pipe(server_reader, client_writer, upstream=False),
            return_exceptions=True,
        )
        for writer in (client_writer, server_writer):
            self._writers.discard(writer)
            writer.transport.abort()

    async def holding(self, count: int) -> None:
        """Wait until `count` connections have a request held by `freeze()`."""
        while self.held < count:
            self._held_more.clear()
            await self._held_more.wait()

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, upstream: bool
    ) -> None:
        while chunk := await reader.read(65536):
            if not self._flowing.is_set():
                if upstream:
                    self._holding.add(writer)
                    self._held_more.set()
                await self._flowing.wait()
            if writer.transport.is_closing():
                return
            writer.write(chunk)
            await writer.drain()
        writer.transport.abort()
