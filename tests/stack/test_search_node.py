"""The steps OpenSearch and Elasticsearch share in the local stack, without starting either."""

from __future__ import annotations

import json
import threading
import zipfile
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from deploy.local import elasticsearch, opensearch
from deploy.local.search_node import unzip


def health_server(product: str | None, status: str) -> ThreadingHTTPServer:
    class Health(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps({"status": status}).encode()
            self.send_response(200 if self.path == "/_cluster/health" else 404)
            if product is not None:
                self.send_header("X-elastic-product", product)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    return ThreadingHTTPServer(("127.0.0.1", 0), Health)


@pytest.fixture
def answering() -> Iterator[Callable[..., str]]:
    servers: list[ThreadingHTTPServer] = []

    def start(product: str | None, status: str = "yellow") -> str:
        server = health_server(product, status)
        servers.append(server)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_each_engine_is_ready_only_when_the_server_is_that_engine(answering: Callable[..., str]) -> None:
    an_opensearch, an_elasticsearch = answering(None), answering("Elasticsearch")
    assert opensearch.is_ready(an_opensearch)
    assert elasticsearch.is_ready(an_elasticsearch)
    assert not opensearch.is_ready(an_elasticsearch)
    assert not elasticsearch.is_ready(an_opensearch)


def test_a_red_cluster_or_no_server_is_not_ready(answering: Callable[..., str]) -> None:
    assert not opensearch.is_ready(answering(None, status="red"))
    assert not elasticsearch.is_ready(answering("Elasticsearch", status="red"))
    assert not opensearch.is_ready("http://127.0.0.1:9")


def test_unzip_keeps_the_launcher_scripts_executable(tmp_path: Path) -> None:
    archive = tmp_path / "server.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        script = zipfile.ZipInfo("server/bin/launch")
        script.external_attr = 0o755 << 16
        zipped.writestr(script, "#!/bin/sh\n")
        zipped.writestr("server/config/settings.yml", "a: 1\n")
    unzip(archive, tmp_path / "out")
    assert (tmp_path / "out/server/bin/launch").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "out/server/config/settings.yml").read_text() == "a: 1\n"
