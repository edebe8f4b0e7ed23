"""The Grafana dashboards of deploy/grafana: generated, and reading series the services really export.

The committed JSON must be what `deploy/grafana/dashboards.py` makes. Every PromQL
expression of every panel must parse, and return at least one series from a real
Prometheus scraping the six services (processes of the test's own on free ports,
on the shared servers) after the load tool drove a little traffic through them.

Some counters are born with their first event and the traffic here causes none of
those events (see `EVENT_BORN`): an expression that reads only such counters may
return nothing, and then its metric names must be ones the services' code declares.
Every other metric name an expression reads must be in Prometheus's own list of
names (`/api/v1/label/__name__/values`).
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from eventstore import migrate
from readmodels.search import connect_search
from redis.asyncio import Redis
from testkit.databases import scratch_database
from testkit.prometheus import running_prometheus
from testkit.suite import Suite, running_suite

from deploy.grafana import dashboards, render
from tests.deploy.test_prometheus import exported_series

ROOT = Path(__file__).resolve().parents[2]
SECRET = "dashboards-secret-that-is-long-enough-for-hs256!"
JWT = {"JWT_SECRET": SECRET, "JWT_ISSUER": "https://issuer.dashboards", "JWT_AUDIENCE": "fulfilment-dash"}
# The suite's own metric names in an expression (as tests/deploy/test_prometheus.py finds them).
_METRIC = re.compile(r"(?<![\w:])((?:http|relay|projector|saga)_[a-z_]+)(?![\w:(])")

# Counters with labels that have no series until their first event; the load here causes none.
EVENT_BORN = {
    "projector_dead_letters_total": "a record the projector cannot apply",
    "saga_dead_letters_total": "a record of the order topic the saga cannot read",
    "saga_circuit_opened_total": "a downstream failing SAGA_BREAKER_FAILURES times in a row",
    "saga_downstream_retries_total": "a transient failure of a downstream",
}


def targets() -> Iterator[tuple[str, str, str, str]]:
    """(dashboard, panel, refId, expression) of every query in the committed dashboards."""
    for spec in dashboards.DASHBOARDS:
        board = json.loads((dashboards.OUTPUT / f"{spec.name}.json").read_text())
        for panel in board["panels"]:
            for target in panel["targets"]:
                yield board["title"], panel["title"], target["refId"], target["expr"]


def test_the_committed_dashboards_are_what_the_code_generates() -> None:
    committed = sorted(path.name for path in dashboards.OUTPUT.glob("*.json"))
    assert committed == sorted(f"{spec.name}.json" for spec in dashboards.DASHBOARDS)
    for spec in dashboards.DASHBOARDS:
        assert (dashboards.OUTPUT / f"{spec.name}.json").read_text() == dashboards.rendered(spec), (
            f"{spec.name}.json was edited by hand or not regenerated: "
            "python -m deploy.grafana.dashboards --write"
        )


def test_the_check_command_notices_a_stale_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dashboards, "OUTPUT", tmp_path)
    assert dashboards.main(["--write"]) == 0
    assert dashboards.main(["--check"]) == 0
    (tmp_path / "relay.json").write_text("{}\n")
    assert dashboards.main(["--check"]) == 1


def test_every_panel_has_a_query_a_unit_and_a_place_on_the_grid() -> None:
    for spec in dashboards.DASHBOARDS:
        board = json.loads(dashboards.rendered(spec))
        assert board["uid"] == f"fulfilment-{spec.name}"
        assert [v["name"] for v in board["templating"]["list"]] == ["datasource"]
        cells: set[tuple[int, int]] = set()
        for panel in board["panels"]:
            where = f"{spec.name}: {panel['title']}"
            assert panel["targets"], where
            assert panel["fieldConfig"]["defaults"]["unit"], where
            assert panel["datasource"]["uid"] == "${datasource}", where
            grid = panel["gridPos"]
            assert grid["x"] + grid["w"] <= 24, where
            mine = {
                (x, y)
                for x in range(grid["x"], grid["x"] + grid["w"])
                for y in range(grid["y"], grid["y"] + grid["h"])
            }
            assert not mine & cells, f"{where} overlaps another panel"
            cells |= mine


# --- against a live Prometheus ---------------------------------------------------------------------


@pytest.fixture(scope="module")
async def scraped_suite(
    tmp_path_factory: pytest.TempPathFactory,
    database_url: str,
    redis_url: str,
    kafka_bootstrap_servers: str,
    search_url: str,
) -> AsyncIterator[str]:
    """The six services under a little load, scraped by a Prometheus of the test's own; yields its URL."""
    folder = tmp_path_factory.mktemp("dashboards")
    async with scratch_database(database_url, "dashboards") as fresh:
        await migrate(fresh)
        servers = {
            "DATABASE_URL": fresh, "REDIS_URL": redis_url, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap_servers,
            "SEARCH_URL": search_url,
        }  # fmt: skip
        async with running_suite(folder, servers, JWT) as suite:
            scraped = {job: process.url for job, process in suite.processes.items()}
            async with running_prometheus(folder / "prometheus", scraped) as url:
                await drive_traffic(suite, folder)
                # Two scrapes after the last request at least, for rate() over the last minute.
                await asyncio.sleep(3)
                yield url
            await forget(suite, redis_url, search_url)


