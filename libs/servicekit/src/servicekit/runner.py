"""`serve(...)`: what every service's `python -m` does: settings, logs, uvicorn, graceful shutdown.

A bad variable (or a combination `create_app` refuses with `SettingsError`) exits 2
naming it, before anything starts. SIGTERM drains requests for up to
`shutdown_timeout_seconds`, then runs the lifespan shutdown; a loop of the app's
`Service` that ends for good exits `EXIT_TASK_ENDED`. What start-up built is frozen
out of the cyclic garbage collector's reach (`freeze_startup`; a worker's factory
calls it itself).
See docs/architecture.md, "Adding a service".
"""

from __future__ import annotations

import gc
import math
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence

import uvicorn
from litestar import Litestar
from uvicorn.supervisors import Multiprocess

from servicekit.http_limits import HeaderLimits, LimitedConfig
from servicekit.logs import configure_logging
from servicekit.service import Service
from servicekit.settings import ServiceSettings, SettingsError, describe_variables, from_env

__all__ = ["EXIT_BAD_SETTINGS", "EXIT_TASK_ENDED", "exit_when_failed", "freeze_startup", "serve"]

EXIT_BAD_SETTINGS = 2
EXIT_TASK_ENDED = 70  # EX_SOFTWARE: a loop the process lives for ended; restart it


def freeze_startup() -> None:
    """Put what exists now (the modules, the app just built) out of the cyclic collector's reach.

    It lives as long as the process, yet a full collection would walk all of it again
    and again as requests fill the young generations (about 2% of a read's instructions
    in the query service). Call it once the app is built, before serving.
    """
    gc.collect()
    gc.freeze()


def exit_when_failed(app: Litestar, stop: Callable[[], None] | None = None) -> None:
    """When `app`'s service fails, call `stop` (the server's graceful exit), or else send this
    process SIGTERM; if it is still alive after the shutdown timeout, end it outright."""
    service: Service | None = getattr(app.state, "service", None)
    if service is None:
        return
    grace = service.settings.shutdown_timeout_seconds + 5.0

    def on_fatal() -> None:
        if stop is not None:
            stop()
        else:
            os.kill(os.getpid(), signal.SIGTERM)
        timer = threading.Timer(grace, os._exit, args=(EXIT_TASK_ENDED,))
        timer.daemon = True
        timer.start()

    service.on_fatal = on_fatal


def serve[S: ServiceSettings](
    name: str,
    settings_type: type[S],
    create_app: Callable[[S], Litestar],
    *,
    prefix: str,
    factory: str | None = None,
    argv: Sequence[str] | None = None,
) -> int:
    """Run the service until it is told to stop or one of its loops ends; the exit code says which.

    `factory` is the import path of a zero-argument function building the app
    (`"command_service.__main__:app_from_environment"`): needed only for
    `workers > 1`, whose worker processes are spawned and build the app themselves.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if args:
        return _help(name, settings_type, prefix, args)
    try:
        settings = from_env(settings_type, prefix=prefix)
        configure_logging(settings.log_level)
        # Built here even when workers build their own, so a setting the app refuses stops start-up.
        built = create_app(settings)
    except SettingsError as error:
        print(f"{name}: {error}", file=sys.stderr)
        return EXIT_BAD_SETTINGS
    if settings.workers > 1 and factory is None:
        print(f"{name}: WORKERS: this service runs one process; run more instances", file=sys.stderr)
        return EXIT_BAD_SETTINGS
    app: Litestar | str = built if settings.workers == 1 else factory  # type: ignore[assignment]
    freeze_startup()  # worker processes build their app themselves and call it then
    config = _server_config(settings, app)
    if settings.workers > 1:
        # The supervisor forwards SIGTERM to the workers, each of which drains and shuts down; a
        # worker whose loop ended exits (see `exit_when_failed`) and the supervisor starts another.
        sock = config.bind_socket()
        Multiprocess(config, sockets=[sock]).run()
        return 0
    server = uvicorn.Server(config)

    def stop() -> None:
        server.should_exit = True

    exit_when_failed(built, stop)
    server.run()
    service: Service | None = getattr(built.state, "service", None)
    if service is not None and service.failed is not None:
        return EXIT_TASK_ENDED
    # uvicorn returns without raising when start-up fails; it then never served.
    return 0 if server.started else 1


def _help(name: str, settings_type: type[ServiceSettings], prefix: str, args: Sequence[str]) -> int:
    """`--help`: the variables and their defaults; any other argument is refused."""
    if args[0] in {"-h", "--help"}:
        print(f"usage: {name}\n\nConfigured by environment variables:\n")
        print(describe_variables(settings_type, prefix=prefix))
        return 0
    print(f"{name}: takes no arguments (see --help)", file=sys.stderr)
    return EXIT_BAD_SETTINGS


def _server_config(settings: ServiceSettings, app: Litestar | str) -> LimitedConfig:
    return LimitedConfig(
        app,
        factory=isinstance(app, str),
        workers=settings.workers,
        host=settings.host,
        port=settings.port,
        lifespan="on",
        loop="uvloop",
        header_limits=HeaderLimits(
            max_header_bytes=settings.max_header_bytes,
            max_headers=settings.max_headers,
            header_timeout=settings.header_timeout_seconds,
        ),
        timeout_keep_alive=math.ceil(settings.keep_alive_timeout_seconds),
        log_config=None,
        access_log=False,  # the app writes its own JSON access line, with trace ids
        timeout_graceful_shutdown=math.ceil(settings.shutdown_timeout_seconds),
        server_header=False,
    )
