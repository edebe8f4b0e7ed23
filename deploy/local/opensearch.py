"""OpenSearch for the docker-free local stack: a real single-node 2.19 server.

Everything comes from Maven Central, the one Java source reachable here:

* the server is the `integ-test-zip` distribution (no JDK, no security plugin,
  no extra plugins; the node runs on the machine's Java 17);
* that zip carries only the transport-netty4 module, so the modules a search
  projection needs (analyzers, painless scripts, extra field types, reindex)
  are assembled from their published jars by `opensearch/pom.xml`, with the
  descriptor and security policy the real distribution would ship.

OpenSearch refuses to run as root and has no override; see `system.drop_root`
for how a root stack still starts it with the JVM as the recorded process.
What it shares with Elasticsearch (fetch, unpack, node settings, the health
probe) is in `search_node`. Standard library only, like the rest of `deploy.local`.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from deploy.local.components import Component, Launch, Layout, run_checked
from deploy.local.search_node import Distribution, cluster_ready
from deploy.local.system import drop_root

__all__ = ["NODE_USER", "VERSION", "component", "is_ready"]

# 2.19.6 is the newest 2.19 on Maven Central and the last line that runs on Java 17
# (3.x needs Java 21).
VERSION = "2.19.6"
DISTRIBUTION = f"org.opensearch.distribution.integ-test-zip:opensearch:{VERSION}:zip"
NODE_USER = "opensearch"  # only when root and user namespaces are unavailable
HEAP = ("-Xms512m", "-Xmx1g")  # shares 2 cores with Postgres, Redis and Kafka

_NODE = Distribution("opensearch", VERSION, DISTRIBUTION, NODE_USER)
_POM = Path(__file__).with_name("opensearch") / "pom.xml"


@dataclass(frozen=True)
class _Module:
    name: str
    artifact: str  # under org.opensearch.plugin on Maven Central
    classname: str  # the Plugin class in that 2.19 jar
    description: str
    extends: str = ""  # parent plugin whose class loader this one reuses
    policy: str = ""  # permissions the module needs under the security manager


_MODULES = (
    _Module(
        "lang-painless",
        "lang-painless",
        "org.opensearch.painless.PainlessPlugin",
        "An easy, safe and fast scripting language for OpenSearch",
        policy='permission java.lang.RuntimePermission "createClassLoader";\n'
        'permission java.lang.RuntimePermission "getClassLoader";',
    ),
    _Module(
        "analysis-common",
        "analysis-common",
        "org.opensearch.analysis.common.CommonAnalysisPlugin",
        'Adds "built in" analyzers to OpenSearch.',
        extends="lang-painless",  # it ships a painless whitelist extension
    ),
    _Module(
        "mapper-extras",
        "mapper-extras-client",
        "org.opensearch.index.mapper.MapperExtrasPlugin",
        "Adds advanced field mappers",
    ),
    _Module(
        "reindex",
        "reindex-client",
        "org.opensearch.index.reindex.ReindexPlugin",
        "The Reindex module adds APIs to reindex from one index to another or update documents in place.",
    ),
)


def component(host: str = "127.0.0.1", port: int = 59200) -> Component:
    """The OpenSearch node: HTTP on host:port, transport on loopback port+100."""

    def prepare(layout: Layout) -> None:
        _NODE.install(layout, _add_modules)
        _NODE.configure(layout, host, port, copied=("log4j2.properties",))

    return Component(
        name="opensearch",
        env_var="OPENSEARCH_URL",
        url=f"http://{host}:{port}",
        prepare=prepare,
        launch=_launch,
        is_ready=is_ready,
        # Alone it is ready in ~20 s; on 2 cores it starts beside Elasticsearch and Kafka.
        start_timeout=240.0,
    )


def is_ready(url: str) -> bool:
    """Serving once cluster health is yellow or green, from a server that does not name itself.

    An Elasticsearch answers the same request but names itself in a header; it
    does not pass for OpenSearch.
    """
    return cluster_ready(url, product=None)


# --- install (cache, shared by every data dir) -------------------------------------


def _add_modules(staged: Path, scratch: Path) -> None:
    """Assemble the modules the read models need into the unpacked server, from their jars."""
    if any((staged / "plugins").iterdir()):
        raise RuntimeError(f"opensearch: expected no bundled plugins (security) in {DISTRIBUTION}")
    lib_jars = {_jar_stem(jar.name) for jar in (staged / "lib").glob("*.jar")}
    for module in _MODULES:
        _add_module(staged / "modules" / module.name, module, lib_jars, scratch / "jars" / module.name)


def _jar_stem(filename: str) -> str:
    """`lucene-core-9.12.3.jar` -> `lucene-core`: compare jars regardless of version."""
    return re.sub(r"-\d[\w.\-]*\.jar$", "", filename)


def _add_module(target: Path, module: _Module, lib_jars: set[str], download: Path) -> None:
    download.mkdir(parents=True)
    run_checked(
        [
            "mvn",
            "-B",
            "-q",
            "-f",
            str(_POM),
            "dependency:copy-dependencies",
            "-Dmodule.groupId=org.opensearch.plugin",
            f"-Dmodule.artifactId={module.artifact}",
            f"-Dopensearch.version={VERSION}",
            f"-DoutputDirectory={download}",
        ],
        cwd=download,
    )
    target.mkdir(parents=True)
    for jar in download.glob("*.jar"):
        # A jar the server already has must not be loaded twice (jar hell), and a
        # child plugin sees its parent's jars through the parent class loader.
        if _jar_stem(jar.name) in lib_jars or (module.extends and _jar_stem(jar.name) != module.artifact):
            continue
        shutil.copy2(jar, target / jar.name)
    descriptor = {
        "description": module.description,
        "version": VERSION,
        "name": module.name,
        "classname": module.classname,
        "java.version": "11",
        "opensearch.version": VERSION,
        "custom.foldername": "",
        "extended.plugins": module.extends,
        "has.native.controller": "false",
    }
    (target / "plugin-descriptor.properties").write_text("".join(f"{k}={v}\n" for k, v in descriptor.items()))
    if module.policy:
        (target / "plugin-security.policy").write_text(f"grant {{\n{module.policy}\n}};\n")


# --- launch --------------------------------------------------------------------------


def _java() -> str:
    # OpenSearch 2.19 needs the security manager, which Java 24+ removed: a
    # dedicated OPENSEARCH_JAVA_HOME wins over a JAVA_HOME set for other tools.
    for variable in ("OPENSEARCH_JAVA_HOME", "JAVA_HOME"):
        if os.environ.get(variable):
            return str(Path(os.environ[variable]) / "bin" / "java")
    return shutil.which("java") or "java"


def _launch(layout: Layout) -> Launch:
    home = _NODE.home(layout)
    data = layout.data("opensearch")
    config = data / "config"
    # What bin/opensearch + JvmOptionsParser would produce, inlined so that the
    # process the stack starts is the JVM itself (no wrapper shell, no extra JVM
    # runs to compute options).
    jvm = [
        *HEAP,
        "-XX:MaxDirectMemorySize=512m",  # half the max heap, the launcher's default
        "-XX:+UseG1GC",
        "-XX:G1ReservePercent=25",
        "-XX:InitiatingHeapOccupancyPercent=30",
        # No -XX:+AlwaysPreTouch: it would commit the whole initial heap up front.
        "-Xss1m",
        "-Djava.awt.headless=true",
        "-Dfile.encoding=UTF-8",
        "-Djna.nosys=true",
        "-XX:-OmitStackTraceInFastThrow",
        "-XX:+ShowCodeDetailsInExceptionMessages",
        "-Dio.netty.noUnsafe=true",
        "-Dio.netty.noKeySetOptimization=true",
        "-Dio.netty.recycler.maxCapacityPerThread=0",
        "-Dio.netty.allocator.numDirectArenas=0",
        "-Dlog4j.shutdownHookEnabled=false",
        "-Dlog4j2.disable.jmx=true",
        "-Djava.locale.providers=SPI,COMPAT",
        "-Djava.security.manager=allow",  # needed on Java 18-23, accepted by 17
        "-Djava.util.concurrent.ForkJoinPool.common.threadFactory="
        "org.opensearch.secure_sm.SecuredForkJoinWorkerThreadFactory",
        "-Dopensearch.networkaddress.cache.ttl=60",
        "-Dopensearch.networkaddress.cache.negative.ttl=10",
        f"-Djava.io.tmpdir={data / 'tmp'}",
        f"-XX:ErrorFile={data / 'logs' / 'hs_err_pid%p.log'}",
        f"-Dopensearch.path.home={home}",
        f"-Dopensearch.path.conf={config}",
        "-Dopensearch.distribution.type=zip",
        "-Dopensearch.bundled_jdk=false",
        "-cp",
        f"{home / 'lib'}/*",
        "org.opensearch.bootstrap.OpenSearch",
    ]
    # HOME: the node user may have none (or root's, unwritable to it).
    env = {"OPENSEARCH_HOME": str(home), "OPENSEARCH_PATH_CONF": str(config), "HOME": str(data)}
    return Launch(argv=[*drop_root(NODE_USER), _java(), *jvm], env=env, cwd=data)
