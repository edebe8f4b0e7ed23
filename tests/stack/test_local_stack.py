"""The docker-free stack: `up` is idempotent, `down` stops exactly what it started.

These tests run a second, small stack (Redis and PostgreSQL) in a temporary
folder on shifted ports, so the stack the other tests use keeps running.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STACK_VARIABLES = (
    "DATABASE_URL",
    "REDIS_URL",
    "KAFKA_BOOTSTRAP_SERVERS",
    "SEARCH_URL",
    "OPENSEARCH_URL",
    "ELASTICSEARCH_URL",
    "SEARCH_ENGINE",
)


def run_stack(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "deploy.local", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def pids(folder: Path) -> dict[str, int]:
    return {path.stem: int(path.read_text().split()[0]) for path in (folder / "run").glob("*.pid")}


def alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()


def process_group(pgid: int) -> list[int]:
    """The live processes of one process group (the stack starts each server in its own)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # exited while we looked
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(stat.parent.name))
    return members


# Offsets 5568-6124 put every port of a side stack (55432 + offset … 59411 + offset) above Linux's
# ephemeral range (32768-60999), so no client connection's local port can be holding one.
OFFSET = 5600


@pytest.fixture
def side_stack(tmp_path: Path) -> Iterator[dict[str, str]]:
    env = {key: value for key, value in os.environ.items() if key not in STACK_VARIABLES}
    env.update(DEVSTACK_DIR=str(tmp_path / "devstack"), DEVSTACK_PORT_OFFSET=str(OFFSET))
    yield env
    run_stack(env, "down")


@pytest.mark.slow
def test_up_twice_reuses_the_running_servers_and_down_stops_them(side_stack: dict[str, str]) -> None:
    folder = Path(side_stack["DEVSTACK_DIR"])
    first = run_stack(side_stack, "up", "--only", "postgres", "redis")
    assert first.returncode == 0, first.stderr
    started = pids(folder)
    assert set(started) == {"postgres", "redis"}
    assert all(alive(pid) for pid in started.values())
    assert f"REDIS_URL=redis://127.0.0.1:{56379 + OFFSET}/0" in first.stdout

    second = run_stack(side_stack, "up", "--only", "postgres", "redis")
    assert second.returncode == 0, second.stderr
    assert second.stdout.count("already running") == 2
    assert pids(folder) == started

    status = run_stack(side_stack, "status", "--only", "postgres", "redis")
    assert status.returncode == 0
    assert status.stdout.count("ready pid") == 2

    stopped = run_stack(side_stack, "down", "--only", "postgres", "redis")
    assert stopped.returncode == 0, stopped.stderr
    assert not any(alive(pid) for pid in started.values())
    assert not list((folder / "run").glob("*.pid"))
    assert run_stack(side_stack, "status", "--only", "redis").returncode == 1


@pytest.mark.slow
def test_a_configured_reachable_url_is_used_instead_of_starting_a_server(
    side_stack: dict[str, str], redis_url: str
) -> None:
    result = run_stack({**side_stack, "REDIS_URL": redis_url}, "up", "--only", "redis")
    assert result.returncode == 0, result.stderr
    assert f"using {redis_url} from $REDIS_URL" in result.stdout
    assert pids(Path(side_stack["DEVSTACK_DIR"])) == {}


def test_a_server_that_dies_while_starting_is_reported_with_its_log(side_stack: dict[str, str]) -> None:
    with socket.socket() as squatter:  # something else holds the port: redis exits at once
        squatter.bind(("127.0.0.1", 56379 + OFFSET))
        squatter.listen()
        result = run_stack(side_stack, "up", "--only", "redis")
    assert result.returncode == 1
    assert "redis exited with" in result.stderr
    assert "Address already in use" in result.stderr


def test_search_url_names_the_default_engine_and_both_engines_have_their_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from deploy.local.stack import INFRASTRUCTURE, components

    for engine in ("opensearch", "elasticsearch"):
        monkeypatch.setenv("SEARCH_ENGINE", engine)
        servers = {c.name: c for c in components()}
        assert {"opensearch", "elasticsearch"} <= set(INFRASTRUCTURE)
        assert servers["opensearch"].env_var == "OPENSEARCH_URL"
        assert servers["elasticsearch"].env_var == "ELASTICSEARCH_URL"
        assert [name for name, c in servers.items() if "SEARCH_URL" in c.aliases] == [engine]
    monkeypatch.delenv("SEARCH_ENGINE")
    assert "SEARCH_URL" in {c.name: c for c in components()}["opensearch"].aliases


def test_an_unknown_search_engine_is_refused_by_name(side_stack: dict[str, str]) -> None:
    result = run_stack({**side_stack, "SEARCH_ENGINE": "solr"}, "up", "--only", "redis")
    assert result.returncode == 1
    assert "SEARCH_ENGINE='solr'" in result.stderr
    assert not (Path(side_stack["DEVSTACK_DIR"]) / "run").exists()


