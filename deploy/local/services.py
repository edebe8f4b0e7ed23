"""The suite's own services as components of the local stack.

Each runs as `python -m <package>` from the project's virtualenv with the
stack's endpoints in its environment, and is ready when its health endpoint
answers. Secrets for local development (the JWT signing key) are generated once
into the stack folder.
"""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Callable
from pathlib import Path

from deploy.local.components import Component, Launch, Layout, http_ok

__all__ = ["INFRASTRUCTURE_VARIABLES", "service_components"]

INFRASTRUCTURE_VARIABLES = ("DATABASE_URL", "REDIS_URL", "KAFKA_BOOTSTRAP_SERVERS", "SEARCH_URL")
JWT_ISSUER = "fulfilment-local"
JWT_AUDIENCE = "fulfilment"


def _jwt(layout: Layout) -> dict[str, str]:
    """What the services that verify bearer tokens (command, query, saga) share to check them."""
    return {
        "JWT_SECRET": _secret(layout, "jwt-secret"),
        "JWT_ISSUER": JWT_ISSUER,
        "JWT_AUDIENCE": JWT_AUDIENCE,
    }


def _secret(layout: Layout, name: str) -> str:
    path = layout.root / name
    if not path.exists():
        layout.root.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


def _tracing(endpoints: dict[str, str]) -> dict[str, str]:
    """Spans to the stack's Zipkin while it answers, unless OTEL_EXPORTER says otherwise."""
    zipkin, endpoint = endpoints.get("ZIPKIN_URL"), endpoints.get("OTEL_EXPORTER_ZIPKIN_ENDPOINT")
    if not zipkin or not endpoint or not http_ok(f"{zipkin}/health"):
        return {}
    return {
        "OTEL_EXPORTER": os.environ.get("OTEL_EXPORTER", "zipkin"),
        "OTEL_EXPORTER_ZIPKIN_ENDPOINT": endpoint,
    }


def _service(
    name: str,
    module: str,
    port: int,
    env: Callable[[Layout], dict[str, str]],
    read_env: Callable[[Layout], dict[str, str]],
    *,
    health: str = "/health/ready",
    extra_env: dict[str, str] | None = None,
) -> Component:
    url = f"http://127.0.0.1:{port}"

    def launch(layout: Layout) -> Launch:
        endpoints = read_env(layout)
        stack = {key: value for key, value in endpoints.items() if key in INFRASTRUCTURE_VARIABLES}
        return Launch(
            argv=[sys.executable, "-m", module],
            env={**stack, **_tracing(endpoints), **env(layout)},
            cwd=Path.cwd(),
        )

    return Component(
        name=name,
        env_var=f"{name.upper()}_URL",
        url=url,
        prepare=lambda layout: None,
        launch=launch,
        is_ready=lambda probe: http_ok(probe.rstrip("/") + health),
        start_timeout=60.0,
        extra_env=extra_env or {},
        phase=1,
        supervised=True,
    )


def service_components(offset: int, read_env: Callable[[Layout], dict[str, str]]) -> list[Component]:
    """The command service, the query service, the relay, the projector, the saga and its payment
    sandbox, on ports shifted by `offset`."""
    command_port, query_port = 8001 + offset, 8002 + offset
    relay_port, projector_port = 8003 + offset, 8004 + offset
    saga_port, sandbox_port = 8005 + offset, 8006 + offset

    def command_env(layout: Layout) -> dict[str, str]:
        return {
            "COMMAND_HOST": "127.0.0.1",
            "COMMAND_PORT": str(command_port),
            **_jwt(layout),
        }

    def query_env(layout: Layout) -> dict[str, str]:
        return {
            "QUERY_HOST": "127.0.0.1",
            "QUERY_PORT": str(query_port),
            **_jwt(layout),
        }

    def relay_env(layout: Layout) -> dict[str, str]:
        # Messages name their schema by a URI this relay serves itself.
        return {
            "RELAY_PORT": str(relay_port),
            "RELAY_DATASCHEMA_BASE": f"http://127.0.0.1:{relay_port}/schemas/",
        }

    def projector_env(layout: Layout) -> dict[str, str]:
        return {"PROJECTOR_PORT": str(projector_port)}

    def sandbox_env(layout: Layout) -> dict[str, str]:
        return {"SANDBOX_PORT": str(sandbox_port), "SANDBOX_SECRET": _secret(layout, "provider-secret")}

    def saga_env(layout: Layout) -> dict[str, str]:
        return {
            "SAGA_HOST": "127.0.0.1",
            "SAGA_PORT": str(saga_port),
            **_jwt(layout),
            "SAGA_COMMAND_URL": f"http://127.0.0.1:{command_port}",
            "SAGA_PROVIDER_URL": f"http://127.0.0.1:{sandbox_port}",
            "SAGA_PROVIDER_SECRET": _secret(layout, "provider-secret"),
        }

    return [
        _service(
            "command",
            "command_service",
            command_port,
            command_env,
            read_env,
            extra_env={"JWT_ISSUER": JWT_ISSUER, "JWT_AUDIENCE": JWT_AUDIENCE},
        ),
        _service("relay", "relay_service", relay_port, relay_env, read_env),
        # Live, not ready: ready needs the orders index, which the projector creates on its first start.
        _service("query", "query_service", query_port, query_env, read_env, health="/health/live"),
        # Ready once it consumes and its stores answer; the relay creates the topics it reads.
        _service("projector", "projector_service", projector_port, projector_env, read_env),
        _service("sandbox", "saga_service.sandbox", sandbox_port, sandbox_env, read_env),
        _service("saga", "saga_service", saga_port, saga_env, read_env),
    ]
