"""The load tool's parts that need no servers: percentiles, tokens, the summary, the command line."""

from __future__ import annotations

from collections import Counter

import jwt
import pytest
from fulfilment_load.display import progress_line
from fulfilment_load.stats import Stats, Summary, percentile
from fulfilment_load.tokens import Credentials, Minter

from .conftest import run_tool


def test_percentiles_are_times_a_request_really_took() -> None:
    samples = [0.010, 0.020, 0.030, 0.040, 1.000]

    assert percentile(samples, 0.5) == 0.030
    assert percentile(samples, 0.99) == 1.000
    assert percentile([], 0.5) is None


def test_minted_tokens_carry_the_claims_the_services_verify() -> None:
    minter = Minter("a-secret-that-is-long-enough-for-hs256!!", "https://issuer", "suite")

    credentials = Credentials.of(token=None, staff_token=None, minter=minter, customers=3, tag="t1")

    staff = jwt.decode(credentials.staff, minter.secret, algorithms=["HS256"], audience="suite")
    assert staff["roles"] == ["staff"]
    assert staff["iss"] == "https://issuer"
    assert len(set(credentials.customers)) == 3
    subjects = {
        jwt.decode(token, minter.secret, algorithms=["HS256"], audience="suite")["sub"]
        for token in credentials.customers
    }
    assert subjects == {"load-t1-customer-0", "load-t1-customer-1", "load-t1-customer-2"}


def test_given_tokens_win_over_minted_ones() -> None:
    minter = Minter("a-secret-that-is-long-enough-for-hs256!!", "i", "a")

    credentials = Credentials.of(token="given", staff_token="staff", minter=minter, customers=5, tag="t")

    assert credentials == Credentials(staff="staff", customers=("given",))


def test_without_a_secret_the_missing_token_is_named() -> None:
    with pytest.raises(ValueError, match="--staff-token"):
        Credentials.of(token="customer", staff_token=None, minter=None, customers=1, tag="t")


def test_the_summary_accounts_for_every_placed_order() -> None:
    stats = Stats(placed=4)
    stats.command_answers.update({201: 4, 429: 1})
    stats.command.add(0.012)
    summary = Summary(seconds=2.0, stats=stats, statuses=Counter(confirmed=2, cancelled=1, unseen=1))

    data = summary.as_json()

    assert data["statuses"] == {"pending": 0, "confirmed": 2, "rejected": 0, "cancelled": 1, "unseen": 1}
    assert data["command_answers"] == {"201": 4, "429": 1}
    assert data["command"] == {"count": 1, "p50_ms": 12.0, "p99_ms": 12.0}


def test_a_progress_line_is_one_line() -> None:
    stats = Stats(placed=3)
    stats.outcomes.update(confirmed=2)

    line = progress_line(stats, 5.0)

    assert "\n" not in line
    assert "placed 3 confirmed 2 rejected 0 cancelled 0 open 1" in line


async def test_an_unreachable_command_service_is_one_line_and_exit_1() -> None:
    ran = await run_tool(
        "--command-url", "http://127.0.0.1:9", "--jwt-secret", "a-secret-that-is-long-enough-for-hs256!!",
        "--duration", "1",
    )  # fmt: skip

    assert ran.returncode == 1
    assert ran.stdout == ""
    assert ran.stderr.startswith(
        "fulfilment-load: error: cannot reach the command service at http://127.0.0.1:9"
    )
    assert len(ran.stderr.strip().splitlines()) == 1


async def test_without_tokens_or_a_secret_the_tool_says_what_to_give() -> None:
    ran = await run_tool("--jwt-secret", "", "--duration", "1")

    assert ran.returncode == 1
    assert (
        ran.stderr
        == "fulfilment-load: error: give --token or a JWT secret to mint it (--jwt-secret or JWT_SECRET)\n"
    )
