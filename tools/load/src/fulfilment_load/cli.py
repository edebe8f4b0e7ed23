"""`fulfilment-load`: drive realistic traffic through a deployment's public HTTP APIs.

    fulfilment-load --rate 20 --duration 60 --jwt-secret "$JWT_SECRET"
    fulfilment-load --command-url https://orders.example --query-url https://reads.example \\
        --token "$CUSTOMER_TOKEN" --staff-token "$STAFF_TOKEN" --max-orders 500

Exit status: 0 after a run, 1 when the deployment cannot be reached or refuses a token
(one line on stderr says which), 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import signal
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import httpx
from rich.console import Console

from fulfilment_load.api import SuiteClient, Unreachable
from fulfilment_load.display import showing_progress, summary_table
from fulfilment_load.stats import Stats, Summary
from fulfilment_load.tokens import Credentials, Minter
from fulfilment_load.traffic import Plan, Run, SetupFailed

__all__ = ["main", "parser"]


def _positive(kind: type[int] | type[float]) -> Callable[[str], int | float]:
    def parse(text: str) -> int | float:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be above 0, not {text}")
        return value

    parse.__name__ = kind.__name__
    return parse


def _share(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, not {text}")
    return value


def parser() -> argparse.ArgumentParser:
    """The command line; defaults aim at the local stack (`./dev up`)."""
    p = argparse.ArgumentParser(
        prog="fulfilment-load",
        description="Drive realistic traffic through the suite's public HTTP APIs and show how it fares.",
    )
    bounds = p.add_argument_group("bounds")
    bounds.add_argument("--rate", type=_positive(float), default=20.0, help="orders a second, at most")
    bounds.add_argument("--duration", type=_positive(float), default=60.0, help="seconds of placing orders")
    bounds.add_argument("--max-orders", type=_positive(int), help="stop placing after this many orders")
    bounds.add_argument(
        "--drain", type=float, default=15.0, help="seconds open orders get to settle after placing stops"
    )
    where = p.add_argument_group("deployment")
    where.add_argument("--command-url", default="http://127.0.0.1:8001")
    where.add_argument("--query-url", default="http://127.0.0.1:8002")
    where.add_argument(
        "--saga-url", help="the saga's API: completion is then its `/sagas/{order id}` reaching `done`"
    )
    where.add_argument("--timeout", type=_positive(float), default=10.0, help="seconds per request")
    where.add_argument("--connections", type=_positive(int), default=64, help="per service, at most")
    auth = p.add_argument_group("tokens (given ones win; the rest are minted from the JWT secret)")
    auth.add_argument("--token", help="a customer's bearer token: every order is theirs")
    auth.add_argument("--staff-token", help="a bearer token with the staff role")
    auth.add_argument("--jwt-secret", default=os.environ.get("JWT_SECRET"), help="default $JWT_SECRET")
    auth.add_argument("--jwt-issuer", default=os.environ.get("JWT_ISSUER", "fulfilment-local"))
    auth.add_argument("--jwt-audience", default=os.environ.get("JWT_AUDIENCE", "fulfilment"))
    auth.add_argument("--customers", type=_positive(int), default=20, help="minted customers")
    mix = p.add_argument_group("traffic")
    mix.add_argument("--products", type=_positive(int), default=5)
    mix.add_argument("--stock", type=_positive(int), default=1000, help="units received per product")
    mix.add_argument("--cancel-share", type=_share, default=0.1, help="share of orders cancelled")
    mix.add_argument("--tag", default=None, help="names this run's products and customers (default random)")
    mix.add_argument("--seed", type=int, help="makes the order mix repeatable")
    out = p.add_argument_group("output")
    out.add_argument(
        "--progress-every",
        type=_positive(float),
        default=5.0,
        help="seconds between lines when not a terminal",
    )
    out.add_argument("--summary-json", type=Path, help="also write the summary to this file as JSON")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `fulfilment-load`."""
    args = parser().parse_args(argv)
    tag = args.tag or secrets.token_hex(4)
    minter = Minter(args.jwt_secret, args.jwt_issuer, args.jwt_audience) if args.jwt_secret else None
    try:
        credentials = Credentials.of(
            token=args.token, staff_token=args.staff_token, minter=minter, customers=args.customers, tag=tag
        )
    except ValueError as e:
        return _fail(str(e))
    plan = Plan(
        rate=args.rate,
        duration=args.duration,
        max_orders=args.max_orders,
        tag=tag,
        products=args.products,
        stock=args.stock,
        cancel_share=args.cancel_share,
        drain=args.drain,
        seed=args.seed,
    )
    console = Console()
    try:
        summary = asyncio.run(_run(args, plan, credentials, console))
    except (Unreachable, SetupFailed) as e:
        return _fail(str(e))
    except KeyboardInterrupt:
        return _fail("interrupted before the summary", status=130)
    console.print(summary_table(summary))
    if args.summary_json is not None:
        args.summary_json.write_text(json.dumps(summary.as_json(), indent=2) + "\n")
    if summary.error is not None:
        return _fail(summary.error)
    return 0


async def _run(args: argparse.Namespace, plan: Plan, credentials: Credentials, console: Console) -> Summary:
    stats = Stats()
    async with _clients(args) as (command, query, saga):
        run = Run(SuiteClient(stats, command=command, query=query, saga=saga), credentials, plan, stats)
        await run.setup()
        loop = asyncio.get_running_loop()
        signals = (signal.SIGINT, signal.SIGTERM)

        def stop() -> None:
            # The first Ctrl-C stops placing orders; the run then drains and prints its summary. The
            # next one is Python's own again: it interrupts the drain.
            if run.stop.is_set():
                for signum in signals:
                    loop.remove_signal_handler(signum)
            run.stop.set()

        for signum in signals:
            loop.add_signal_handler(signum, stop)
        async with showing_progress(console, stats, every=args.progress_every):
            await run.traffic()
        return await run.tally()


@contextlib.asynccontextmanager
async def _clients(
    args: argparse.Namespace,
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient, httpx.AsyncClient | None]]:
    limits = httpx.Limits(max_connections=args.connections, max_keepalive_connections=args.connections)

    def client(url: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=url, timeout=args.timeout, limits=limits)

    async with contextlib.AsyncExitStack() as stack:
        command = await stack.enter_async_context(client(args.command_url))
        query = await stack.enter_async_context(client(args.query_url))
        saga = await stack.enter_async_context(client(args.saga_url)) if args.saga_url else None
        yield command, query, saga


def _fail(message: str, *, status: int = 1) -> int:
    print(f"fulfilment-load: error: {message}", file=sys.stderr)
    return status
