"""Draw the dashboards as PNG images from a real Prometheus, laid out as Grafana lays them out.

    python -m deploy.grafana.render --prometheus "$PROMETHEUS_URL" --minutes 15

There is no Grafana where the docs are made: this reads each committed dashboard
(deploy/grafana/dashboards/*.json), asks Prometheus for every panel's
expressions over the last minutes (`/api/v1/query_range`) and draws the panels
with matplotlib on the dashboard's 24-column grid, with their titles, units and
legends (Grafana's `{{label}}` legend syntax filled in). Stat panels show each
series' last value. The images go to docs/images/dashboards/<name>.png.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from matplotlib.axes import Axes
from matplotlib.figure import Figure  # not pyplot: no display, no global state
from matplotlib.ticker import FuncFormatter, MultipleLocator

from deploy.grafana.dashboards import OUTPUT, promql

__all__ = ["Series", "draw", "fetch", "main"]

IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images" / "dashboards"
ROW_INCHES = 0.32  # one of Grafana's grid rows (30 px) at the images' scale
WIDTH_INCHES = 16.0
TITLE_INCHES = 0.8
DPI = 64  # keeps each image well under 200 KB
_LEGEND = re.compile(r"\{\{\s*(\w+)\s*\}\}")

type Series = tuple[str, list[float], list[float]]  # legend, Unix times, values


def legend(template: str, labels: dict[str, str]) -> str:
    """Grafana's legend format: `{{name}}` becomes the series' label value."""
    return _LEGEND.sub(lambda match: labels.get(match.group(1), ""), template).strip() or "value"


def fetch(
    client: httpx.Client, target: dict[str, Any], start: float, end: float, step: float
) -> list[Series]:
    """The series of one panel query over [start, end], as (legend, times, values)."""
    answer = client.get(
        "/api/v1/query_range",
        params={"query": promql(target["expr"]), "start": start, "end": end, "step": step},
    ).json()
    if answer["status"] != "success":
        raise RuntimeError(f"{target['expr']!r}: {answer.get('error')}")
    series = []
    for result in answer["data"]["result"]:
        times = [float(t) for t, _ in result["values"]]
        values = [float(v) for _, v in result["values"]]
        series.append((legend(target.get("legendFormat", ""), result["metric"]), times, values))
    return series


def formatter(unit: str) -> Callable[[float], str]:
    """A value as Grafana shows it in `unit`."""

    def seconds(value: float) -> str:
        if value == 0 or abs(value) >= 1:
            return f"{value:.3g} s"
        return f"{value * 1000:.3g} ms"

    by_unit: dict[str, Callable[[float], str]] = {
        "s": seconds,
        "percentunit": lambda value: f"{value * 100:.3g}%",
        "reqps": lambda value: f"{value:.3g} req/s",
        "ops": lambda value: f"{value:.3g}/s",
    }
    return by_unit.get(unit, lambda value: f"{value:.4g}")


def _tick_step(span: float) -> float:
    """Seconds between time ticks, on the clock's round numbers, at most six ticks over `span`."""
    for step in (15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600):
        if span / step <= 6:
            return float(step)
    return 86400.0


def _draw_timeseries(ax: Axes, series: list[Series], unit: str) -> None:
    for name, times, values in series:
        ax.plot(times, values, linewidth=1.2, label=name)
    show = formatter(unit)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: show(value)))
    times = [at for _, ts, _ in series for at in ts]
    step = _tick_step(max(times) - min(times) if times else 0.0)
    clock = "%H:%M" if step >= 60 else "%H:%M:%S"
    ax.xaxis.set_major_locator(MultipleLocator(step))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda at, _: datetime.fromtimestamp(at, UTC).strftime(clock)))
    values = [value for _, _, vs in series for value in vs if math.isfinite(value)]
    low, high = min([0.0, *values]), max([0.0, *values])
    # As Grafana does: a flat zero line sits low on a 0..1 axis instead of on the frame.
    ax.set_ylim(low, high * 1.1 if high > low else low + 1)
    ax.grid(alpha=0.3)
    ax.tick_params(labelsize=7)
    if series:
        ax.legend(fontsize=6, loc="upper left", ncol=max(1, min(4, len(series) // 3 + 1)), framealpha=0.6)


def _draw_stat(ax: Axes, series: list[Series], unit: str) -> None:
    ax.set_axis_off()
    show = formatter(unit)
    for index, (name, _, values) in enumerate(series):
        last = values[-1] if values else math.nan
        x = (index + 0.5) / len(series)
        ax.text(x, 0.5, show(last), ha="center", va="center", fontsize=20, transform=ax.transAxes)
        ax.text(x, 0.15, name, ha="center", va="center", fontsize=8, transform=ax.transAxes)


def draw(
    board: dict[str, Any], panels: list[tuple[dict[str, Any], list[Series]]], path: Path, span: str
) -> None:
    """Draw `panels` (each with its series) on the dashboard's grid and save a PNG at `path`."""
    rows = max(panel["gridPos"]["y"] + panel["gridPos"]["h"] for panel, _ in panels)
    height = rows * ROW_INCHES + TITLE_INCHES
    figure = Figure(figsize=(WIDTH_INCHES, height), dpi=DPI)
    grid = figure.add_gridspec(rows, 24, left=0.04, right=0.99, top=1 - TITLE_INCHES / height,
                               bottom=0.02, hspace=6.0, wspace=2.5)  # fmt: skip
    figure.suptitle(
        f"{board['title']}  ({span})", fontsize=12, x=0.01, y=1 - 0.1 / height, ha="left", va="top"
    )
    for panel, series in panels:
        at = panel["gridPos"]
        # Leave the panel's last grid row for the x labels and the next title, as Grafana's gutter does.
        ax = figure.add_subplot(grid[at["y"] : at["y"] + at["h"] - 1, at["x"] : at["x"] + at["w"]])
        ax.set_title(panel["title"], fontsize=9, loc="left")
        unit = panel["fieldConfig"]["defaults"].get("unit", "")
        if not series:
            ax.set_axis_off()
            ax.text(0.5, 0.5, "No data", ha="center", va="center", fontsize=10, color="grey")
        elif panel["type"] == "stat":
            _draw_stat(ax, series, unit)
        else:
            _draw_timeseries(ax, series, unit)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=DPI)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--prometheus", required=True, help="Prometheus URL, e.g. $PROMETHEUS_URL")
    parser.add_argument("--minutes", type=float, default=15.0, help="how far back the graphs go")
    parser.add_argument("--out", type=Path, default=IMAGES, help="where the PNG files go")
    parser.add_argument("dashboards", nargs="*", help="names (overview, relay, ...); all when none")
    args = parser.parse_args(argv)
    end = time.time()
    start = end - args.minutes * 60
    step = max(5.0, (end - start) / 240)
    span = f"last {args.minutes:g} minutes to {datetime.fromtimestamp(end, UTC):%Y-%m-%d %H:%M} UTC"
    with httpx.Client(base_url=args.prometheus, timeout=30) as client:
        for path in sorted(OUTPUT.glob("*.json")):
            if args.dashboards and path.stem not in args.dashboards:
                continue
            board = json.loads(path.read_text())
            panels = [
                (panel, [s for target in panel["targets"] for s in fetch(client, target, start, end, step)])
                for panel in board["panels"]
            ]
            image = args.out / f"{path.stem}.png"
            draw(board, panels, image, span)
            print(f"{image} ({image.stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
