"""What a person watches: a live table on a terminal, one progress line every few seconds otherwise
(a log file, CI, a pipe), and the summary table at the end."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable

from rich.console import Console
from rich.live import Live
from rich.table import Table

from fulfilment_load.stats import OUTCOMES, STATUSES, Stats, Summary, Timings

__all__ = ["progress_line", "showing_progress", "summary_table"]


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.0f}ms"


def _percentiles(timings: Timings) -> str:
    return f"p50 {_ms(timings.p50)} p99 {_ms(timings.p99)}"


def _answers(counts: Counter[int]) -> str:
    return " ".join(f"{status}x{count}" for status, count in sorted(counts.items())) or "-"


def _orders(stats: Stats) -> str:
    settled = " ".join(f"{name} {stats.outcomes[name]}" for name in OUTCOMES)
    return f"placed {stats.placed} {settled} open {stats.placed - sum(stats.outcomes.values())}"


def progress_line(stats: Stats, elapsed: float) -> str:
    """One line of progress: what a log keeps every few seconds."""
    failures = sum(stats.failures.values())
    return (
        f"[{elapsed:6.1f}s] {_orders(stats)} | "
        f"commands {_answers(stats.command_answers)} queries {_answers(stats.query_answers)}"
        f"{f' no-answer {failures}' if failures else ''} | "
        f"command {_percentiles(stats.command)} | visible {_percentiles(stats.visible)} | "
        f"saga {_percentiles(stats.completion)}"
    )


def _live_table(stats: Stats, elapsed: float) -> Table:
    table = Table(title=f"fulfilment-load: {elapsed:.1f}s", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    table.add_row("orders", _orders(stats))
    table.add_row("command answers", _answers(stats.command_answers))
    table.add_row("query answers", _answers(stats.query_answers))
    if stats.failures:
        table.add_row("no answer", str(sum(stats.failures.values())))
    table.add_row("command answer", _percentiles(stats.command))
    table.add_row("visible in query", _percentiles(stats.visible))
    table.add_row("saga completion", _percentiles(stats.completion))
    return table


@contextlib.asynccontextmanager
async def showing_progress(console: Console, stats: Stats, *, every: float) -> AsyncIterator[None]:
    """Show progress while the body runs: a live table on a terminal, else a line every `every` seconds."""
    started = time.monotonic()

    def elapsed() -> float:
        return time.monotonic() - started

    if console.is_terminal:
        with Live(_live_table(stats, 0), console=console, refresh_per_second=4, transient=False) as live:
            async with _repeating(lambda: live.update(_live_table(stats, elapsed())), 0.25):
                yield
            live.update(_live_table(stats, elapsed()))
    else:
        async with _repeating(lambda: print(progress_line(stats, elapsed()), flush=True), every):
            yield


@contextlib.asynccontextmanager
async def _repeating(action: Callable[[], None], every: float) -> AsyncIterator[None]:
    async def loop() -> None:
        while True:
            await asyncio.sleep(every)
            action()

    task = asyncio.create_task(loop())
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def summary_table(summary: Summary) -> Table:
    """The end of a run: counts, each placed order's last status, answers and times."""
    stats = summary.stats
    table = Table(title=f"Summary after {summary.seconds:.1f}s", title_justify="left")
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("orders placed", str(stats.placed))
    for status in STATUSES:
        table.add_row(f"  now {status}", str(summary.statuses.get(status, 0)))
    table.add_row("cancellations accepted", str(stats.cancels))
    table.add_row("restocks", str(stats.restocks))
    table.add_row("command answers", _answers(stats.command_answers))
    table.add_row("query answers", _answers(stats.query_answers))
    table.add_row("requests without an answer", str(sum(stats.failures.values())))
    for name, timings in (
        ("command answer", stats.command),
        ("visible in query", stats.visible),
        ("saga completion", stats.completion),
    ):
        table.add_row(f"{name} p50", _ms(timings.p50))
        table.add_row(f"{name} p99", _ms(timings.p99))
    return table