async def drive_traffic(suite: Suite, folder: Path) -> None:
    """Orders through the suite with the load tool, as an operator would drive it."""
    argv = [
        sys.executable, "-m", "fulfilment_load", "--rate", "5", "--duration", "20", "--drain", "30",
        "--command-url", suite["command"].url, "--query-url", suite["query"].url,
        "--saga-url", suite["saga"].url, "--jwt-secret", JWT["JWT_SECRET"],
        "--jwt-issuer", JWT["JWT_ISSUER"], "--jwt-audience", JWT["JWT_AUDIENCE"],
        "--tag", uuid.uuid4().hex[:6],
    ]  # fmt: skip
    log = folder / "load.log"
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(*argv, stdout=out, stderr=asyncio.subprocess.STDOUT)
        code = await asyncio.wait_for(process.wait(), 180)
    assert code == 0, log.read_text()[-3000:]


async def forget(suite: Suite, redis_url: str, search_url: str) -> None:
    """Remove the read models' keys and indices the run left on the shared servers."""
    redis = Redis.from_url(redis_url)
    stale = [key async for key in redis.scan_iter(match=f"{suite.keys}*")]
    if stale:
        await redis.unlink(*stale)
    await redis.aclose()
    search = await connect_search(search_url)
    for index in await search.indices(f"{suite.keys}*"):
        await search.delete_index(index)
    await search.close()


async def parses(client: httpx.AsyncClient, expr: str) -> str | None:
    """None if Prometheus parses `expr`, else its error (parse_query where it exists, else format_query)."""
    for endpoint in ("/api/v1/parse_query", "/api/v1/format_query"):
        answer = await client.get(endpoint, params={"query": expr})
        if answer.status_code == 404 and "page not found" in answer.text:
            continue  # Prometheus before 2.47 has no parse_query
        body = answer.json()
        return None if body["status"] == "success" else f"does not parse: {body.get('error')}"
    raise AssertionError("this Prometheus can neither parse_query nor format_query")


@pytest.mark.slow
@pytest.mark.timeout(900)
async def test_every_expression_parses_and_returns_series_from_the_scraped_services(
    scraped_suite: str,
) -> None:
    declared = exported_series()
    assert set(EVENT_BORN) <= declared, "EVENT_BORN names a metric no service declares"
    problems: list[str] = []
    async with httpx.AsyncClient(base_url=scraped_suite, timeout=10) as client:
        names = set((await client.get("/api/v1/label/__name__/values")).json()["data"])
        assert "http_requests_total" in names, "Prometheus scraped the services"
        checked = 0
        for board, panel, ref, expr in targets():
            where = f"{board} / {panel} / {ref}: {expr!r}"
            query = dashboards.promql(expr)
            if (error := await parses(client, query)) is not None:
                problems.append(f"{where}: {error}")
                continue
            read = set(_METRIC.findall(query))
            unknown = {name for name in read if name not in names and name not in EVENT_BORN}
            if unknown:
                problems.append(f"{where}: reads metrics Prometheus never saw: {sorted(unknown)}")
                continue
            answer = (await client.get("/api/v1/query", params={"query": query})).json()
            if answer["status"] != "success":
                problems.append(f"{where}: {answer.get('error')}")
            elif not answer["data"]["result"] and not (read and read <= set(EVENT_BORN)):
                problems.append(f"{where}: returned no series")
            checked += 1
    assert not problems, "\n".join(problems)
    assert checked == len(list(targets()))


# --- the renderer of the docs' images ----------------------------------------------------------------


def test_the_renderer_fills_grafana_legends() -> None:
    assert render.legend("p99 {{route}}", {"route": "/orders"}) == "p99 /orders"
    assert render.legend("{{ projection }}", {"projection": "redis"}) == "redis"
    assert render.legend("{{missing}}", {}) == "value"


def test_the_renderer_shows_values_in_the_panels_unit() -> None:
    assert render.formatter("s")(0.25) == "250 ms"
    assert render.formatter("s")(2) == "2 s"
    assert render.formatter("percentunit")(0.05) == "5%"
    assert render.formatter("reqps")(12) == "12 req/s"


@pytest.mark.slow
async def test_the_renderer_draws_every_dashboard_from_the_live_prometheus_in_a_small_png(
    scraped_suite: str, tmp_path: Path
) -> None:
    assert (
        await asyncio.to_thread(
            render.main, ["--prometheus", scraped_suite, "--minutes", "3", "--out", str(tmp_path)]
        )
        == 0
    )
    drawn = await asyncio.to_thread(pngs, tmp_path)
    assert sorted(drawn) == sorted(spec.name for spec in dashboards.DASHBOARDS)
    for name, image in drawn.items():
        assert image.startswith(b"\x89PNG"), name
        assert len(image) < 200_000, f"{name}: {len(image)} bytes"


def pngs(folder: Path) -> dict[str, bytes]:
    return {path.stem: path.read_bytes() for path in folder.glob("*.png")}
