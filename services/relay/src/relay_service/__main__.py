"""`python -m relay_service` (or `relay-service`): run the relay with settings from the environment.

On SIGTERM the lifespan cancels the publishing task; its unconfirmed sends are
simply published again by the next leader (at-least-once).
"""

from __future__ import annotations

from fulfilment.registry import build_registry
from litestar import Litestar
from servicekit.runner import serve

from relay_service.app import create_app
from relay_service.settings import RelaySettings, load_settings

__all__ = ["main"]


def _app(settings: RelaySettings) -> Litestar:
    return create_app(settings, build_registry())


def main() -> int:
    """Run the relay until it is told to stop; the exit code says whether it started."""
    return serve("relay-service", load_settings, _app)


if __name__ == "__main__":
    raise SystemExit(main())
