"""Zipkin for the local stack: a trace viewer receiving every service's spans.

The server is one executable jar on Maven Central (`io.zipkin:zipkin-server`,
classifier `exec`, 131 MB), fetched once into the cache by Maven and run with
the machine's Java 17, keeping its spans in memory (a bounded number, gone on
restart: traces are for looking at now, not for keeping). The services export
to it with `OTEL_EXPORTER=zipkin` (`servicekit.zipkin`).

Measured on the two-core machine under the other servers' load: the download
takes about 18 s, the start 13 to 21 s, and the JVM holds 200 to 250 MB
resident with the heap capped at 256 MB. So `up` starts it with the services,
while `up --infra` (what `./dev test` runs) leaves it out; the trace test
starts a Zipkin of its own.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from deploy.local.components import Component, Launch, Layout, http_ok, maven_copy
from deploy.local.system import apt_install, java_binary

__all__ = ["VERSION", "component", "jar"]

VERSION = "3.5.1"
ARTIFACT = f"io.zipkin:zipkin-server:{VERSION}:jar:exec"
# Enough for the in-memory store's spans; serial GC: one small heap, no collector threads to feed.
_JVM = ["-Xms64m", "-Xmx256m", "-XX:+UseSerialGC", "-XX:+ExitOnOutOfMemoryError", "-Djava.awt.headless=true"]
# Spans kept in memory; the oldest traces are dropped beyond this.
MAX_SPANS = 200_000


def jar(layout: Layout) -> Path:
    """The server's jar in the cache, downloaded by Maven when missing."""
    cache = layout.cache("zipkin")
    path = cache / f"zipkin-server-{VERSION}-exec.jar"
    if path.exists():
        return path
    if shutil.which("mvn") is None or shutil.which(java_binary()) is None:
        apt_install("maven", "openjdk-17-jre-headless")
    cache.mkdir(parents=True, exist_ok=True)
    # Downloaded beside and renamed at the end, so an interrupted fetch never looks complete.
    with tempfile.TemporaryDirectory(dir=cache, prefix=".fetch-") as scratch:
        maven_copy(ARTIFACT, Path(scratch))
        (Path(scratch) / path.name).rename(path)
    return path


def component(host: str = "127.0.0.1", port: int = 59411) -> Component:
    """Zipkin serving its UI and API on http://host:port, spans posted to /api/v2/spans."""

    def prepare(layout: Layout) -> None:
        jar(layout)
        layout.data("zipkin").mkdir(parents=True, exist_ok=True)

    def launch(layout: Layout) -> Launch:
        # The listener is Armeria's, configured as a list: the whole entry is given, or the
        # packaged one (every interface, QUERY_PORT) is replaced by a random port.
        argv = [
            java_binary(),
            *_JVM,
            "-jar",
            str(jar(layout)),
            f"--armeria.ports[0].ip={host}",
            f"--armeria.ports[0].port={port}",
            "--armeria.ports[0].protocols=http",
        ]
        env = {"STORAGE_TYPE": "mem", "MEM_MAX_SPANS": str(MAX_SPANS)}
        return Launch(argv=argv, env=env, cwd=layout.data("zipkin"))

    return Component(
        name="zipkin",
        env_var="ZIPKIN_URL",
        url=f"http://{host}:{port}",
        prepare=prepare,
        launch=launch,
        is_ready=lambda url: http_ok(f"{url.rstrip('/')}/health"),
        start_timeout=90.0,
        # What a service reads to send its spans here (OTEL_EXPORTER=zipkin).
        extra_env={"OTEL_EXPORTER_ZIPKIN_ENDPOINT": f"http://{host}:{port}/api/v2/spans"},
    )
