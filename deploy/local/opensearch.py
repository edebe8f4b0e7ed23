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
Standard library only, like the rest of `deploy.local`.
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

__all__ = ["NODE_USER", "VERSION", "component"]

# 2.19.6 is the newest 2.19 on Maven Central and the last line that runs on Java 17
# (3.x needs Java 21).
VERSION = "2.19.6"
DISTRIBUTION = f"org.opensearch.distribution.integ-test-zip:opensearch:{VERSION}:zip"
NODE_USER = "opensearch"  # only when root and user namespaces are unavailable
HEAP = ("-Xms512m", "-Xmx1g")  # shares 2 cores with Postgres, Redis and Kafka

_POM = Path(__file__).with_name("opensearch") / "pom.xml"
_MARKER = ".stack-installed"


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
        _install(layout.cache("opensearch"))
        _configure(layout, host, port)

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
    """Serving once cluster health is yellow (unassigned replicas on one node) or green.

    An Elasticsearch answers the same request but names itself in a header; it
    does not pass for OpenSearch.
    """
    try:
        with urllib.request.urlopen(f"{url}/_cluster/health", timeout=2.0) as response:  # noqa: S310 - loopback
            if response.headers.get("X-elastic-product") is not None:
                return False
            return json.load(response).get("status") in ("green", "yellow")
    except (urllib.error.URLError, OSError, ValueError):
        return False


# --- install (cache, shared by every data dir) -------------------------------------


def _home(cache: Path) -> Path:
    return cache / f"opensearch-{VERSION}"


def _install(cache: Path) -> None:
    home = _home(cache)
    if (home / _MARKER).exists():
        return
    if shutil.which("mvn") is None:
        raise RuntimeError("opensearch: Maven (mvn) is needed to fetch the distribution from Maven Central")
    cache.mkdir(parents=True, exist_ok=True)
    # Assemble in a scratch folder and rename at the end, so an interrupted
    # prepare never leaves a half-built home that looks installed.
    with tempfile.TemporaryDirectory(dir=cache, prefix=".install-") as scratch:
        work = Path(scratch)
        _mvn("dependency:copy", f"-Dartifact={DISTRIBUTION}", f"-DoutputDirectory={work}", cwd=work)
        _unzip(work / f"opensearch-{VERSION}.zip", work)
        staged = work / f"opensearch-{VERSION}"
        if any((staged / "plugins").iterdir()):
            raise RuntimeError(f"opensearch: expected no bundled plugins (security) in {DISTRIBUTION}")
        lib_jars = {_jar_stem(jar.name) for jar in (staged / "lib").glob("*.jar")}
        for module in _MODULES:
            _add_module(staged / "modules" / module.name, module, lib_jars, work / "jars" / module.name)
        # Readable by the unprivileged node user whatever the umask was.
        for path in [staged, *staged.rglob("*")]:
            path.chmod(path.stat().st_mode | (0o555 if path.is_dir() else 0o444))
        (staged / _MARKER).write_text(f"{DISTRIBUTION}\n")
        if home.exists():  # a leftover without marker
            shutil.rmtree(home)
        staged.rename(home)


def _mvn(*args: str, cwd: Path) -> None:
    run_checked(["mvn", "-B", "-q", *args], cwd=cwd)


def _unzip(archive: Path, into: Path) -> None:
    """Extract keeping the exec bits (zipfile drops them), so bin/ stays usable by hand."""
    with zipfile.ZipFile(archive) as zipped:
        for info in zipped.infolist():
            target = Path(zipped.extract(info, into))
            mode = info.external_attr >> 16
            if mode and not info.is_dir():
                target.chmod(mode & 0o777)


def _jar_stem(filename: str) -> str:
    """`lucene-core-9.12.3.jar` -> `lucene-core`: compare jars regardless of version."""
    return re.sub(r"-\d[\w.\-]*\.jar$", "", filename)


def _add_module(target: Path, module: _Module, lib_jars: set[str], download: Path) -> None:
    download.mkdir(parents=True)
    _mvn(
        "-f",
        str(_POM),
        "dependency:copy-dependencies",
        "-Dmodule.groupId=org.opensearch.plugin",
        f"-Dmodule.artifactId={module.artifact}",
        f"-Dopensearch.version={VERSION}",
        f"-DoutputDirectory={download}",
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


# --- configure (per data dir) --------------------------------------------------------


def _configure(layout: Layout, host: str, port: int) -> None:
    data = layout.data("opensearch")
    config = data / "config"
    for folder in (config, data / "data", data / "logs", data / "tmp"):
        folder.mkdir(parents=True, exist_ok=True)
    home = _home(layout.cache("opensearch"))
    shutil.copy2(home / "config" / "log4j2.properties", config / "log4j2.properties")
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
        # A fuller dev disk must not flip indices to read-only (flood stage).
        "cluster.routing.allocation.disk.threshold_enabled": False,
    }
    # JSON scalars are valid YAML, and quote paths safely.
    (config / "opensearch.yml").write_text("".join(f"{k}: {json.dumps(v)}\n" for k, v in settings.items()))
    probe = home / "lib" / f"opensearch-{VERSION}.jar"
    own_data_dir("opensearch", NODE_USER, home, data, probe)


# --- launch --------------------------------------------------------------------------


def _java() -> str:
    # OpenSearch 2.19 needs the security manager, which Java 24+ removed: a
    # dedicated OPENSEARCH_JAVA_HOME wins over a JAVA_HOME set for other tools.
    for variable in ("OPENSEARCH_JAVA_HOME", "JAVA_HOME"):
        if os.environ.get(variable):
            return str(Path(os.environ[variable]) / "bin" / "java")
    return shutil.which("java") or "java"


def _launch(layout: Layout) -> Launch:
    home = _home(layout.cache("opensearch"))
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
