"""`python -m command_service` (or `command-service`): serve the command API with uvicorn.

Settings come from the environment (see `command_service.settings`); the kit's
runner (`servicekit.runner.serve`) does the rest: a bad variable exits 2 naming
it, SIGTERM drains in-flight requests before the pools close.
"""

from __future__ import annotations

from litestar import Litestar
from servicekit.logs import configure_logging
from servicekit.runner import exit_when_failed, freeze_startup, serve

from command_service.app import create_app
from command_service.settings import CommandSettings, load_settings

__all__ = ["main"]


def app_from_environment() -> Litestar:
    """The app as each worker process builds it (uvicorn imports this by name when WORKERS > 1)."""
    settings = load_settings()
    configure_logging(settings.log_level)
    app = create_app(settings)
    exit_when_failed(app)  # a worker whose loop ended exits; the supervisor starts another
    freeze_startup()
    return app


def main() -> int:
    """Run the service until it is told to stop; the exit code says whether it started."""
    return serve(
        "command-service",
        CommandSettings,
        create_app,
        prefix="COMMAND_",
        factory="command_service.__main__:app_from_environment",
    )


if __name__ == "__main__":
    raise SystemExit(main())
