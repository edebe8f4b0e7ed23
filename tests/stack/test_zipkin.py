"""The local stack's Zipkin: started by `up`, not by `up --infra`; the services export to it while it answers.

A second stack in a temporary folder on shifted ports runs the Zipkin (its jar
from the shared stack's cache), so the stack the other tests use is left alone.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.local.components import Layout
from deploy.local.services import service_components
from deploy.local.stack import INFRASTRUCTURE, components, read_env
from deploy.local.stack import ROOT as STACK_ROOT

ROOT = Path(__file__).resolve().parents[2]
OFFSET = 5800  # above the ephemeral range, see test_local_stack


def run_stack(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "deploy.local", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


@pytest.fixture
def side_stack(tmp_path: Path) -> Iterator[tuple[dict[str, str], Path]]:
    folder = tmp_path / "devstack"
    folder.mkdir()
    shared = STACK_ROOT / "cache"  # the 131 MB jar, downloaded once
    shared.mkdir(parents=True, exist_ok=True)
    (folder / "cache").symlink_to(shared)
    env = {key: value for key, value in os.environ.items() if not key.endswith(("_URL", "_SERVERS"))}
    env.pop("OTEL_EXPORTER", None)
    env.update(DEVSTACK_DIR=str(folder), DEVSTACK_PORT_OFFSET=str(OFFSET))
    yield env, folder
    run_stack(env, "down", "--only", "zipkin")


def test_zipkin_is_part_of_up_but_not_of_up_infra() -> None:
    assert "zipkin" in {component.name for component in components()}
    assert "zipkin" not in INFRASTRUCTURE


@pytest.mark.slow
def test_the_services_export_to_the_stacks_zipkin_while_it_answers(
    side_stack: tuple[dict[str, str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    env, folder = side_stack
    started = run_stack(env, "up", "--only", "zipkin")
    assert started.returncode == 0, started.stdout + started.stderr
    layout = Layout(folder)
    endpoints = read_env(layout)
    zipkin_url = f"http://127.0.0.1:{59411 + OFFSET}"
    assert endpoints["ZIPKIN_URL"] == zipkin_url
    assert endpoints["OTEL_EXPORTER_ZIPKIN_ENDPOINT"] == f"{zipkin_url}/api/v2/spans"
    with urllib.request.urlopen(f"{zipkin_url}/health", timeout=5) as answer:  # noqa: S310 - loopback
        assert answer.status == 200

    monkeypatch.delenv("OTEL_EXPORTER", raising=False)
    services = service_components(OFFSET, read_env)
    for service in services:
        launch = service.launch(layout)
        assert launch.env["OTEL_EXPORTER"] == "zipkin", service.name
        assert launch.env["OTEL_EXPORTER_ZIPKIN_ENDPOINT"] == f"{zipkin_url}/api/v2/spans"
    # A person's own choice wins.
    monkeypatch.setenv("OTEL_EXPORTER", "console")
    assert services[0].launch(layout).env["OTEL_EXPORTER"] == "console"

    # Once Zipkin is down, services started then export nothing (no failing post per batch).
    stopped = run_stack(env, "down", "--only", "zipkin")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    with contextlib.suppress(OSError), urllib.request.urlopen(f"{zipkin_url}/health", timeout=2):  # noqa: S310
        pytest.fail("zipkin still answers after down")
    for service in services:
        assert "OTEL_EXPORTER" not in service.launch(layout).env, service.name
