"""`serve(...)`: what every service's `python -m` does: settings, logs, uvicorn, graceful shutdown.

A service's `__main__` is a few lines:

    def main() -> int:
        return serve("relay", load_settings, create_app)

Settings come from the environment; a missing or malformed variable (or a
combination `create_app` refuses with `SettingsError`) prints the variable's
name and exits with status 2, before anything starts. On SIGTERM or SIGINT
uvicorn stops accepting connections, lets in-flight requests finish for up to
`shutdown_timeout_seconds`, then runs the app's lifespan shutdown, which closes
its pools and stops its background tasks. What start-up built (the modules, the
app) is frozen out of the cyclic garbage collector's reach (`freeze_startup`),
which then walks only what requests make; a worker's factory calls it itself.
"""

from __future__ import annotations

import gc
import math
import sys
from collections.abc import Callable

import uvicorn
from litestar import Litestar
from uvicorn.supervisors import Multiprocess

from servicekit.http_limits import HeaderLimits, LimitedConfig
from servicekit.logs import configure_logging
from servicekit.settings import ServiceSettings, SettingsError

__all__ = ["EXIT_BAD_SETTINGS", "freeze_startup", "serve"]

EXIT_BAD_SETTINGS = 2


def freeze_startup() -> None:
    """Put what exists now (the modules, the app just built) out of the cyclic collector's reach.

    It lives as long as the process, yet a full collection would walk all of it again
    and again as requests fill the young generations (about 2% of a read's instructions
    in the query service). Call it once the app is built, before serving.
    """
    gc.collect()
    gc.freeze()


def serve[S: ServiceSettings](
    name: str,
    load_settings: Callable[[], S],
    create_app: Callable[[S], Litestar],
    *,
    factory: str | None = None,
) -> int:
    """Run the service until it is told to stop; the exit code says whether it started.

    `factory` is the import path of a zero-argument function building the app
    (`"command_service.__main__:app_from_environment"`): needed only for
    `workers > 1`, whose worker processes are spawned and build the app themselves.
    """
    try:
        settings = load_settings()
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
    config = LimitedConfig(
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
    if settings.workers > 1:
        # The supervisor forwards SIGTERM to the workers, each of which drains and shuts down.
        sock = config.bind_socket()
        Multiprocess(config, sockets=[sock]).run()
        return 0
    server = uvicorn.Server(config)
    server.run()
    # uvicorn returns without raising when start-up fails; it then never served.
    return 0 if server.started else 1
