"""Elasticsearch for the docker-free local stack: a real single-node server.

The server is the `integ-test-zip` distribution from Maven Central: no bundled
JDK, no extra modules. It carries only the core analysis chain (standard,
simple, stop, whitespace analyzers; lowercase and stop filters), so the read
models keep to that set; there is no painless, `_reindex`, `_delete_by_query`,
language analyzers or `GET /` (the root endpoint lives in a module the zip
leaves out). Everything the read models use is core: external versioning,
aliases, bool/nested/match queries, search_after, point in time, aggregations.

Elasticsearch 9 needs Java 21 or newer, while OpenSearch 2.19 needs the Java
17 it was built for, so the stack looks for a second JDK (`ES_JAVA_HOME`,
`JAVA_HOME`, `java` on the PATH, the usual install folders) and fails with
what to install when there is none. The 8.19 line would run on Java 17, but
the suite's client (elasticsearch-py 9) speaks only to 9.x servers. Like
OpenSearch it refuses root; see `system.drop_root`. Standard library only,
like the rest of `deploy.local`.
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
from pathlib import Path

from deploy.local.components import Component, Launch, Layout, run_checked
from deploy.local.system import drop_root, own_data_dir

__all__ = ["JAVA_MINIMUM", "NODE_USER", "VERSION", "component", "find_java_home", "is_ready"]

VERSION = "9.2.0"  # the docker-compose image runs the same version
DISTRIBUTION = f"org.elasticsearch.distribution.integ-test-zip:elasticsearch:{VERSION}:zip"
JAVA_MINIMUM = 21
NODE_USER = "elasticsearch"  # only when root and user namespaces are unavailable
HEAP = ("-Xms512m", "-Xmx512m")  # next to OpenSearch, Kafka and PostgreSQL on 2 cores

_MARKER = ".stack-installed"
# Where JDKs usually live on Linux: Debian/Ubuntu packages, Adoptium and Oracle
# packages, tarballs unpacked by hand or by CI images.
_JDK_FOLDERS = ("/usr/lib/jvm/*", "/usr/java/*", "/usr/local/lib/jvm/*", "/opt/*", "/opt/java/*")


def component(host: str = "127.0.0.1", port: int = 59210) -> Component:
    """The Elasticsearch node: HTTP on host:port, transport on loopback port+100."""

    def prepare(layout: Layout) -> None:
        find_java_home()  # fail before a download when the node could not run anyway
        _install(layout.cache("elasticsearch"))
        _configure(layout, host, port)

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
    homes = [Path(os.environ["JAVA_HOME"])] if os.environ.get("JAVA_HOME") else []
    java = shutil.which("java")
    if java:
        homes.append(Path(os.path.realpath(java)).parent.parent)
    for pattern in _JDK_FOLDERS:
        homes.extend(sorted(Path("/").glob(pattern.lstrip("/"))))
    return homes


def find_java_home() -> Path:
    """The JDK the node runs on: ES_JAVA_HOME, else the newest JDK 21+ found."""
    configured = os.environ.get("ES_JAVA_HOME")
    if configured:
        major = _java_major(Path(configured))
        if major is None or major < JAVA_MINIMUM:
            raise RuntimeError(
                f"elasticsearch: ES_JAVA_HOME={configured} is not a JDK {JAVA_MINIMUM} or newer"
            )
        return Path(configured)
    found = [(major, home) for home in _jdk_candidates() if (major := _java_major(home)) is not None]
    newest = max(found, key=lambda pair: pair[0], default=None)
    if newest is None or newest[0] < JAVA_MINIMUM:
        raise RuntimeError(
            f"elasticsearch: Elasticsearch {VERSION} needs a JDK {JAVA_MINIMUM} or newer beside the JDK 17 "
            "that OpenSearch and Kafka use, and none was found. Install one, e.g. "
            "`apt-get install openjdk-21-jdk-headless` (Debian 13, Ubuntu 24.04) or Temurin 21/25 from "
            "https://adoptium.net (`apt-get install temurin-21-jdk` with its apt repository), "
            "or point ES_JAVA_HOME at one"
        )
    return newest[1]


# --- install (cache, shared by every data dir) -------------------------------------


def _home(cache: Path) -> Path:
    return cache / f"elasticsearch-{VERSION}"


def _install(cache: Path) -> None:
    home = _home(cache)
    if (home / _MARKER).exists():
        return
    if shutil.which("mvn") is None:
        raise RuntimeError("elasticsearch: Maven (mvn) is needed to fetch the server from Maven Central")
    cache.mkdir(parents=True, exist_ok=True)
    # Unpack in a scratch folder and rename at the end, so an interrupted
    # prepare never leaves a half-built home that looks installed.
    with tempfile.TemporaryDirectory(dir=cache, prefix=".install-") as scratch:
        work = Path(scratch)
        run_checked(
            ["mvn", "-B", "-q", "dependency:copy", f"-Dartifact={DISTRIBUTION}", f"-DoutputDirectory={work}"],
            cwd=work,
        )
        _unzip(work / f"elasticsearch-{VERSION}.zip", work)
        staged = work / f"elasticsearch-{VERSION}"
        # Readable by the unprivileged node user whatever the umask was.
        for path in [staged, *staged.rglob("*")]:
            path.chmod(path.stat().st_mode | (0o555 if path.is_dir() else 0o444))
        (staged / _MARKER).write_text(f"{DISTRIBUTION}\n")
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


def _configure(layout: Layout, host: str, port: int) -> None:
    data = layout.data("elasticsearch")
    config = data / "config"
    for folder in (config, config / "jvm.options.d", data / "data", data / "logs", data / "tmp"):
        folder.mkdir(parents=True, exist_ok=True)
    home = _home(layout.cache("elasticsearch"))
    for name in ("jvm.options", "log4j2.properties"):
        shutil.copy2(home / "config" / name, config / name)
    (config / "jvm.options.d" / "stack.options").write_text(
        "\n".join([*HEAP, f"-XX:ErrorFile={data / 'logs' / 'hs_err_pid%p.log'}"]) + "\n"
    )
    settings: dict[str, object] = {
        "cluster.name": "local-stack",
        "node.name": "local-stack-node",
        "path.data": str(data / "data"),
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
    server_jar = home / "lib" / f"elasticsearch-{VERSION}.jar"
    own_data_dir("elasticsearch", NODE_USER, home, data, server_jar)


# --- launch --------------------------------------------------------------------------


def _launch(layout: Layout) -> Launch:
    home = _home(layout.cache("elasticsearch"))
    data = layout.data("elasticsearch")
    # bin/elasticsearch execs the launcher JVM (small heap), which starts the node
    # JVM as its child and stays as its parent: the recorded PID is the launcher,
    # and `down` signals the whole process group, so both stop.
    env = {
        "ES_JAVA_HOME": str(find_java_home()),
        "ES_PATH_CONF": str(data / "config"),
        "ES_TMPDIR": str(data / "tmp"),
        "HOME": str(data),  # the node user may have none (or root's, unwritable to it)
    }
    argv = [*drop_root(NODE_USER, map_user=True), str(home / "bin" / "elasticsearch")]
    return Launch(argv=argv, env=env, cwd=data)
