"""Elasticsearch for the docker-free local stack: a real single-node server.

The server is the `integ-test-zip` distribution from Maven Central: no bundled
JDK, no extra modules. It carries only the core analysis chain (standard,
simple, stop, whitespace analyzers; lowercase and stop filters), so the read
models keep to that set; there is no painless, `_reindex`, `_delete_by_query`,
language analyzers or `GET /` (the root endpoint lives in a module the zip
leaves out). Everything the read models use is core: external versioning,
aliases, bool/nested/match queries, search_after, point in time, aggregations.

Elasticsearch 9 needs Java 21 or newer. The stack looks for such a JDK
(`ES_JAVA_HOME`, `JAVA_HOME`, `java` on the PATH, the usual install folders)
and, when there is only a Java 17, runs the 8.19 line instead, which is the
newest that accepts it. Like OpenSearch it refuses root; see
`system.drop_root`. Standard library only, like the rest of `deploy.local`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from deploy.local.components import Component, Launch, Layout, run_checked
from deploy.local.system import drop_root, own_data_dir

__all__ = ["NODE_USER", "VERSION", "VERSION_ON_JAVA_17", "Runtime", "component", "find_runtime", "is_ready"]

VERSION = "9.2.0"  # the docker-compose image runs the same version
VERSION_ON_JAVA_17 = "8.19.21"  # the newest line that still runs on Java 17
NODE_USER = "elasticsearch"  # only when root and user namespaces are unavailable
HEAP = ("-Xms512m", "-Xmx512m")  # next to OpenSearch, Kafka and PostgreSQL on 2 cores

_MARKER = ".stack-installed"
# Where JDKs usually live on Linux: Debian/Ubuntu packages, Adoptium and Oracle
# packages, tarballs unpacked by hand or by CI images.
_JDK_FOLDERS = ("/usr/lib/jvm/*", "/usr/java/*", "/usr/local/lib/jvm/*", "/opt/*", "/opt/java/*")


@dataclass(frozen=True)
class Runtime:
    """Which Elasticsearch the stack runs, and on which JDK."""

    version: str
    java_home: Path
    java_major: int


def component(host: str = "127.0.0.1", port: int = 59210) -> Component:
    """The Elasticsearch node: HTTP on host:port, transport on loopback port+100."""

    def prepare(layout: Layout) -> None:
        runtime = find_runtime()
        _install(layout.cache("elasticsearch"), runtime.version)
        _configure(layout, runtime, host, port)

    return Component(
        name="elasticsearch",
        env_var="ELASTICSEARCH_URL",
        url=f"http://{host}:{port}",
        prepare=prepare,
        launch=_launch,
        is_ready=is_ready,
        # Two JVMs (the launcher and the node) on 2 cores shared with OpenSearch
        # and Kafka, which start at the same moment: alone it is ready in ~15 s.
        start_timeout=240.0,
    )


def is_ready(url: str) -> bool:
    """Serving once cluster health is yellow or green, from a server that says it is Elasticsearch.

    The product header keeps an OpenSearch configured as ELASTICSEARCH_URL from
    passing for one; `GET /` is not there to ask.
    """
    try:
        with urllib.request.urlopen(f"{url}/_cluster/health", timeout=2.0) as response:  # noqa: S310 - loopback
            product = response.headers.get("X-elastic-product")
            return product == "Elasticsearch" and json.load(response).get("status") in ("green", "yellow")
    except (urllib.error.URLError, OSError, ValueError):
        return False


# --- which JDK, which version -----------------------------------------------------------


def _java_major(home: Path) -> int | None:
    """The feature version of the JDK at `home`, read from its `release` file (no JVM started)."""
    try:
        text = (home / "release").read_text()
    except OSError:
        return None
    found = re.search(r'^JAVA_VERSION="(\d+)(?:\.(\d+))?', text, re.MULTILINE)
    if found is None or not (home / "bin" / "java").is_file():
        return None
    major = int(found.group(1))
    return int(found.group(2) or 0) if major == 1 else major  # "1.8.0" is Java 8


def _jdk_candidates() -> list[Path]:
    homes = [Path(os.environ[name]) for name in ("JAVA_HOME",) if os.environ.get(name)]
    java = shutil.which("java")
    if java:
        homes.append(Path(os.path.realpath(java)).parent.parent)
    for pattern in _JDK_FOLDERS:
        homes.extend(sorted(Path("/").glob(pattern.lstrip("/"))))
    return homes


def find_runtime() -> Runtime:
    """Elasticsearch 9 on the newest JDK 21+ found, else 8.19 on a JDK 17; ES_JAVA_HOME wins."""
    configured = os.environ.get("ES_JAVA_HOME")
    if configured:
        major = _java_major(Path(configured))
        if major is None or major < 17:
            raise RuntimeError(f"elasticsearch: ES_JAVA_HOME={configured} is not a JDK 17 or newer")
        return Runtime(VERSION if major >= 21 else VERSION_ON_JAVA_17, Path(configured), major)
    found = [(major, home) for home in _jdk_candidates() if (major := _java_major(home)) is not None]
    if not found:
        raise RuntimeError(_NO_JDK)
    major, home = max(found, key=lambda pair: pair[0])
    if major >= 21:
        return Runtime(VERSION, home, major)
    if major >= 17:
        return Runtime(VERSION_ON_JAVA_17, home, major)
    raise RuntimeError(_NO_JDK)


_NO_JDK = (
    f"elasticsearch: no JDK 21 or newer found (Elasticsearch {VERSION} needs one; with only a JDK 17 "
    f"the stack runs {VERSION_ON_JAVA_17}). Install one, e.g. `apt-get install openjdk-21-jdk-headless` "
    "(Debian 13 / Ubuntu 24.04) or Temurin 21/25 from https://adoptium.net, or point ES_JAVA_HOME at it"
)


# --- install (cache, shared by every data dir) -------------------------------------


def _home(cache: Path, version: str) -> Path:
    return cache / f"elasticsearch-{version}"


def _install(cache: Path, version: str) -> None:
    home = _home(cache, version)
    if (home / _MARKER).exists():
        return
    if shutil.which("mvn") is None:
        raise RuntimeError("elasticsearch: Maven (mvn) is needed to fetch the server from Maven Central")
    distribution = f"org.elasticsearch.distribution.integ-test-zip:elasticsearch:{version}:zip"
    cache.mkdir(parents=True, exist_ok=True)
    # Unpack in a scratch folder and rename at the end, so an interrupted
    # prepare never leaves a half-built home that looks installed.
    with tempfile.TemporaryDirectory(dir=cache, prefix=".install-") as scratch:
        work = Path(scratch)
        run_checked(
            ["mvn", "-B", "-q", "dependency:copy", f"-Dartifact={distribution}", f"-DoutputDirectory={work}"],
            cwd=work,
        )
        _unzip(work / f"elasticsearch-{version}.zip", work)
        staged = work / f"elasticsearch-{version}"
        # Readable by the unprivileged node user whatever the umask was.
        for path in [staged, *staged.rglob("*")]:
            path.chmod(path.stat().st_mode | (0o555 if path.is_dir() else 0o444))
        (staged / _MARKER).write_text(f"{distribution}\n")
        if home.exists():  # a leftover without marker
            shutil.rmtree(home)
        staged.rename(home)


def _unzip(archive: Path, into: Path) -> None:
    """Extract keeping the exec bits (zipfile drops them): bin/ holds the launcher scripts."""
    with zipfile.ZipFile(archive) as zipped:
        for info in zipped.infolist():
            target = Path(zipped.extract(info, into))
            mode = info.external_attr >> 16
            if mode and not info.is_dir():
                target.chmod(mode & 0o777)


# --- configure (per data dir) --------------------------------------------------------


def _configure(layout: Layout, runtime: Runtime, host: str, port: int) -> None:
    data = layout.data("elasticsearch")
    config = data / "config"
    # One data folder per major version: 8.19 cannot open what 9 wrote, and the
    # JDK found may change between runs.
    node_data = data / f"data-{runtime.version.split('.')[0]}"
    for folder in (config, config / "jvm.options.d", node_data, data / "logs", data / "tmp"):
        folder.mkdir(parents=True, exist_ok=True)
    home = _home(layout.cache("elasticsearch"), runtime.version)
    for name in ("jvm.options", "log4j2.properties"):
        shutil.copy2(home / "config" / name, config / name)
    (config / "jvm.options.d" / "stack.options").write_text(
        "\n".join([*HEAP, f"-XX:ErrorFile={data / 'logs' / 'hs_err_pid%p.log'}"]) + "\n"
    )
    settings: dict[str, object] = {
        "cluster.name": "local-stack",
        "node.name": "local-stack-node",
        "path.data": str(node_data),
        "path.logs": str(data / "logs"),
        "http.host": host,
        "http.port": port,
        # Transport stays on loopback: that keeps the node in development mode, so
        # the production bootstrap checks (vm.max_map_count, ...) are not enforced.
        "transport.host": "127.0.0.1",
        "transport.port": port + 100,
        "discovery.type": "single-node",
        "bootstrap.memory_lock": False,
        # Plain HTTP on loopback, like the other servers of the stack; without
        # this the first start would generate certificates and a password.
        "xpack.security.enabled": False,
        # A fuller dev disk must not flip indices to read-only (flood stage).
        "cluster.routing.allocation.disk.threshold_enabled": False,
    }
    # JSON scalars are valid YAML, and quote paths safely.
    (config / "elasticsearch.yml").write_text("".join(f"{k}: {json.dumps(v)}\n" for k, v in settings.items()))
    server_jar = home / "lib" / f"elasticsearch-{runtime.version}.jar"
    own_data_dir("elasticsearch", NODE_USER, home, data, server_jar)


# --- launch --------------------------------------------------------------------------


def _launch(layout: Layout) -> Launch:
    runtime = find_runtime()
    home = _home(layout.cache("elasticsearch"), runtime.version)
    data = layout.data("elasticsearch")
    # bin/elasticsearch execs the launcher JVM (small heap), which starts the node
    # JVM as its child and stays as its parent: the recorded PID is the launcher,
    # and `down` signals the whole process group, so both stop.
    env = {
        "ES_JAVA_HOME": str(runtime.java_home),
        "ES_PATH_CONF": str(data / "config"),
        "ES_TMPDIR": str(data / "tmp"),
        "HOME": str(data),  # the node user may have none (or root's, unwritable to it)
    }
    argv = [*drop_root(NODE_USER, map_user=True), str(home / "bin" / "elasticsearch")]
    return Launch(argv=argv, env=env, cwd=data)
