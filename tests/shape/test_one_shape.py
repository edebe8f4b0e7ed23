"""Every service is built the one way: the kit's `Service`, its health and metrics, no CDN-script viewers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from command_service.app import create_app as command_app
from command_service.settings import CommandSettings
from litestar import Litestar
from projector_service.app import create_app as projector_app
from projector_service.settings import ProjectorSettings
from query_service.app import create_app as query_app
from query_service.settings import QuerySettings
from relay_service.app import create_app as relay_app
from relay_service.settings import RelaySettings
from saga_service.app import create_app as saga_app
from saga_service.sandbox.app import create_app as sandbox_app
from saga_service.sandbox.settings import SandboxSettings
from saga_service.settings import SagaSettings
from servicekit.service import Service
from servicekit.settings import from_env

# Building an app opens nothing: every connection is made by its start-up, in the lifespan.
ENV = {
    "DATABASE_URL": "postgresql://suite:secret@db.invalid:5432/suite",
    "REDIS_URL": "redis://cache.invalid:6379/0",
    "KAFKA_BOOTSTRAP_SERVERS": "kafka.invalid:9092",
    "SEARCH_URL": "http://search.invalid:9200",
    "JWT_SECRET": "a-secret-that-is-long-enough-for-hs256-tokens",
    "JWT_ISSUER": "issuer",
    "JWT_AUDIENCE": "audience",
    "SAGA_PROVIDER_SECRET": "a-provider-secret-that-is-long-enough",
    "SANDBOX_SECRET": "a-provider-secret-that-is-long-enough",
}

APPS: dict[str, tuple[Callable[[Any], Litestar], type, str]] = {
    "command": (command_app, CommandSettings, "COMMAND_"),
    "query": (query_app, QuerySettings, "QUERY_"),
    "relay": (relay_app, RelaySettings, "RELAY_"),
    "projector": (projector_app, ProjectorSettings, "PROJECTOR_"),
    "saga": (saga_app, SagaSettings, "SAGA_"),
    "sandbox": (sandbox_app, SandboxSettings, "SANDBOX_"),
}

VIEWERS = ("/schema/swagger", "/schema/redoc", "/schema/elements", "/schema/scalar", "/schema/rapidoc")


@pytest.mark.parametrize("name", APPS)
def test_each_service_is_built_by_the_kit_with_health_metrics_and_no_cdn_viewer(name: str) -> None:
    create, settings_type, prefix = APPS[name]
    app = create(from_env(settings_type, ENV, prefix=prefix))
    paths = {route.path for route in app.routes}

    assert isinstance(app.state.service, Service)
    assert {"/health/live", "/health/ready", "/metrics"} <= paths
    assert not paths & set(VIEWERS), f"{name} serves a viewer that loads scripts from a CDN"
