"""`python -m relay_service` (or `relay-service`): run the relay with settings from the environment.

On SIGTERM the lifespan cancels the publishing task; its unconfirmed sends are
simply published again by the next leader (at-least-once).
"""

from __future__ import annotations

from servicekit.runner import serve

from relay_service.app import create_app
from relay_service.settings import RelaySettings

__all__ = ["main"]


def main() -> int:
    """Run the relay until it is told to stop; the exit code says why it stopped."""
    return serve("relay-service", RelaySettings, create_app, prefix="RELAY_")


if __name__ == "__main__":
    raise SystemExit(main())
