"""`python -m command_service` (or `command-service`): serve the command API with uvicorn.

Settings come from the environment (see `command_service.settings`). On SIGTERM or
SIGINT uvicorn stops accepting connections, lets in-flight requests finish for
up to SHUTDOWN_TIMEOUT_SECONDS, then runs the app's shutdown, which closes the
PostgreSQL pool and the Redis client.
"""

from __future__ import annotations

import math
import sys

import uvicorn
from litestar import Litestar
from servicekit.settings import SettingsError
from uvicorn.supervisors import Multiprocess

from command_service.app import create_app
from command_service.logs import configure_logging
from command_service.settings import load_settings

__all__ = ["main"]


def app_from_environment() -> Litestar:
    """The app as each worker process builds it (uvicorn imports this by name when WORKERS > 1)."""
    settings = load_settings()
    configure_logging(settings.log_level)
    return create_app(settings)


def main() -> int:
    """Run the service until it is told to stop; the exit code says whether it started."""
    try:
        settings = load_settings()
    except SettingsError as error:
        print(f"command-service: {error}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    if settings.workers > 1:
        # Worker processes are spawned, so they build the app themselves from the same environment.
        app: Litestar | str = "command_service.__main__:app_from_environment"
    else:
        app = create_app(settings)
    config = uvicorn.Config(
        app,
        factory=settings.workers > 1,
        workers=settings.workers,
        host=settings.host,
        port=settings.port,
        lifespan="on",
        loop="uvloop",
        http="httptools",
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


if __name__ == "__main__":
    raise SystemExit(main())
