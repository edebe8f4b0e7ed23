"""`projector`: rebuild and replay read models, and look after dead letters.

Subcommands: `rebuild`, `replay`, `dead-letters list|show|replay`, `position` (`--help`
and `docs/projector.md` describe each). Settings come from the service's environment
variables (`DATABASE_URL`, `REDIS_URL`, `KAFKA_BOOTSTRAP_SERVERS`, `SEARCH_URL`,
`PROJECTOR_*`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence

from eventstore import LogPosition
from fulfilment.registry import build_registry
from readmodels.keyspace import read_position
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from servicekit.settings import SettingsError

from projector_service.bootstrap import Projector
from projector_service.deadletters import read_dead_letters
from projector_service.rebuild import RebuildProgress, rebuild
from projector_service.replay import replay_dead_letters, replay_log, replay_stream
from projector_service.settings import ProjectorSettings, load_settings

__all__ = ["main"]

console = Console()

FIND_POSITION = "SELECT transaction_id::text FROM eventstore.events WHERE position = $1"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="projector", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("rebuild", help="rebuild a projection from the store and swap it in")
    build.add_argument("projection", choices=["redis", "search"])
    build.add_argument("--from-position", type=int, default=None, help="start at this global position")
    build.add_argument("--page-size", type=int, default=1000)
    build.add_argument(
        "--grace", type=float, default=5.0, help="seconds before the old generation is dropped"
    )
    again = commands.add_parser("replay", help="apply events from the store again, to the live generation")
    again.add_argument("projection", choices=["redis", "search"])
    which = again.add_mutually_exclusive_group(required=True)
    which.add_argument("--stream", help="one stream id, e.g. order-<uuid>")
    which.add_argument("--from-position", type=int, help="the log from this global position on")
    letters = commands.add_parser("dead-letters", help="list, show or replay dead letters")
    actions = letters.add_subparsers(dest="action", required=True)
    actions.add_parser("list")
    show = actions.add_parser("show")
    show.add_argument("id", help="partition:offset, as `list` prints it")
    replay = actions.add_parser("replay")
    replay.add_argument("ids", nargs="*", help="partition:offset ids (default: all not yet replayed)")
    replay.add_argument("--again", action="store_true", help="also those replayed before")
    commands.add_parser("position", help="the position each projection has reached")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit status."""
    args = _parser().parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as error:
        print(f"projector: {error}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_run(settings, args))
    except (KeyError, ValueError, RuntimeError) as error:
        print(f"projector: {error}", file=sys.stderr)
        return 1


async def _run(settings: ProjectorSettings, args: argparse.Namespace) -> int:
    if args.command == "dead-letters" and args.action in ("list", "show"):
        return await _show_dead_letters(settings, args)
    projector = await Projector.open(settings, build_registry(), pool_size=2)
    try:
        if args.command == "rebuild":
            return await _rebuild(projector, args)
        if args.command == "replay":
            return await _replay(projector, args)
        if args.command == "dead-letters":
            letters = await read_dead_letters(
                settings.kafka_bootstrap_servers, settings.projector_dead_letter_topic
            )
            if args.ids:
                letters = [letter for letter in letters if letter.id in set(args.ids)]
            outcomes = await replay_dead_letters(projector, letters, again=args.again)
            for outcome in outcomes:
                console.print(f"{outcome.id} {outcome.projection}: {outcome.outcome}")
            return 1 if any(o.outcome.startswith("failed") for o in outcomes) else 0
        for name in projector.names:
            console.print(f"{name}: {await read_position(projector.redis, projector.keyspace, name)}")
        return 0
    finally:
        await projector.close()


async def _log_position(projector: Projector, position: int) -> LogPosition:
    transaction_id = await projector.pool.fetchval(FIND_POSITION, position)
    if transaction_id is None:
        raise ValueError(f"no event at position {position}")
    return LogPosition(int(transaction_id), position - 1)  # just before that event


async def _rebuild(projector: Projector, args: argparse.Namespace) -> int:
    after = LogPosition.START
    if args.from_position is not None:
        after = await _log_position(projector, args.from_position)
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:>8.0f} events/s"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console) as bar:
        task = bar.add_task(f"rebuild {args.projection}", total=None, rate=0.0)

        def show(progress: RebuildProgress) -> None:
            bar.update(task, completed=progress.read, total=progress.total, rate=progress.rate,
                       description=f"rebuild {args.projection} ({progress.phase})")  # fmt: skip

        result = await rebuild(
            projector,
            args.projection,
            after=after,
            page_size=args.page_size,
            grace=args.grace,
            on_progress=show,
        )
    console.print(
        f"{args.projection}: generation {result.generation} is live; {result.read} events in "
        f"{result.seconds:.1f} s ({result.rate:.0f} events/s), {result.failed} failed"
    )
    return 1 if result.failed else 0


async def _replay(projector: Projector, args: argparse.Namespace) -> int:
    if args.stream:
        count = await replay_stream(projector, args.projection, args.stream)
        console.print(f"{args.stream}: {count} events applied again to {args.projection}")
        return 0
    after = await _log_position(projector, args.from_position)
    done = 0
    with Progress(TextColumn("replay"), MofNCompleteColumn(), console=console) as bar:
        task = bar.add_task("replay", total=None)
        async for done in replay_log(projector, args.projection, after):
            bar.update(task, completed=done)
    console.print(f"{done} events applied again to {args.projection}")
    return 0


async def _show_dead_letters(settings: ProjectorSettings, args: argparse.Namespace) -> int:
    letters = await read_dead_letters(settings.kafka_bootstrap_servers, settings.projector_dead_letter_topic)
    if args.action == "list":
        table = Table("id", "projection", "event", "stream", "position", "failed at", "error")
        for letter in letters:
            table.add_row(letter.id, letter.projection, letter.event_type or "?", letter.stream_id or "?",
                          str(letter.position), letter.failed_at, letter.error[:80])  # fmt: skip
        console.print(table)
        return 0
    found = next((letter for letter in letters if letter.id == args.id), None)
    if found is None:
        print(f"projector: no dead letter {args.id}", file=sys.stderr)
        return 1
    headers = {name: value.decode("utf-8", "replace") for name, value in found.headers}
    payload = (found.value or b"").decode("utf-8", "replace")
    console.print_json(json.dumps({"id": found.id, "headers": headers, "payload": payload}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
