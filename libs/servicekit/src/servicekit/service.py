"""`Service`: the one way a service process is built, started, supervised and stopped.

A service declares `start(run)`: `run.connect` waits (with backoff) for a dependency,
`run.ready` adds a readiness check, `run.provide` hands an object to the handlers named
in `provides` (they answer 503 `starting` until then), `run.spawn` starts a loop. The
server answers at once while `start` runs; a loop failing with a transient error is
restarted with backoff, and any other end is fatal (`/health/live` 503, then
`servicekit.runner.serve` exits with `EXIT_TASK_ENDED`). Example and the reasons:
`docs/architecture.md` ("Adding a service", "What the kit promises every service").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from litestar import Litestar
from litestar.datastructures import State
from litestar.di import Provide
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.config import OpenAPIConfig
from litestar.plugins import PluginProtocol
from litestar.types import BeforeMessageSendHookHandler, ControllerRouterHandler
from opentelemetry.sdk.trace.export import SpanExporter

from servicekit.access import AccessCheck, require_access_check
from servicekit.errors import ServiceStarting
from servicekit.health import Check
from servicekit.metrics import Refresh
from servicekit.observability import Observability
from servicekit.problems import ProblemTable
from servicekit.requests import ServiceRequest
from servicekit.settings import ServiceSettings

__all__ = ["NETWORK_ERRORS", "Closer", "Service", "ServiceStarting", "Startup", "where"]

log = logging.getLogger("servicekit.service")

# What any dependency may fail with while it restarts; adapters add their own driver errors.
NETWORK_ERRORS: tuple[type[BaseException], ...] = (OSError, TimeoutError, ConnectionError)

FIRST_DELAY = 0.5  # seconds before the first retry; doubled each time, up to MAX_DELAY
MAX_DELAY = 15.0
SETTLED_AFTER = 60.0  # a loop that ran this long before failing starts again from FIRST_DELAY

type Loop = Callable[[], Awaitable[None]]
type Closer = Callable[[], Awaitable[object]]


def where(url: str) -> str:
    """`host:port` of a URL or of a `host:port[,host:port]` list, with no user or password."""
    if "://" not in url:
        return ",".join(part.rpartition("@")[2] for part in url.split(","))
    parts = urlsplit(url)
    host = parts.hostname or "?"
    return f"{host}:{parts.port}" if parts.port else host


def _backoff(delay: float) -> float:
    return min(MAX_DELAY, delay * 2)


def _describe(error: BaseException) -> str:
    # A task group's failure says nothing by itself: name what failed inside it.
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


class Startup:
    """What a service's `start` uses to open its dependencies and start its loops."""

    def __init__(self, service: Service, state: State, stack: contextlib.AsyncExitStack) -> None:
        self._service = service
        self._state = state
        self._stack = stack

    async def connect[T](
        self,
        dependency: str,
        url: str,
        attempt: Callable[[], Awaitable[T]],
        *,
        close: Callable[[T], Awaitable[object]] | None = None,
        transient: tuple[type[BaseException], ...] = (),
    ) -> T:
        """`attempt()` until it succeeds; while it fails transiently readiness says what is awaited.

        `close(result)` runs at shutdown, after every loop has stopped. A non-transient
        failure propagates (start-up then fails, and the process ends).
        """
        retriable = (*NETWORK_ERRORS, *transient)
        delay = FIRST_DELAY
        while True:
            try:
                result = await attempt()
                break
            except retriable as error:
                reason = f"waiting for {dependency} at {where(url)}: {_describe(error)}"
                if self._service.starting != reason:
                    log.warning("%s; trying again", reason)
                self._service.starting = reason
                self._service.settled.set()  # serve meanwhile, saying what is awaited
                await asyncio.sleep(delay * random.uniform(0.8, 1.2))
                delay = _backoff(delay)
        self._service.starting = "starting"
        if close is not None:
            self._stack.push_async_callback(close, result)
        return result

    def on_stop(self, close: Closer) -> None:
        """Run `close()` at shutdown (in reverse order of registration), after the loops stopped."""
        self._stack.push_async_callback(close)

    def provide(self, name: str, value: object) -> None:
        """Hand `value` to the handlers that declare a parameter `name` (listed in `provides`)."""
        self._state[name] = value

    def ready(self, name: str, check: Check) -> None:
        """Add a readiness check (evaluated once start-up is done)."""
        self._service.checks[name] = check

    def spawn(self, name: str, loop: Loop, *, transient: tuple[type[BaseException], ...] = ()) -> None:
        """Run `loop()` in the background for the process's lifetime, supervised (see the module)."""
        self._service.spawn(name, loop, (*NETWORK_ERRORS, *transient))


