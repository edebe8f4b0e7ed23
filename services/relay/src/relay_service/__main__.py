"""`python -m relay_service`: run the relay with settings from the environment."""

from __future__ import annotations

import logging

import uvicorn
from fulfilment.registry import build_registry
from servicekit.settings import from_env

from relay_service.app import create_app
from relay_service.settings import RelaySettings


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = from_env(RelaySettings)
    app = create_app(settings, build_registry())
    # uvicorn stops on SIGTERM/SIGINT: the lifespan cancels the publishing task, whose
    # unconfirmed sends are simply published again by the next leader.
    uvicorn.run(app, host=settings.relay_http_host, port=settings.relay_http_port, log_level="warning")


if __name__ == "__main__":
    main()
