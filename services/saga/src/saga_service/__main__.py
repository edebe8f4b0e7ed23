"""`python -m saga_service` (or `saga-service`): run the saga orchestrator.

Settings come from the environment (see `saga_service.settings`); the kit's
runner does the rest: a bad variable exits 2 naming it, SIGTERM drains requests,
then the lifespan stops the consumer and the timers and closes the pool.
"""

from __future__ import annotations

from servicekit.runner import serve

from saga_service.app import create_app
from saga_service.settings import SagaSettings

__all__ = ["main"]


def main() -> int:
    """Run the service until it is told to stop; the exit code says whether it started."""
    return serve("saga-service", SagaSettings, create_app, prefix="SAGA_")


if __name__ == "__main__":
    raise SystemExit(main())