class Service:
    """One service process: its observability, start-up, supervised loops, health and app."""

    def __init__(
        self,
        settings: ServiceSettings,
        name: str,
        *,
        problems: ProblemTable | None = None,
        span_exporter: SpanExporter | None = None,
    ) -> None:
        self.settings = settings
        self.name = name
        self.problems = problems or ProblemTable()
        self.observability = Observability(settings, name, span_exporter=span_exporter)
        self.checks: dict[str, Check] = {}
        self.starting: str | None = "starting"  # None once start-up is done
        self.failed: str | None = None  # why the process must end
        self.waiting: dict[str, str] = {}  # loops backing off after a transient failure, and why
        # What to do when the process must end; `servicekit.runner.serve` sets it.
        self.on_fatal: Callable[[], None] | None = None
        self._tasks: dict[str, asyncio.Task[None]] = {}
        # Set once start-up is done or waits for a dependency: the server starts serving then.
        self.settled = asyncio.Event()

    @property
    def registry(self) -> Any:
        """The process's Prometheus registry."""
        return self.observability.registry

    @property
    def tracer(self) -> Any:
        return self.observability.tracer

    # --- failure ------------------------------------------------------------------------------

    def fail(self, reason: str) -> None:
        """End the process: one log line, liveness false, and the runner's exit."""
        if self.failed is not None:
            return
        self.failed = reason
        log.critical("%s: %s; exiting so that the supervisor restarts the process", self.name, reason)
        if self.on_fatal is not None:
            self.on_fatal()

    # --- loops --------------------------------------------------------------------------------

    def spawn(self, name: str, loop: Loop, transient: tuple[type[BaseException], ...]) -> None:
        if name in self._tasks:
            raise ValueError(f"a loop named {name!r} already runs")
        self._tasks[name] = asyncio.create_task(self._supervise(name, loop, transient), name=name)

    async def _supervise(self, name: str, loop: Loop, transient: tuple[type[BaseException], ...]) -> None:
        delay = FIRST_DELAY
        while True:
            began = time.monotonic()
            try:
                await loop()
            except asyncio.CancelledError:
                raise
            except transient as error:
                if time.monotonic() - began > SETTLED_AFTER:
                    delay = FIRST_DELAY
                self.waiting[name] = _describe(error)
                log.warning("%s: %s; restarting in %.1f s", name, _describe(error), delay)
                await asyncio.sleep(delay * random.uniform(0.8, 1.2))
                delay = _backoff(delay)
                self.waiting.pop(name, None)
                continue
            except Exception as error:
                log.error("%s failed", name, exc_info=error)
                self.fail(f"{name} failed: {_describe(error)}")
                return
            self.fail(f"{name} ended")
            return

    async def _stop_loops(self) -> None:
        tasks = list(reversed(self._tasks.values()))
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    # --- health -------------------------------------------------------------------------------

    async def _alive(self) -> str | None:
        return self.failed

    async def _started(self) -> str | None:
        return self.failed or self.starting

    async def _loops(self) -> str | None:
        if not self.waiting:
            return None
        return "; ".join(f"{name} restarting after {why}" for name, why in self.waiting.items())

    def _ready(self) -> Mapping[str, Check]:
        service = self

        class Checks(Mapping[str, Check]):
            # Read at each request: start-up adds the service's checks as it opens what they check.
            def __getitem__(self, key: str) -> Check:
                return {"startup": service._started, "loops": service._loops, **service.checks}[key]

            def __iter__(self) -> Any:
                return iter(["startup", "loops", *service.checks])

            def __len__(self) -> int:
                return 2 + len(service.checks)

        return Checks()

    # --- the app ------------------------------------------------------------------------------

    def app(
        self,
        route_handlers: Sequence[ControllerRouterHandler],
        *,
        start: Callable[[Startup], Awaitable[None]],
        provides: Iterable[str] | Mapping[str, object] = (),
        access: AccessCheck | None = None,
        openapi: OpenAPIConfig | None = None,
        plugins: Sequence[PluginProtocol] = (),
        max_body_bytes: int | None = None,
        before_send: Sequence[BeforeMessageSendHookHandler] = (),
        refresh_metrics: Refresh | None = None,
        extra_ready: Mapping[str, Check] | None = None,
    ) -> Litestar:
        """The service's Litestar app: its routes, the kit's health and metrics, problem details,
        request class, OpenAPI policy (`openapi=None`: no document), telemetry and lifespan."""
        if extra_ready:
            self.checks.update(extra_ready)

        @contextlib.asynccontextmanager
        async def lifespan(app: Litestar) -> AsyncIterator[None]:
            async with contextlib.AsyncExitStack() as stack:
                stack.callback(self.observability.shutdown)
                startup = Startup(self, app.state, stack)
                starting = asyncio.create_task(self._start(start, startup), name=f"{self.name}-start")
                # With its dependencies up, a service serves only once started (no request meets
                # a half-built service); with one down, it serves at once and says what it awaits.
                await self.settled.wait()
                try:
                    yield
                finally:
                    starting.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await starting
                    await self._stop_loops()
                    log.info("%s service stopped", self.name)

        health: list[HTTPRouteHandler] = self.observability.routes(
            ready=self._ready(), live={"loops": self._alive}, refresh_metrics=refresh_metrics
        )
        app = Litestar(
            route_handlers=[*route_handlers, *health],
            lifespan=[lifespan],
            dependencies={name: _provider(name) for name in provides},
            exception_handlers={Exception: self.problems.handler},
            request_class=ServiceRequest,
            request_max_body_size=max_body_bytes,
            openapi_config=openapi,
            plugins=list(plugins),
            before_send=list(before_send),
            logging_config=None,
        )
        app.state.service = self
        if isinstance(provides, Mapping):  # objects that exist before start-up, handed over now
            for name, value in provides.items():
                app.state[name] = value
        self.observability.instrument(app)
        if access is not None:
            require_access_check(app, access)
        return app

    async def _start(self, start: Callable[[Startup], Awaitable[None]], startup: Startup) -> None:
        try:
            await start(startup)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            log.error("%s start-up failed", self.name, exc_info=error)
            self.fail(f"start-up failed: {_describe(error)}")
            return
        finally:
            self.settled.set()
        self.starting = None
        log.info("%s service started", self.name)


def _provider(name: str) -> Provide:
    def provide(state: State) -> Any:
        try:
            return state[name]
        except KeyError:
            raise ServiceStarting(f"the service is starting: {name} is not ready yet") from None

    return Provide(provide, sync_to_thread=False, use_cache=True)
