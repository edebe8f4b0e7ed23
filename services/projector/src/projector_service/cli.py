"""`projector`: rebuild and replay read models, look after dead letters, show positions.

`projector --help` lists the subcommands, the variables each reads and the exit statuses.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING, Annotated

import msgspec
from servicekit.settings import (
    HttpUrl,
    KafkaServers,
    PostgresUrl,
    RedisUrl,
    SettingsError,
    describe_variables,
    from_env,
)

from projector_service.servers import ServerError, one_line, reaching

if TYPE_CHECKING:
    from eventstore import LogPosition
    from redis.asyncio import Redis

    from projector_service.bootstrap import Projector
    from projector_service.deadletters import DeadLetter

__all__ = ["main"]

# Deliberately light: importing this module costs msgspec and nothing else heavy. Each
# subcommand imports the clients it uses when it runs (the search clients alone take
# seconds to import on a busy machine), so `--help` and `position` start fast.

PROJECTIONS = ("redis", "search")
PREFIX = "PROJECTOR_"  # as the service: PROJECTOR_REDIS_URL wins over REDIS_URL
CONNECT_TIMEOUT = 10.0  # seconds
FIND_POSITION = "SELECT transaction_id::text FROM eventstore.events WHERE position = $1"

# The defaults are the service's (`ProjectorSettings`); a test keeps them equal.
DEFAULT_DEAD_LETTER_TOPIC = "fulfilment.projector.dlq"
DEFAULT_PROJECTIONS = "redis,search"


class PositionSettings(msgspec.Struct, frozen=True, kw_only=True):
    """`position` reads Redis only."""

    redis_url: RedisUrl
    projector_key_prefix: str = ""
    projector_projections: str = DEFAULT_PROJECTIONS


class DeadLetterSettings(msgspec.Struct, frozen=True, kw_only=True):
    """`dead-letters list` and `show` read the dead-letter topic only."""

    kafka_bootstrap_servers: KafkaServers
    projector_dead_letter_topic: str = DEFAULT_DEAD_LETTER_TOPIC


class StoreSettings(msgspec.Struct, frozen=True, kw_only=True):
    """`rebuild` and `replay`: the store, Redis, and for the search projection the search engine."""

    database_url: PostgresUrl
    redis_url: RedisUrl
    search_url: HttpUrl | None = None  # required for the search projection
    projector_key_prefix: str = ""
    projector_max_backoff: Annotated[float, msgspec.Meta(gt=0)] = 5.0


class DeadLetterReplaySettings(StoreSettings, frozen=True, kw_only=True):
    """`dead-letters replay`: the topic, and the projections its letters are applied to."""

    kafka_bootstrap_servers: KafkaServers
    projector_dead_letter_topic: str = DEFAULT_DEAD_LETTER_TOPIC
    projector_projections: str = DEFAULT_PROJECTIONS


def _projections(value: str) -> list[str]:
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = sorted(set(names) - set(PROJECTIONS))
    if unknown:
        raise SettingsError(f"PROJECTOR_PROJECTIONS: unknown projection(s) {unknown}")
    return names


def _variables(settings: type[msgspec.Struct], note: str = "") -> str:
    described = describe_variables(settings, prefix=PREFIX)
    return f"environment variables it reads:\n{described}\n{note}".rstrip()


SEARCH_NOTE = "  (SEARCH_URL is required for the search projection only)"


# The epilog of `--help`: kept out of the module docstring, which says only what this is.
_HELP = """\
    projector rebuild redis|search [--from-position P]   new generation from the store, then swap
    projector replay redis|search --stream order-...      apply one stream again (live generation)
    projector replay redis|search --from-position P       apply the log from P again (live generation)
    projector dead-letters list                           what the dead-letter topic holds
    projector dead-letters show ID                        one dead letter, headers and payload
    projector dead-letters replay [ID ...] [--again]      apply them again (all when no ID is given)
    projector position                                    how far each projection has reached

Each subcommand reads only the environment variables it uses, by the service's
names (PROJECTOR_REDIS_URL, else REDIS_URL, and so on; `projector SUBCOMMAND --help`
lists them with the optional PROJECTOR_* ones), and imports and connects only what
it uses:

    position                   REDIS_URL
    dead-letters list, show    KAFKA_BOOTSTRAP_SERVERS
    rebuild, replay            DATABASE_URL, REDIS_URL, and SEARCH_URL for search
    dead-letters replay        KAFKA_BOOTSTRAP_SERVERS, DATABASE_URL, REDIS_URL, and
                               SEARCH_URL while PROJECTOR_PROJECTIONS includes search

