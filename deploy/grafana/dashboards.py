"""The suite's Grafana dashboards as code: an overview and one dashboard per service.

    python -m deploy.grafana.dashboards --write    # regenerate deploy/grafana/dashboards/*.json
    python -m deploy.grafana.dashboards --check    # exit 1 if the committed JSON is not what this makes

Panels are declared as plain `Chart`s (title, unit, PromQL with a legend) and laid
out on Grafana's 24-column grid in reading order; `build` turns them into
dashboards with grafana-foundation-sdk. Every panel reads the `datasource`
variable, so one file works with whatever Prometheus a Grafana has (the
provisioned one's uid is `prometheus`, see provisioning/datasources.yaml).

Range selectors use Grafana's `$__rate_interval` (at least four scrapes), and
the counters that only exist after an event (dead letters, breakers opened,
retries) fall back to zero per label with `or ... * 0`, so a quiet system shows
0 rather than "No data".
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from grafana_foundation_sdk.builders import common as gcommon
from grafana_foundation_sdk.builders import dashboard as gdash
from grafana_foundation_sdk.builders import prometheus as gprom
from grafana_foundation_sdk.builders import stat as gstat
from grafana_foundation_sdk.builders import timeseries as gts
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model

__all__ = ["DASHBOARDS", "OUTPUT", "Chart", "Query", "Spec", "build", "promql", "rendered"]

OUTPUT = Path(__file__).resolve().parent / "dashboards"
DATASOURCE = model.DataSourceRef(type_val="prometheus", uid="${datasource}")
GRID_COLUMNS = 24
# Health probes and scrapes would drown the requests clients make (the alerts leave them out too).
CLIENT = 'route!~"/health/.*|/metrics"'
RATE = "$__rate_interval"
# Grafana's interval variables as Grafana fills them for a 30-minute view of a Prometheus scraping every
# 15 s: what the expressions are sent to Prometheus with outside Grafana (the tests, the renderer).
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "30m"}


@dataclass(frozen=True, slots=True)
class Query:
    """One PromQL expression and the legend of the series it returns (Grafana's `{{label}}` syntax)."""

    expr: str
    legend: str


@dataclass(frozen=True, slots=True)
class Chart:
    """One panel: a time series graph, or a stat showing each series' last value."""

    title: str
    unit: str
    queries: tuple[Query, ...]
    description: str = ""
    kind: Literal["timeseries", "stat"] = "timeseries"
    width: int = 8
    height: int = 8


@dataclass(frozen=True, slots=True)
class Spec:
    """A dashboard: its file name (also its uid), title and charts in reading order."""

    name: str
    title: str
    description: str
    charts: tuple[Chart, ...] = field(default_factory=tuple)


# --- the panels ------------------------------------------------------------------------------------


def _zero_fallback(expr: str, by: str, fallback_metric: str) -> str:
    """`expr` or, for each `by` value where it has no series yet, 0 (from a series that always exists)."""
    return f"{expr}\nor\nsum by ({by}) ({fallback_metric}) * 0"


def http_charts(job: str) -> tuple[Chart, ...]:
    """Requests, errors and latency of one HTTP service, by route."""
    selector = f'job="{job}", {CLIENT}'
    return (
        Chart(
            "Requests per second by route",
            "reqps",
            (Query(f"sum by (route) (rate(http_requests_total{{{selector}}}[{RATE}]))", "{{route}}"),),
        ),
        Chart(
            "Answers per second by status",
            "reqps",
            (Query(f"sum by (status) (rate(http_requests_total{{{selector}}}[{RATE}]))", "{{status}}"),),
            description="4xx are client mistakes (RFC 9457 problem details); 5xx page when over 5%.",
        ),
        Chart(
            "Share of answers that are 5xx",
            "percentunit",
            (
                Query(
                    _zero_fallback(
                        f'sum by (job) (rate(http_requests_total{{status=~"5..", {selector}}}[{RATE}]))\n'
                        f"/\nsum by (job) (rate(http_requests_total{{{selector}}}[{RATE}]))",
                        "job",
                        f"http_requests_total{{{selector}}}",
                    ),
                    "5xx",
                ),
            ),
            description="HttpServerErrors fires above 5% for 5 minutes.",
        ),
        Chart(
            "Latency p50 and p99 by route",
            "s",
            tuple(
                Query(
                    f"histogram_quantile({q}, sum by (route, le) "
                    f"(rate(http_request_duration_seconds_bucket{{{selector}}}[{RATE}])))",
                    f"p{int(q * 100)} {{{{route}}}}",
                )
                for q in (0.5, 0.99)
            ),
            width=16,
        ),
        Chart(
            "Requests slower than 250 ms",
            "percentunit",
            (
                Query(
                    f'1 - (sum by (job) (rate(http_request_duration_seconds_bucket{{le="0.25", {selector}}}'
                    f"[{RATE}]))\n/\nsum by (job) (rate(http_request_duration_seconds_count{{{selector}}}"
                    f"[{RATE}])))",
                    "slow",
                ),
            ),
            description="The latency objective allows 1% (LatencyBudgetBurning* alerts).",
        ),
    )


def relay_charts() -> tuple[Chart, ...]:
    return (
        Chart("Relay lag", "s", (Query("max by (instance) (relay_lag_seconds)", "{{instance}}"),),
              description="Age of the oldest event in the log not yet on Kafka; RelayLagging above 60 s."),
        Chart("Events waiting to be published", "short",
              (Query("max by (instance) (relay_lag_events)", "{{instance}}"),)),
        Chart("Events published per second", "ops",
              (Query(f"sum by (instance) (rate(relay_published_events_total[{RATE}]))", "{{instance}}"),)),
        Chart("Leader and Kafka", "short",
              (Query("relay_leader", "leader {{instance}}"),
               Query("relay_kafka_connected", "Kafka connected {{instance}}")),
              description="1 on the relay holding the advisory lock; 1 while Kafka takes its messages."),
    )  # fmt: skip


def projector_charts() -> tuple[Chart, ...]:
    by = "projection"
    return (
        Chart("Projection lag", "s", (Query(f"max by ({by}) (projector_lag_seconds)", "{{projection}}"),),
              description="Age of the oldest event not yet applied; ProjectionLagging above 60 s."),
        Chart("Events not yet applied", "short",
              (Query(f"max by ({by}) (projector_lag_events)", "{{projection}}"),)),
        Chart("Events applied per second", "ops",
              (Query(f"sum by ({by}) (rate(projector_events_total[{RATE}]))", "{{projection}}"),)),
        Chart("Store up", "short", (Query(f"min by ({by}) (projector_store_up)", "{{projection}}"),),
              description="1 while the projection's store accepts writes."),
        Chart("Rebuild progress", "percentunit",
              (Query(f"max by ({by}) (projector_rebuild_progress)", "{{projection}}"),)),
        Chart("Dead letters (last hour)", "short",
              (Query(_zero_fallback(f"sum by ({by}) (increase(projector_dead_letters_total[1h]))", by,
                                    "projector_position"), "{{projection}}"),),
              description="Events sent to the dead-letter topic; see ProjectorDeadLetters."),
    )  # fmt: skip


def saga_charts() -> tuple[Chart, ...]:
    downstream = "downstream"
    return (
        Chart("Order events consumed per second", "ops",
              (Query(f"sum by (type, result) (rate(saga_events_consumed_total[{RATE}]))",
                     "{{type}} {{result}}"),), width=16),
        Chart("Sagas parked and stuck", "short", (Query("max by (status) (saga_sagas)", "{{status}}"),),
              kind="stat", description="Parked sagas wait for a person: GET /sagas?status=parked."),
        Chart("Downstream calls per second", "ops",
              (Query(f"sum by ({downstream}, result) (rate(saga_downstream_calls_total[{RATE}]))",
                     "{{downstream}} {{result}}"),)),
        Chart("Retries per second", "ops",
              (Query(_zero_fallback(f"sum by ({downstream}) (rate(saga_downstream_retries_total[{RATE}]))",
                                    downstream, "saga_circuit_state"), "{{downstream}}"),)),
        Chart("Circuit breakers", "short",
              (Query(f"max by ({downstream}) (saga_circuit_state)", "{{downstream}}"),),
              description="0 closed, 1 open, 2 half-open."),
        Chart("Breakers opened (last hour)", "short",
              (Query(_zero_fallback(f"sum by ({downstream}) (increase(saga_circuit_opened_total[1h]))",
                                    downstream, "saga_circuit_state"), "{{downstream}}"),)),
        Chart("Oldest overdue timer", "s", (Query("max(saga_timer_overdue_seconds)", "overdue"),),
              description="SagaTimersOverdue above 300 s."),
        Chart("Dead letters by reason (last hour)", "short",
              (Query("sum by (reason) (increase(saga_dead_letters_total[1h]))", "{{reason}}"),),
              description="Records of the order topic the saga could not read; no series until the first."),
    )  # fmt: skip


def overview_charts() -> tuple[Chart, ...]:
    every = CLIENT
    return (
        Chart("Commands per second", "reqps",
              (Query(f'sum(rate(http_requests_total{{job="command", method="POST", {every}}}[{RATE}]))',
                     "commands"),)),
        Chart("4xx per second by service", "reqps",
              (Query(_zero_fallback(
                  f'sum by (job) (rate(http_requests_total{{status=~"4..", {every}}}[{RATE}]))', "job",
                  f"http_requests_total{{{every}}}"), "{{job}}"),)),
        Chart("5xx per second by service", "reqps",
              (Query(_zero_fallback(
                  f'sum by (job) (rate(http_requests_total{{status=~"5..", {every}}}[{RATE}]))', "job",
                  f"http_requests_total{{{every}}}"), "{{job}}"),)),
        Chart("Latency p99 by service", "s",
              (Query(f"histogram_quantile(0.99, sum by (job, le) "
                     f"(rate(http_request_duration_seconds_bucket{{{every}}}[{RATE}])))", "{{job}}"),)),
        Chart("Relay lag", "s", (Query("max(relay_lag_seconds)", "relay"),)),
        Chart("Projection lag", "s",
              (Query("max by (projection) (projector_lag_seconds)", "{{projection}}"),)),
        Chart("Saga outcomes per second", "ops",
              (Query('label_replace(sum by (route) (rate(http_requests_total{job="command", method="POST", '
                     f'route=~"/orders/.+/(confirm|reject)", status=~"2.."}}[{RATE}])), '
                     '"outcome", "$1", "route", ".*/(confirm|reject)")', "{{outcome}}"),
               Query('sum(rate(saga_events_consumed_total{type="OrderCancelled", result="recorded"}'
                     f"[{RATE}]))", "cancelled")),
              description="Orders the saga confirmed or rejected (its commands the command service "
                          "accepted), and cancellations it took in."),
        Chart("Sagas parked and stuck", "short", (Query("max by (status) (saga_sagas)", "{{status}}"),),
              kind="stat", width=4),
        Chart("Breakers", "short", (Query("max by (downstream) (saga_circuit_state)", "{{downstream}}"),),
              kind="stat", width=4, description="0 closed, 1 open, 2 half-open."),
        Chart("Dead letters (last hour)", "short",
              (Query(_zero_fallback("sum by (projection) (increase(projector_dead_letters_total[1h]))",
                                    "projection", "projector_position"), "projector {{projection}}"),
               Query("sum(increase(saga_dead_letters_total[1h])) or vector(0)", "saga")),
              width=24, height=6),
    )  # fmt: skip


DASHBOARDS: tuple[Spec, ...] = (
    Spec("overview", "Fulfilment: overview", "The whole suite at a glance.", overview_charts()),
    Spec("command", "Fulfilment: command service", "HTTP commands appended to the event store.",
         http_charts("command")),
    Spec("relay", "Fulfilment: relay", "The event store's log to Kafka.", relay_charts()),
    Spec("projector", "Fulfilment: projector", "Kafka to the Redis and search read models.",
         projector_charts()),
    Spec("query", "Fulfilment: query service", "Reads from the read models.", http_charts("query")),
    Spec("saga", "Fulfilment: saga", "The order saga: consumption, downstream calls, breakers, timers.",
         saga_charts() + http_charts("saga")),
    Spec("sandbox", "Fulfilment: payment sandbox", "The payment provider stand-in.", http_charts("sandbox")),
)  # fmt: skip


def promql(expr: str) -> str:
    """`expr` with Grafana's interval variables filled in, as Prometheus's API takes it."""
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    return expr


# --- building ----------------------------------------------------------------------------------------


def _layout(charts: tuple[Chart, ...]) -> list[model.GridPos]:
    """Grid positions in reading order: left to right, a new row when the next chart does not fit."""
    positions, x, y, row_height = [], 0, 0, 0
    for chart in charts:
        if x + chart.width > GRID_COLUMNS:
            x, y, row_height = 0, y + row_height, 0
        positions.append(model.GridPos(h=chart.height, w=chart.width, x=x, y=y))
        x, row_height = x + chart.width, max(row_height, chart.height)
    return positions


def _panel(chart: Chart, position: model.GridPos, panel_id: int) -> gts.Panel | gstat.Panel:
    panel: gts.Panel | gstat.Panel
    if chart.kind == "stat":
        panel = gstat.Panel().graph_mode(common.BigValueGraphMode.AREA)
    else:
        panel = (
            gts.Panel()
            .fill_opacity(10)
            .legend(
                gcommon.VizLegendOptions()
                .show_legend(True)
                .display_mode(common.LegendDisplayMode.LIST)
                .placement(common.LegendPlacement.BOTTOM)
            )
        )
    panel = panel.id(panel_id).title(chart.title).unit(chart.unit).datasource(DATASOURCE).grid_pos(position)
    if chart.description:
        panel = panel.description(chart.description)
    for ref, query in zip("ABCDEFGH", chart.queries, strict=False):
        panel = panel.with_target(
            gprom.Dataquery().expr(query.expr).legend_format(query.legend).ref_id(ref).datasource(DATASOURCE)
        )
    return panel


def build(spec: Spec) -> model.Dashboard:
    """The Grafana dashboard of `spec`."""
    variable = gdash.DatasourceVariable("datasource").label("Prometheus").type("prometheus")
    board = (
        gdash.Dashboard(spec.title)
        .uid(f"fulfilment-{spec.name}")
        .description(spec.description)
        .tags(["fulfilment"])
        .editable()
        .time("now-30m", "now")
        .refresh("30s")
        .timezone("utc")
        .with_variable(variable)
    )
    for panel_id, (chart, position) in enumerate(zip(spec.charts, _layout(spec.charts), strict=True), 1):
        board = board.with_panel(_panel(chart, position, panel_id))
    return board.build()


def rendered(spec: Spec) -> str:
    """The dashboard of `spec` as the JSON file Grafana loads (stable key order, newline at the end)."""
    return json.dumps(build(spec), cls=JSONEncoder, indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--write", action="store_true", help="write the JSON files")
    action.add_argument("--check", action="store_true", help="exit 1 if a committed file differs")
    args = parser.parse_args(argv)
    stale = []
    for spec in DASHBOARDS:
        path, text = OUTPUT / f"{spec.name}.json", rendered(spec)
        if args.write:
            OUTPUT.mkdir(exist_ok=True)
            path.write_text(text)
        elif not path.exists() or path.read_text() != text:
            stale.append(path.name)
    if stale:
        print(f"out of date: {', '.join(stale)}; run python -m deploy.grafana.dashboards --write")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
