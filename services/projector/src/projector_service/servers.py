"""Naming the server a command could not use, in one line, without its password.

A command-line user who sees a driver's traceback has to work out which of four
servers it came from; `reaching` turns a failure inside its block into
`ServerError("cannot reach Redis at 127.0.0.1:6379: ...")` (or "cannot use", when it
answered but refused, say a wrong password): the server, its host and port, and the
driver's reason, with the URL's password masked wherever the
driver's message repeats it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

__all__ = ["ServerError", "host_of", "masked", "one_line", "reaching", "unreachable"]


class ServerError(Exception):
    """A server a command needs could not be reached, or answered as something else."""

    def __init__(
        self, server: str, url: str, error: BaseException, *, network: tuple[type[BaseException], ...] = ()
    ) -> None:
        if isinstance(error, TimeoutError) and not str(error):
            reason = "no answer in time"
        else:
            reason = one_line(masked(str(error) or type(error).__name__, url))
        # "use": it answered, but not as expected (a wrong password, another kind of server).
        verb = "reach" if unreachable(error, network) else "use"
        super().__init__(f"cannot {verb} {server} at {host_of(url)}: {reason}")
        self.server = server


def unreachable(error: BaseException, network: tuple[type[BaseException], ...] = ()) -> bool:
    """Whether a network failure (refused, unresolvable, timed out) lies under `error`.

    Drivers wrap the socket's error in their own (redis-py's `ConnectionError`, the store's
    `StoreUnavailable`); one that answered with a refusal (a wrong password) has none under it.
    `network` names a driver's own errors that mean the same (aiokafka's, which keep no cause).
    """
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, (OSError, TimeoutError, *network)):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def host_of(url: str) -> str:
    """`host:port` of a URL (`host:port[,host:port]` lists, as Kafka's, are returned as they are)."""
    if "://" not in url:
        return url
    parts = urlsplit(url)
    host = parts.hostname or "?"
    if ":" in host:
        host = f"[{host}]"  # IPv6
    return f"{host}:{parts.port}" if parts.port else host


def masked(text: str, url: str) -> str:
    """`text` with the URL replaced by its host and the URL's password (if any) by `***`."""
    text = text.replace(url, host_of(url))
    password = urlsplit(url).password if "://" in url else None
    return text.replace(password, "***") if password else text


def one_line(text: str) -> str:
    """`text` with every run of whitespace, newlines included, made one space."""
    return " ".join(text.split())


@asynccontextmanager
async def reaching(
    server: str, url: str, *errors: type[BaseException], network: tuple[type[BaseException], ...] = ()
) -> AsyncIterator[None]:
    """Turn `errors` raised inside the block into a `ServerError` naming `server` at `url`'s host."""
    try:
        yield
    except errors as error:
        raise ServerError(server, url, error, network=network) from error
