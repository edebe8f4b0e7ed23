"""docker-compose.yml stays a working description of the suite's servers."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

COMPOSE = Path(__file__).resolve().parents[2] / "docker-compose.yml"
SERVERS = {"postgres", "redis", "kafka", "elasticsearch"}


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def test_every_server_is_defined_with_a_health_check() -> None:
    services = compose()["services"]
    assert set(services) >= SERVERS
    for name in SERVERS:
        assert services[name]["healthcheck"]["test"], name


def test_kafka_runs_kraft_without_topic_auto_creation() -> None:
    kafka = compose()["services"]["kafka"]["environment"]
    assert "controller" in kafka["KAFKA_PROCESS_ROLES"]
    assert kafka["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"


def test_servers_publish_the_ports_the_local_stack_uses() -> None:
    # One set of URLs (.devstack/env, the README's table) serves both ways of running.
    services = compose()["services"]
    published = {name: services[name]["ports"][0].split(":")[0] for name in SERVERS}
    assert published == {"postgres": "55432", "redis": "56379", "kafka": "59092", "elasticsearch": "59200"}


def test_services_wait_for_healthy_servers() -> None:
    for name, service in compose()["services"].items():
        for dependency, condition in (service.get("depends_on") or {}).items():
            assert condition == {"condition": "service_healthy"}, (name, dependency)


def _compose_plugin() -> bool:
    docker = shutil.which("docker")
    return (
        docker is not None
        and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0
    )


@pytest.mark.skipif(not _compose_plugin(), reason="the docker compose client is not installed")
def test_docker_compose_accepts_the_file() -> None:
    result = subprocess.run(
        ["docker", "compose", "-f", str(COMPOSE), "config", "--quiet"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_elasticsearch_is_the_release_the_local_stack_runs() -> None:
    # The search contract tests run on the local stack's Elasticsearch; Docker
    # users must get the same release, not a neighbour with other defaults.
    from deploy.local.elasticsearch import VERSION

    image = compose()["services"]["elasticsearch"]["image"]
    assert image.rsplit(":", 1)[1] == VERSION
