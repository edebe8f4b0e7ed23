"""The load tool against the six services as processes: what its summary counts is what the query
service shows, its output without a terminal is lines, and failures end it with one clear line."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import Suite, minting, run_tool, urls

pytestmark = pytest.mark.slow

STATUSES = ("pending", "confirmed", "rejected", "cancelled")


async def order_counts(suite: Suite) -> dict[str, int]:
    """Every order of the suite's read model, by status (staff see every customer's)."""
    staff = suite.tokens("staff-1", ["staff"])
    async with httpx.AsyncClient(base_url=suite.query, timeout=10) as query:
        response = await query.get("/orders/counts", headers={"Authorization": f"Bearer {staff}"})
    assert response.status_code == 200, response.text
    counts: dict[str, int] = response.json()["counts"]
    return counts


async def counts_reaching(suite: Suite, expected: dict[str, int], timeout: float = 15) -> dict[str, int]:
    """The counts once they equal `expected`, or the last ones seen: the projector may trail the tally."""
    deadline = time.monotonic() + timeout
    while True:
        counts = await order_counts(suite)
        if counts == expected or time.monotonic() > deadline:
            return counts
        await asyncio.sleep(0.5)


def summary_of(path: Path) -> dict[str, Any]:
    summary: dict[str, Any] = json.loads(path.read_text())
    return summary


async def test_a_short_run_counts_what_the_query_service_shows(suite: Suite, tmp_path: Path) -> None:
    before = await order_counts(suite)
    summary_file = tmp_path / "summary.json"

    ran = await run_tool(
        *urls(suite), *minting(), "--rate", "5", "--duration", "4", "--drain", "60",
        "--cancel-share", "0.3", "--progress-every", "1", "--seed", "7", "--summary-json", str(summary_file),
    )  # fmt: skip

    assert ran.returncode == 0, f"{ran.stdout}\n{ran.stderr}\n{suite.log_tails()}"
    summary = summary_of(summary_file)
    statuses = summary["statuses"]
    assert summary["placed"] > 0
    assert summary["placed"] <= 5 * 4  # --rate x --duration: never faster
    assert summary["placed"] == sum(statuses.values())
    assert statuses["unseen"] == 0, summary
    assert statuses["pending"] == 0, f"the saga settled every order within the drain: {summary}"
    assert summary["visible"]["count"] == summary["placed"]
    assert summary["completion"]["count"] == summary["placed"]
    assert summary["error"] is None
    expected = {status: before[status] + statuses[status] for status in STATUSES}
    assert await counts_reaching(suite, expected) == expected


async def test_output_without_a_terminal_is_one_progress_line_every_few_seconds(suite: Suite) -> None:
    ran = await run_tool(
        *urls(suite), *minting(), "--rate", "3", "--duration", "3", "--progress-every", "1", "--drain", "30"
    )

    assert ran.returncode == 0, f"{ran.stdout}\n{ran.stderr}"
    assert "\x1b" not in ran.stdout  # no cursor movements or colours
    assert "\r" not in ran.stdout
    progress = [line for line in ran.stdout.splitlines() if line.startswith("[")]
    assert len(progress) >= 2, ran.stdout
    assert all(" placed " in line and " saga p50 " in line for line in progress), progress
    assert "Summary after" in ran.stdout


async def test_the_saga_api_can_be_the_measure_of_completion(suite: Suite, tmp_path: Path) -> None:
    summary_file = tmp_path / "summary.json"

    ran = await run_tool(
        *urls(suite, saga=True), *minting(), "--max-orders", "3", "--rate", "5", "--duration", "10",
        "--drain", "60", "--cancel-share", "0", "--summary-json", str(summary_file),
    )  # fmt: skip

    assert ran.returncode == 0, f"{ran.stdout}\n{ran.stderr}"
    summary = summary_of(summary_file)
    assert summary["placed"] == 3  # --max-orders
    assert summary["completion"]["count"] == 3
    assert summary["statuses"]["pending"] == 0


async def test_a_staff_token_the_services_refuse_is_one_line_and_exit_1(suite: Suite) -> None:
    ran = await run_tool(
        *urls(suite), *minting("another-secret-that-is-long-enough-for-hs256"), "--duration", "1"
    )

    assert ran.returncode == 1
    assert len(ran.stderr.strip().splitlines()) == 1
    assert ran.stderr.startswith("fulfilment-load: error: the command service refused the staff token: 401")
    assert "Traceback" not in ran.stdout + ran.stderr


async def test_a_refused_customer_token_stops_the_run_and_is_reported(suite: Suite) -> None:
    staff = suite.tokens("staff-1", ["staff"])
    no_customer = suite.tokens("staff-2", ["staff"])  # a valid token without the customer role

    ran = await run_tool(
        *urls(suite), "--staff-token", staff, "--token", no_customer, "--rate", "5", "--duration", "30",
        "--drain", "5",
    )  # fmt: skip

    assert ran.returncode == 1
    assert "Summary after" in ran.stdout  # what happened until then is still shown
    assert (
        ran.stderr.strip()
        .splitlines()[-1]
        .startswith("fulfilment-load: error: the command service refused the customer token: 403")
    ), ran.stderr
    assert "Traceback" not in ran.stdout + ran.stderr


async def test_an_unreachable_query_service_is_one_line_and_exit_1(suite: Suite) -> None:
    ran = await run_tool(
        "--command-url", suite.command, "--query-url", "http://127.0.0.1:9", *minting(), "--duration", "1"
    )

    assert ran.returncode == 1
    assert (
        ran.stderr
        == "fulfilment-load: error: cannot reach the query service at http://127.0.0.1:9: "
        + (ran.stderr.split(": ", 3)[-1])
    )
    assert len(ran.stderr.strip().splitlines()) == 1


async def test_ctrl_c_stops_placing_and_still_ends_with_the_summary(suite: Suite, tmp_path: Path) -> None:
    summary_file = tmp_path / "summary.json"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "fulfilment_load", *urls(suite), *minting(), "--rate", "4", "--duration", "120",
        "--progress-every", "1", "--summary-json", str(summary_file),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None
    first = await asyncio.wait_for(process.stdout.readline(), 120)  # the run is under way
    assert first.startswith(b"["), first

    process.send_signal(signal.SIGINT)
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)

    assert process.returncode == 0, f"{stdout.decode()}\n{stderr.decode()}"
    assert b"Summary after" in stdout
    summary = summary_of(summary_file)
    assert 0 < summary["placed"] < 4 * 120
    assert summary["placed"] == sum(summary["statuses"].values())
