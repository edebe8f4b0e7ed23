"""The Prometheus scrape configuration and alert rules under deploy/prometheus.

`promtool` (Debian's `prometheus` package) checks the configuration and runs the
rules' unit tests; the Python tests here make sure every alert has a case that
fires and one that must not, a runbook entry, and watches metrics the services
really export.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from deploy.local import prometheus
from deploy.local.components import Layout

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
RULES = PROMETHEUS / "fulfilment.rules.yml"
RULE_TESTS = PROMETHEUS / "fulfilment.rules.test.yml"
RUNBOOK = ROOT / "docs" / "observability.md"

# The local stack's ports (deploy/local/services.py), one job per process, and its exporters'.
PORTS = {"command": 8001, "query": 8002, "relay": 8003, "projector": 8004, "saga": 8005, "sandbox": 8006}
EXPORTERS = {"postgres": 59187, "redis": 59121}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool is missing: apt-get install -y prometheus (Debian's package ships promtool)")
    return subprocess.run(
        [found, *args], cwd=PROMETHEUS, capture_output=True, text=True, timeout=300, check=False
    )


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def alerts() -> list[dict[str, Any]]:
    return [rule for group in load(RULES)["groups"] for rule in group["rules"] if "alert" in rule]


def test_the_rules_pass_their_unit_tests() -> None:
    result = promtool("test", "rules", RULE_TESTS.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_the_scrape_configuration_and_its_rules_check() -> None:
    result = promtool("check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_six_processes_and_the_exporters_are_scraped_on_their_ports() -> None:
    config = load(PROMETHEUS / "prometheus.yml")
    assert config["rule_files"] == [RULES.name]
    scraped = {
        job["job_name"]: (
            job.get("metrics_path", "/metrics"),
            [t for s in job["static_configs"] for t in s["targets"]],
        )
        for job in config["scrape_configs"]
    }
    expected = {name: ("/metrics", [f"127.0.0.1:{port}"]) for name, port in (PORTS | EXPORTERS).items()}
    assert scraped == expected


def test_a_shifted_stack_scrapes_its_own_ports_each_shifted_once(tmp_path: Path) -> None:
    # With offset 1, the command's 8001 becomes 8002, which must not then shift again as the query's.
    prometheus.component(offset=1).prepare(Layout(tmp_path))
    config = load(tmp_path / "data" / "prometheus" / "prometheus.yml")
    targets = {job["job_name"]: job["static_configs"][0]["targets"] for job in config["scrape_configs"]}
    assert targets == {name: [f"127.0.0.1:{port + 1}"] for name, port in (PORTS | EXPORTERS).items()}


async def test_the_stack_prometheus_sees_postgresql_and_redis_through_their_exporters() -> None:
    url = os.environ.get("PROMETHEUS_URL")
    if not url:
        pytest.fail("PROMETHEUS_URL is not set: start the stack with ./dev up --infra and load .devstack/env")
    found: dict[str, list[dict[str, Any]]] = {}
    async with httpx.AsyncClient(base_url=url, timeout=5) as client:
        # The first scrape comes within one interval (15 s) of the exporters' start.
        for _ in range(40):
            for metric in ("pg_up", "redis_up"):
                answer = (await client.get("/api/v1/query", params={"query": metric})).json()
                found[metric] = answer["data"]["result"]
            if all(found.values()):
                break
            await asyncio.sleep(1)
    assert [(s["metric"]["job"], s["value"][1]) for s in found["pg_up"]] == [("postgres", "1")], found
    assert [(s["metric"]["job"], s["value"][1]) for s in found["redis_up"]] == [("redis", "1")], found


def test_every_alert_has_a_case_that_fires_and_one_that_must_not() -> None:
    fired: set[str] = set()
    quiet: set[str] = set()
    for case in load(RULE_TESTS)["tests"]:
        for check in case.get("alert_rule_test", []):
            (fired if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {rule["alert"] for rule in alerts()}
    assert names - fired == set(), "alerts never shown firing"
    assert names - quiet == set(), "alerts never shown quiet"


def test_every_alert_has_a_severity_and_a_runbook_entry() -> None:
    runbook = RUNBOOK.read_text()
    headings = {match.lower() for match in re.findall(r"^#{2,4} `?([A-Za-z]+)`?\s*$", runbook, re.MULTILINE)}
    for rule in alerts():
        name = rule["alert"]
        assert rule["labels"]["severity"] in ("critical", "warning"), name
        assert rule["annotations"]["runbook"] == f"docs/observability.md#{name.lower()}", name
        assert name.lower() in headings, f"{name}: no heading in docs/observability.md"


# The suite's own metric names in an expression (recording rules' `job:...` names have a colon).
_METRIC = re.compile(r"(?<![\w:])((?:http|relay|projector|saga)_[a-z_]+)(?![\w:])")
# A metric declared in the services' code: prometheus-client's class and the name given to it.
_DECLARED = re.compile(r"\b(Counter|Gauge|Histogram)(?:MetricFamily)?\(\s*\"([a-z_]+)\"")


def exported_series() -> set[str]:
    """The sample names the services' metrics appear under in a scrape."""
    names: set[str] = set()
    for top in ("libs", "services"):
        for path in (ROOT / top).rglob("src/**/*.py"):
            for kind, name in _DECLARED.findall(path.read_text()):
                if kind == "Counter":  # prometheus-client appends _total (and keeps one already there)
                    names.add(name.removesuffix("_total") + "_total")
                elif kind == "Histogram":
                    names.update(f"{name}{suffix}" for suffix in ("_bucket", "_count", "_sum"))
                else:
                    names.add(name)
    return names


def test_every_metric_a_rule_reads_is_exported_under_that_name() -> None:
    exported = exported_series()
    assert {"http_requests_total", "relay_lag_seconds", "saga_events_consumed_total"} <= exported
    read = {
        name for rule in load(RULES)["groups"] for r in rule["rules"] for name in _METRIC.findall(r["expr"])
    }
    assert read, "the pattern finds the rules' metrics"
    assert read - exported == set()