def fake_jdk(folder: Path, version: str) -> Path:
    (folder / "bin").mkdir(parents=True)
    (folder / "bin" / "java").write_text("")
    (folder / "release").write_text(f'IMPLEMENTOR="Test"\nJAVA_VERSION="{version}"\n')
    return folder


def test_elasticsearch_runs_on_a_jdk_21_or_newer_and_names_a_too_old_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from deploy.local.elasticsearch import find_java_home

    monkeypatch.setenv("ES_JAVA_HOME", str(fake_jdk(tmp_path / "jdk-21", "21.0.4")))
    assert find_java_home() == tmp_path / "jdk-21"
    for old in ("17.0.15", "1.8.0_402"):
        monkeypatch.setenv("ES_JAVA_HOME", str(fake_jdk(tmp_path / f"jdk-{old}", old)))
        with pytest.raises(RuntimeError, match=r"is not a JDK 21 or newer"):
            find_java_home()
    monkeypatch.setenv("ES_JAVA_HOME", str(tmp_path / "nothing-here"))
    with pytest.raises(RuntimeError, match=r"is not a JDK 21 or newer"):
        find_java_home()


@pytest.mark.slow
def test_elasticsearch_starts_beside_the_stack_and_down_stops_the_launcher_and_the_node(
    side_stack: dict[str, str],
) -> None:
    folder = Path(side_stack["DEVSTACK_DIR"])
    shared_cache = ROOT / ".devstack" / "cache"
    if shared_cache.is_dir():  # skip a second download and unpack of the same release
        folder.mkdir(parents=True)
        (folder / "cache").symlink_to(shared_cache)
    result = run_stack(side_stack, "up", "--only", "elasticsearch")
    assert result.returncode == 0, result.stderr + result.stdout
    assert f"ELASTICSEARCH_URL=http://127.0.0.1:{59210 + OFFSET}" in result.stdout
    assert "SEARCH_URL=" not in result.stdout.replace("ELASTICSEARCH_URL=", "")  # not the default engine
    launcher = pids(folder)["elasticsearch"]
    group = process_group(launcher)
    assert len(group) >= 2  # the launcher JVM and the node JVM it started

    stopped = run_stack(side_stack, "down", "--only", "elasticsearch")
    assert stopped.returncode == 0, stopped.stderr
    assert not any(alive(pid) for pid in group)


def test_a_reachable_search_url_stands_in_for_the_default_engine(
    side_stack: dict[str, str], search_engine_url: str, request: pytest.FixtureRequest
) -> None:
    engine = request.node.callspec.params["search_engine_url"]
    env = {**side_stack, "SEARCH_ENGINE": engine, "SEARCH_URL": search_engine_url}
    result = run_stack(env, "up", "--only", engine)
    assert result.returncode == 0, result.stderr
    assert f"using {search_engine_url} from $SEARCH_URL" in result.stdout
    assert pids(Path(side_stack["DEVSTACK_DIR"])) == {}


@pytest.mark.slow
def test_up_reuses_a_live_server_that_is_not_ready_instead_of_restarting_it(
    side_stack: dict[str, str],
) -> None:
    # A frozen Redis is alive but does not answer: what a relay waiting for Kafka looks like
    # to `up`. Restarting it would hide whether it recovers by itself.
    folder = Path(side_stack["DEVSTACK_DIR"])
    first = run_stack(side_stack, "up", "--only", "redis")
    assert first.returncode == 0, first.stderr
    pid = pids(folder)["redis"]
    os.killpg(pid, signal.SIGSTOP)
    try:
        again = run_stack(side_stack, "up", "--only", "redis")
        assert again.returncode == 0, again.stderr
        assert f"redis         running (pid {pid}) but not ready yet" in again.stdout
        assert "starting" not in again.stdout
        assert pids(folder) == {"redis": pid}
        assert alive(pid)
    finally:
        os.killpg(pid, signal.SIGCONT)
    status = run_stack(side_stack, "status", "--only", "redis")
    assert status.returncode == 0, status.stdout


def test_pruning_takes_the_topics_tests_made_and_never_the_stacks_own() -> None:
    from deploy.local.kafka import _TEST_TOPIC

    made_by_tests = [
        "suitefda9345c.order",
        "e2e08000081.stock",
        "saga81e5be5f.saga.dead-letters",
        "bench1a2b3c4d.payment",
    ]
    stack_own = [
        "fulfilment.order",
        "fulfilment.projector.dlq",
        "saga.dead-letters",
        "__consumer_offsets",
        "order",
    ]
    assert [topic for topic in made_by_tests + stack_own if _TEST_TOPIC.match(topic)] == made_by_tests
