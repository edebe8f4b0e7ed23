"""`python -m projector_service` (or `projector-service`): the projector, settings from the environment.

On SIGTERM the lifespan stops the consumers (a batch in flight is not committed,
so it is delivered again: every write is version-guarded) and the trackers.
"""

from __future__ import annotations

from servicekit.runner import serve

from projector_service.app import create_app
from projector_service.settings import ProjectorSettings

__all__ = ["main"]


def main() -> int:
    """Run the projector until it is told to stop; the exit code says why it stopped."""
    return serve("projector-service", ProjectorSettings, create_app, prefix="PROJECTOR_")


if __name__ == "__main__":
    raise SystemExit(main())
