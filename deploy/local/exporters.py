"""Prometheus exporters for PostgreSQL and Redis, from Debian's packages.

They start once the stack's servers serve (phase 1) and read the servers'
addresses from the stack's environment, so an external PostgreSQL or Redis
given in DATABASE_URL or REDIS_URL is the one they watch. Prometheus scrapes
them as the jobs `postgres` and `redis` (deploy/prometheus/prometheus.yml).
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit, urlunsplit

from deploy.local.components import Component, Launch, Layout, http_ok
from deploy.local.system import debian_binary

__all__ = ["POSTGRES_EXPORTER_PORT", "REDIS_EXPORTER_PORT", "postgres_exporter", "redis_exporter"]

POSTGRES_EXPORTER_PORT = 59187
REDIS_EXPORTER_PORT = 59121


def _dsn(database_url: str) -> str:
    """The stack's DATABASE_URL as the exporter's data source (no TLS on the local server)."""
    parts = urlsplit(database_url)
    query = parts.query
    if "sslmode=" not in query:
        query = "&".join(filter(None, [query, "sslmode=disable"]))
    return urlunsplit(("postgresql", parts.netloc, parts.path, query, ""))


def _exporter(
    name: str,
    package: str,
    port: int,
    arguments: Callable[[dict[str, str]], tuple[list[str], dict[str, str]]],
    read_env: Callable[[Layout], dict[str, str]],
) -> Component:
    url = f"http://127.0.0.1:{port}"

    def prepare(layout: Layout) -> None:
        debian_binary(package, package)

    def launch(layout: Layout) -> Launch:
        argv, env = arguments(read_env(layout))
        listen = f"--web.listen-address=127.0.0.1:{port}"
        return Launch(argv=[debian_binary(package, package), listen, *argv], env=env)

    return Component(
        name=name,
        env_var=f"{name.upper().replace('-', '_')}_URL",
        url=url,
        prepare=prepare,
        launch=launch,
        is_ready=lambda probe: http_ok(probe.rstrip("/") + "/metrics"),
        start_timeout=30.0,
        phase=1,
    )


def postgres_exporter(read_env: Callable[[Layout], dict[str, str]], offset: int = 0) -> Component:
    """`pg_up`, connections, transactions, locks, replication of the stack's PostgreSQL."""

    def arguments(env: dict[str, str]) -> tuple[list[str], dict[str, str]]:
        return [], {"DATA_SOURCE_NAME": _dsn(env["DATABASE_URL"])}

    port = POSTGRES_EXPORTER_PORT + offset
    return _exporter("postgres-exporter", "prometheus-postgres-exporter", port, arguments, read_env)


def redis_exporter(read_env: Callable[[Layout], dict[str, str]], offset: int = 0) -> Component:
    """`redis_up`, memory, clients, commands, keyspace of the stack's Redis."""

    def arguments(env: dict[str, str]) -> tuple[list[str], dict[str, str]]:
        return [f"--redis.addr={env['REDIS_URL']}"], {}

    port = REDIS_EXPORTER_PORT + offset
    return _exporter("redis-exporter", "prometheus-redis-exporter", port, arguments, read_env)
