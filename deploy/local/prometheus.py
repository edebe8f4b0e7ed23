"""Prometheus from the Debian package, scraping the local stack's six services and the exporters of
PostgreSQL and Redis, with the suite's alerts."""

from __future__ import annotations

import re
import shutil
import urllib.request
from pathlib import Path

from deploy.local.components import Component, Launch, Layout
from deploy.local.exporters import POSTGRES_EXPORTER_PORT, REDIS_EXPORTER_PORT
from deploy.local.system import debian_binary

__all__ = ["component", "promtool"]

CONFIG = Path(__file__).resolve().parents[1] / "prometheus"
# The ports the committed config scrapes: command, query, relay, projector, saga, sandbox; exporters.
SCRAPED_PORTS = (*range(8001, 8007), POSTGRES_EXPORTER_PORT, REDIS_EXPORTER_PORT)


def _installed(binary: str) -> str:
    return debian_binary(binary, "prometheus")  # the package brings promtool too


def promtool() -> str:
    """The path of `promtool`, installing Debian's prometheus package when it is missing (as root)."""
    return _installed("promtool")


def component(host: str = "127.0.0.1", port: int = 59090, offset: int = 0) -> Component:
    def prepare(layout: Layout) -> None:
        _installed("prometheus")
        folder = layout.data("prometheus")
        folder.mkdir(parents=True, exist_ok=True)
        # The committed config names the default ports: shift them with the stack's offset.
        text = (CONFIG / "prometheus.yml").read_text()
        # One pass, so a shifted port is not shifted again as another's default.
        text = re.sub(
            r"127\.0\.0\.1:(\d+)\b",
            lambda m: f"127.0.0.1:{int(m[1]) + offset if int(m[1]) in SCRAPED_PORTS else m[1]}",
            text,
        )
        (folder / "prometheus.yml").write_text(text)
        shutil.copy(CONFIG / "fulfilment.rules.yml", folder / "fulfilment.rules.yml")

    def launch(layout: Layout) -> Launch:
        folder = layout.data("prometheus")
        return Launch(
            argv=[
                _installed("prometheus"),
                f"--config.file={folder / 'prometheus.yml'}",
                f"--storage.tsdb.path={folder / 'tsdb'}",
                f"--web.listen-address={host}:{port}",
                "--storage.tsdb.retention.time=2d",
            ]
        )

    def ready(probe_url: str) -> bool:
        try:
            with urllib.request.urlopen(f"{probe_url.rstrip('/')}/-/ready", timeout=2) as answer:  # noqa: S310
                return bool(answer.status == 200)
        except OSError:
            return False

    return Component(
        name="prometheus",
        env_var="PROMETHEUS_URL",
        url=f"http://{host}:{port}",
        prepare=prepare,
        launch=launch,
        is_ready=ready,
        start_timeout=30.0,
    )