Exit status: 0 done; 1 failed, said in one line on stderr (a server that cannot be
reached is named with its host, never its password; a stream the store does not
hold; events that failed); 2 a wrong argument or a missing or malformed variable.
"""


def _parser() -> argparse.ArgumentParser:
    def command(
        group: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help: str, epilog: str
    ) -> argparse.ArgumentParser:
        return group.add_parser(
            name, help=help, description=help, epilog=epilog, formatter_class=argparse.RawTextHelpFormatter
        )

    parser = argparse.ArgumentParser(
        prog="projector",
        description=(__doc__ or "").partition("\n\n")[0],
        epilog=_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    store = _variables(StoreSettings, SEARCH_NOTE)
    build = command(commands, "rebuild", "rebuild a projection from the store and swap it in", store)
    build.add_argument("projection", choices=PROJECTIONS)
    build.add_argument("--from-position", type=int, default=None, help="start at this global position")
    build.add_argument("--page-size", type=int, default=1000)
    build.add_argument(
        "--grace", type=float, default=5.0, help="seconds before the old generation is dropped"
    )
    again = command(commands, "replay", "apply events from the store again, to the live generation", store)
    again.add_argument("projection", choices=PROJECTIONS)
    which = again.add_mutually_exclusive_group(required=True)
    which.add_argument("--stream", help="one stream id, e.g. order-<uuid>")
    which.add_argument("--from-position", type=int, help="the log from this global position on")
    letters = command(
        commands,
        "dead-letters",
        "list, show or replay dead letters",
        f"list, show: {_variables(DeadLetterSettings)}\n\n"
        f"replay: {_variables(DeadLetterReplaySettings, SEARCH_NOTE)}",
    )
    actions = letters.add_subparsers(dest="action", required=True)
    command(actions, "list", "what the dead-letter topic holds", _variables(DeadLetterSettings))
    show = command(actions, "show", "one dead letter, headers and payload", _variables(DeadLetterSettings))
    show.add_argument("id", help="partition:offset, as `list` prints it")
    replay = command(
        actions,
        "replay",
        "apply dead letters again (after the fix)",
        _variables(DeadLetterReplaySettings, SEARCH_NOTE),
    )
    replay.add_argument("ids", nargs="*", help="partition:offset ids (default: all not yet replayed)")
    replay.add_argument("--again", action="store_true", help="also those replayed before")
    command(commands, "position", "the position each projection has reached", _variables(PositionSettings))
    return parser


def _settings_class(args: argparse.Namespace) -> type[msgspec.Struct]:
    if args.command == "position":
        return PositionSettings
    if args.command == "dead-letters":
        return DeadLetterReplaySettings if args.action == "replay" else DeadLetterSettings
    return StoreSettings


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit status."""
    args = _parser().parse_args(argv)
    try:
        settings = from_env(_settings_class(args), prefix=PREFIX)
        projections = _needed_projections(settings, args)
    except SettingsError as error:
        print(f"projector: {error}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_run(settings, projections, args))
    except (ServerError, LookupError, ValueError, RuntimeError, OSError) as error:
        # A server that failed, or what the commands raise for a wrong input or a failed event
        # (StreamNotFound, a position the log does not hold, a rebuild already running): one
        # line, no traceback. Anything else is a bug, and its traceback is wanted.
        print(f"projector: {one_line(str(error))}", file=sys.stderr)
        return 1


def _needed_projections(settings: msgspec.Struct, args: argparse.Namespace) -> list[str]:
    if isinstance(settings, PositionSettings):
        return _projections(settings.projector_projections)
    if isinstance(settings, DeadLetterReplaySettings):
        names = _projections(settings.projector_projections)
    elif isinstance(settings, StoreSettings):
        names = [args.projection]
    else:
        return []
    if "search" in names and settings.search_url is None:
        raise SettingsError(
            "missing environment variable(s): PROJECTOR_SEARCH_URL (or SEARCH_URL), "
            "which the search projection needs"
        )
    return names


async def _run(settings: msgspec.Struct, projections: list[str], args: argparse.Namespace) -> int:
    if isinstance(settings, PositionSettings):
        return await _position(settings, projections)
    if isinstance(settings, DeadLetterReplaySettings):
        return await _replay_dead_letters(settings, projections, args)
    if isinstance(settings, DeadLetterSettings):
        return await _show_dead_letters(settings, args)
    assert isinstance(settings, StoreSettings)
    async with _projector(settings, projections) as projector:
        if args.command == "rebuild":
            return await _rebuild(projector, args)
        return await _replay(projector, args)


@asynccontextmanager
async def _redis(url: str) -> AsyncIterator[Redis]:
    from redis.asyncio import Redis
    from redis.exceptions import RedisError

    redis = Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
    try:
        async with reaching("Redis", url, RedisError, OSError):
            await redis.ping()  # connects, so an unreachable Redis is reported as such
        async with reaching("Redis", url, RedisError):  # later on, a bare OSError may be anyone's
            yield redis
    finally:
        await redis.aclose()


async def _position(settings: PositionSettings, projections: list[str]) -> int:
    from readmodels.keyspace import Keyspace, read_position

    keyspace = Keyspace(settings.projector_key_prefix)
    async with _redis(settings.redis_url) as redis:
        for name in projections:
            print(f"{name}: {await read_position(redis, keyspace, name)}")
    return 0


@asynccontextmanager
async def _projector(settings: StoreSettings, projections: Sequence[str]) -> AsyncIterator[Projector]:
    """A Projector running `projections`, each server connected (and named when it fails) in turn."""
    from eventstore import EventStoreError, connect
    from fulfilment.registry import build_registry
    from readmodels.search import SearchRejected, SearchUnavailable, connect_search

    from projector_service.bootstrap import Projector
    from projector_service.settings import ProjectorSettings

    async with AsyncExitStack() as stack:
        redis = await stack.enter_async_context(_redis(settings.redis_url))
        async with reaching("PostgreSQL", settings.database_url, EventStoreError, OSError):
            # asyncpg waits 60 s for a port that accepts but never answers (another server's).
            async with asyncio.timeout(CONNECT_TIMEOUT):
                pool = await connect(settings.database_url, min_size=1, max_size=2)
        stack.push_async_callback(pool.close)
        search = None
        if "search" in projections and settings.search_url is not None:
            async with reaching("the search engine", settings.search_url, SearchUnavailable, SearchRejected):
                search = await connect_search(settings.search_url)
            stack.push_async_callback(search.close)
        # The Projector takes the service's settings; it never reads the Kafka address (only the
        # service's consumers do), nor the search URL without the search projection, so those
        # stay empty rather than being asked for.
        service_settings = ProjectorSettings(
            database_url=settings.database_url,
            redis_url=settings.redis_url,
            search_url=settings.search_url or "",
            kafka_bootstrap_servers="",
            projector_key_prefix=settings.projector_key_prefix,
            projector_projections=",".join(projections),
            projector_max_backoff=settings.projector_max_backoff,
        )
        projector = Projector(service_settings, build_registry(), redis, search, pool)
        stack.push_async_callback(projector.store.close)
        yield projector


async def _log_position(projector: Projector, position: int) -> LogPosition:
    from eventstore import LogPosition

    transaction_id = await projector.pool.fetchval(FIND_POSITION, position)
    if transaction_id is None:
        raise ValueError(f"no event at position {position}")
    return LogPosition(int(transaction_id), position - 1)  # just before that event


async def _rebuild(projector: Projector, args: argparse.Namespace) -> int:
    from eventstore import LogPosition
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from projector_service.rebuild import RebuildProgress, rebuild

    console = Console()
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
    from rich.console import Console
    from rich.progress import MofNCompleteColumn, Progress, TextColumn

    from projector_service.replay import replay_log, replay_stream

    console = Console()
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


async def _dead_letters(servers: str, topic: str) -> list[DeadLetter]:
    import logging

    from aiokafka.errors import KafkaConnectionError, KafkaError

    from projector_service.deadletters import read_dead_letters

    # aiokafka logs each failed connection attempt; the failure is reported once, below.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    async with reaching("Kafka", servers, KafkaError, OSError, TimeoutError, network=(KafkaConnectionError,)):
        return await read_dead_letters(servers, topic)


async def _show_dead_letters(settings: DeadLetterSettings, args: argparse.Namespace) -> int:
    import json

    from rich.console import Console
    from rich.table import Table

    letters = await _dead_letters(settings.kafka_bootstrap_servers, settings.projector_dead_letter_topic)
    console = Console()
    if args.action == "list":
        table = Table("id", "projection", "event", "stream", "position", "failed at", "error")
        for letter in letters:
            table.add_row(letter.id, letter.projection, letter.event_type or "?", letter.stream_id or "?",
                          str(letter.position), letter.failed_at, letter.error[:80])  # fmt: skip
        console.print(table)
        return 0
    found = next((letter for letter in letters if letter.id == args.id), None)
    if found is None:
        raise LookupError(f"no dead letter {args.id}")
    headers = {name: value.decode("utf-8", "replace") for name, value in found.headers}
    payload = (found.value or b"").decode("utf-8", "replace")
    console.print_json(json.dumps({"id": found.id, "headers": headers, "payload": payload}))
    return 0


async def _replay_dead_letters(
    settings: DeadLetterReplaySettings, projections: list[str], args: argparse.Namespace
) -> int:
    from projector_service.replay import replay_dead_letters

    letters = await _dead_letters(settings.kafka_bootstrap_servers, settings.projector_dead_letter_topic)
    if args.ids:
        unknown = sorted(set(args.ids) - {letter.id for letter in letters})
        if unknown:  # a typo would otherwise replay nothing and exit 0
            raise LookupError(f"no dead letter {', '.join(unknown)}")
        letters = [letter for letter in letters if letter.id in set(args.ids)]
    async with _projector(settings, projections) as projector:
        outcomes = await replay_dead_letters(projector, letters, again=args.again)
    for outcome in outcomes:
        print(f"{outcome.id} {outcome.projection}: {outcome.outcome}")
    return 1 if any(o.outcome.startswith("failed") for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
