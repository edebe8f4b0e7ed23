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
OpenSearch it refuses root; see `system.drop_root`. What it shares with
OpenSearch (fetch, unpack, node settings, the health probe) is in
`search_node`. Standard library only, like the rest of `deploy.local`.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from deploy.local.components import Component, Launch, Layout
from deploy.local.search_node import Distribution, cluster_ready
from deploy.local.system import drop_root

__all__ = ["JAVA_MINIMUM", "NODE_USER", "VERSION", "component", "find_java_home", "is_ready"]

VERSION = "9.2.0"  # the docker-compose image runs the same version
DISTRIBUTION = f"org.elasticsearch.distribution.integ-test-zip:elasticsearch:{VERSION}:zip"
JAVA_MINIMUM = 21
NODE_USER = "elasticsearch"  # only when root and user namespaces are unavailable
HEAP = ("-Xms512m", "-Xmx512m")  # next to OpenSearch, Kafka and PostgreSQL on 2 cores

_NODE = Distribution("elasticsearch", VERSION, DISTRIBUTION, NODE_USER)

# Where JDKs usually live on Linux: Debian/Ubuntu packages, Adoptium and Oracle
# packages, tarballs unpacked by hand or by CI images.
_JDK_FOLDERS = ("/usr/lib/jvm/*", "/usr/java/*", "/usr/local/lib/jvm/*", "/opt/*", "/opt/java/*")


def component(host: str = "127.0.0.1", port: int = 59210) -> Component:
    """The Elasticsearch node: HTTP on host:port, transport on loopback port+100."""

    def prepare(layout: Layout) -> None:
        find_java_home()  # fail before a download when the node could not run anyway
        _NODE.install(layout)
        data = layout.data("elasticsearch")
        _NODE.configure(
            layout,
            host,
            port,
            copied=("jvm.options", "log4j2.properties"),
            written={
                "jvm.options.d/stack.options": "\n".join(
                    [*HEAP, f"-XX:ErrorFile={data / 'logs' / 'hs_err_pid%p.log'}"]
                )
                + "\n"
            },
            # Plain HTTP on loopback, like the other servers of the stack; without
            # this the first start would generate certificates and a password.
            settings={"xpack.security.enabled": False},
        )

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
    return cluster_ready(url, product="Elasticsearch")


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


# --- launch --------------------------------------------------------------------------


def _launch(layout: Layout) -> Launch:
    home = _NODE.home(layout)
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
