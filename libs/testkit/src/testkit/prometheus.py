"""A Prometheus of a test's own (Debian's `prometheus` binary) scraping the service processes it names.

    async with running_prometheus(tmp_path, {"projector": projector.url}) as url:
        ...  # url answers /api/v1/query; every target is scraped every second

The shared stack's Prometheus scrapes the services of `./dev up` on fixed ports;
a test that starts its own processes on free ports needs one that scrapes those.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import yaml

from testkit.harness import free_port

__all__ = ["running_prometheus"]


def _configure(folder: Path, targets: Mapping[str, str], rules: Mapping[str, Any] | None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    config: dict[str, Any] = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"},
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": [target.removeprefix("http://")]}]}
            for job, target in targets.items()
        ],
    }
    if rules is not None:
        (folder / "test.rules.yml").write_text(yaml.safe_dump(dict(rules)))
        config["rule_files"] = ["test.rules.yml"]
    (folder / "prometheus.yml").write_text(yaml.safe_dump(config))


@contextlib.asynccontextmanager
async def running_prometheus(
    folder: Path,
    targets: Mapping[str, str],
    *,
    rules: Mapping[str, Any] | None = None,
    start_timeout: float = 30.0,
) -> AsyncIterator[str]:
    """A ready Prometheus scraping `targets` (job name -> URL or host:port) every second; yields its URL.

    `rules` is a rule file's content (`{"groups": [...]}`), evaluated every second. The
    configuration, data and log (`prometheus.log`) go to `folder`. Fails the test when the
    binary is missing or Prometheus does not get ready.
    """
    binary = shutil.which("prometheus") or shutil.which("prometheus", path="/usr/bin")
    if binary is None:
        raise AssertionError("prometheus is missing: apt-get install -y prometheus")
    _configure(folder, targets, rules)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = folder / "prometheus.log"
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            binary,
            f"--config.file={folder / 'prometheus.yml'}",
            f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            cwd=folder,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        async with httpx.AsyncClient(base_url=url, timeout=5) as client:
            deadline = time.monotonic() + start_timeout
            while True:
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get("/-/ready")).status_code == 200:
                        break
                if process.returncode is not None or time.monotonic() > deadline:
                    raise AssertionError(f"prometheus did not get ready:\n{log.read_text()[-3000:]}")
                await asyncio.sleep(0.2)
        yield url
    finally:
        if process.returncode is None:
            process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            process.kill()
            await process.wait()
