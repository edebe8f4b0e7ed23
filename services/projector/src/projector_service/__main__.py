"""`python -m projector_service` (or `projector-service`): the projector, settings from the environment.

On SIGTERM the lifespan stops the consumers (a batch in flight is not committed,
so it is delivered again: every write is version-guarded) and the trackers.
"""

from __future__ import annotations

from fulfilment.registry import build_registry
from litestar import Litestar
from servicekit.runner import serve

from projector_service.app import create_app
from projector_service.settings import ProjectorSettings, load_settings

__all__ = ["main"]


def _app(settings: ProjectorSettings) -> Litestar:
    return create_app(settings, build_registry())


def main() -> int:
    """Run the projector until it is told to stop; the exit code says whether it started."""
    return serve("projector-service", load_settings, _app)


if __name__ == "__main__":
    raise SystemExit(main())
