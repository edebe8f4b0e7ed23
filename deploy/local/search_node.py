"""What OpenSearch and Elasticsearch have in common in the local stack: one node from a Maven zip.

Both engines publish an `integ-test-zip` distribution on Maven Central and run
as a single node on loopback, so fetching and unpacking that zip into the cache,
writing the node's folders and settings, and probing its cluster health are
the same steps; `opensearch.py` and `elasticsearch.py` keep only what differs
(extra modules, which JDK, how the JVM is started). Standard library only, like
the rest of `deploy.local`.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from deploy.local.components import Layout, maven_copy
from deploy.local.system import own_data_dir

__all__ = ["Distribution", "cluster_ready", "unzip"]

_MARKER = ".stack-installed"


@dataclass(frozen=True)
class Distribution:
    """One engine's server zip on Maven Central and the names the stack gives it."""

    name: str  # the cache and data folders, the zip's top folder and the server jar are named after it
    version: str
    artifact: str  # Maven coordinate of the zip, group:artifact:version:zip
    node_user: str  # who runs the node when root and user namespaces are unavailable

    def home(self, layout: Layout) -> Path:
        """The unpacked server in the cache, shared by every data dir."""
        return layout.cache(self.name) / f"{self.name}-{self.version}"

    def install(self, layout: Layout, complete: Callable[[Path, Path], None] | None = None) -> Path:
        """Fetch and unpack the zip into `home` once; `complete(staged, scratch)` adds to it first.

        Assembled in a scratch folder and renamed at the end, so an interrupted
        prepare never leaves a half-built home that looks installed.
        """
        home = self.home(layout)
        if (home / _MARKER).exists():
            return home
        if shutil.which("mvn") is None:
            raise RuntimeError(f"{self.name}: Maven (mvn) is needed to fetch the server from Maven Central")
        home.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=home.parent, prefix=".install-") as scratch:
            work = Path(scratch)
            maven_copy(self.artifact, work)
            unzip(work / f"{self.name}-{self.version}.zip", work)
            staged = work / home.name
            if complete is not None:
                complete(staged, work)
            # Readable by the unprivileged node user whatever the umask was.
            for path in [staged, *staged.rglob("*")]:
                path.chmod(path.stat().st_mode | (0o555 if path.is_dir() else 0o444))
            (staged / _MARKER).write_text(f"{self.artifact}\n")
            if home.exists():  # a leftover without marker
                shutil.rmtree(home)
            staged.rename(home)
        return home

    def configure(
        self,
        layout: Layout,
        host: str,
        port: int,
        *,
        copied: tuple[str, ...],
        written: Mapping[str, str] | None = None,
        settings: Mapping[str, object] | None = None,
    ) -> Path:
        """Write the node's data dir: config files `copied` from home and `written` here, and its settings.

        Returns the data dir, handed to the node's user (see `system.own_data_dir`).
        """
        data = layout.data(self.name)
        config = data / "config"
        for folder in (config, data / "data", data / "logs", data / "tmp"):
            folder.mkdir(parents=True, exist_ok=True)
        home = self.home(layout)
        for name in copied:
            shutil.copy2(home / "config" / name, config / name)
        for name, text in (written or {}).items():
            (config / name).parent.mkdir(parents=True, exist_ok=True)
            (config / name).write_text(text)
        node: dict[str, object] = {
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
            **(settings or {}),
        }
        # JSON scalars are valid YAML, and quote paths safely.
        (config / f"{self.name}.yml").write_text("".join(f"{k}: {json.dumps(v)}\n" for k, v in node.items()))
        server_jar = home / "lib" / f"{self.name}-{self.version}.jar"
        own_data_dir(self.name, self.node_user, home, data, server_jar)
        return data


def unzip(archive: Path, into: Path) -> None:
    """Extract keeping the exec bits (zipfile drops them), so bin/ stays usable."""
    with zipfile.ZipFile(archive) as zipped:
        for info in zipped.infolist():
            target = Path(zipped.extract(info, into))
            mode = info.external_attr >> 16
            if mode and not info.is_dir():
                target.chmod(mode & 0o777)


def cluster_ready(url: str, product: str | None) -> bool:
    """True once cluster health is yellow (unassigned replicas on one node) or green.

    Both engines answer the same request, so the `X-elastic-product` header must
    be `product`: "Elasticsearch" for Elasticsearch, absent (None) for OpenSearch.
    That keeps one engine configured in the other's variable from passing for it.
    """
    try:
        with urllib.request.urlopen(f"{url}/_cluster/health", timeout=2.0) as response:  # noqa: S310 - loopback
            if response.headers.get("X-elastic-product") != product:
                return False
            return json.load(response).get("status") in ("green", "yellow")
    except (urllib.error.URLError, OSError, ValueError):
        return False
