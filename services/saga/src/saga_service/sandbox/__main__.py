"""`python -m saga_service.sandbox` (or `payment-sandbox`): run the payment provider sandbox."""

from __future__ import annotations

from servicekit.runner import serve

from saga_service.sandbox.app import create_app
from saga_service.sandbox.settings import SandboxSettings

__all__ = ["main"]


def main() -> int:
    """Run the sandbox until it is told to stop."""
    return serve("payment-sandbox", SandboxSettings, create_app, prefix="SANDBOX_")


if __name__ == "__main__":
    raise SystemExit(main())
