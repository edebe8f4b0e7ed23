"""What every read endpoint shares: the consistency token, who may see what, strict parameters.

`X-Consistency-Token` waits up to `QUERY_CONSISTENCY_TIMEOUT_SECONDS`, then answers 409
`not-yet-consistent` with `Retry-After`; a model that lost its data answers 503
`read-model-rebuilding`, token or not. A caller with only the `customer` role sees only
their own orders, enforced in the query itself. Unknown, wrongly repeated or
contradictory query parameters are a 400 naming them.
"""

from __future__ import annotations

import re
import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

import msgspec
from litestar import Request
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import Parameter as OpenAPIParameter
from readmodels.keyspace import Keyspace, RedisModelKeys
from readmodels.order_queries import OrderSearchReader
from readmodels.rebuilding import ReadModelRebuilding, model_lost
from readmodels.redis_reads import LiveHashes, whole_live_models
from redis.asyncio import Redis
from servicekit.auth import SERVICE, STAFF, Principal, principal_of
from servicekit.errors import InvalidHeader, NotAllowed
from servicekit.openapi import HeadersOperation, header_parameter
from servicekit.openapi import problem_responses as kit_problem_responses

from query_service.consistency import PositionWatch, SearchVisibility
from query_service.errors import InvalidQuery, NotYetConsistent

__all__ = [
    "CONSISTENCY_HEADER",
    "ReadOperation",
    "ReadRequest",
    "Reads",
    "header",
    "needs",
    "problem_responses",
    "query_opt",
    "read_request",
]

CONSISTENCY_HEADER = "X-Consistency-Token"
_CONSISTENCY_HEADER = CONSISTENCY_HEADER.lower().encode()
_TOKEN = re.compile(r"^[0-9]{1,18}$")


class ReadOperation(HeadersOperation):
    """Every read's OpenAPI operation: it lists X-Consistency-Token, which `read_request` reads itself."""

    headers: ClassVar[tuple[OpenAPIParameter, ...]] = (
        header_parameter(
            CONSISTENCY_HEADER,
            "Read your own writes: the `position` a command of the command service answered. The read "
            "waits (bounded, 2 s by default) until the read model it reads has applied every event up to "
            "that position, and answers 409 `not-yet-consistent` with `Retry-After` if it has not by "
            "then. Without it the read answers at once from the read model as it is, which may lag.",
            pattern=_TOKEN.pattern,
        ),
    )


_DESCRIPTIONS = {
    400: "Invalid headers or query parameters (the errors name each), or a cursor of another query",
    401: "Missing or invalid bearer token",
    403: "The token lacks the role, or names another customer's orders",
    404: "No such order, or not one the caller may see",
    409: "`not-yet-consistent`: the read model has not reached X-Consistency-Token yet; see Retry-After",
    429: "Too many requests for this subject; see Retry-After",
    503: "The store this read needs (Redis or the search engine) is unavailable, or its read model lost "
    "its data and is being rebuilt (`read-model-rebuilding`); see Retry-After",
}
_ALWAYS = (400, 401, 403, 409, 429, 503)


def problem_responses(*statuses: int) -> dict[int, ResponseSpec]:
    """OpenAPI entries for the problem responses an endpoint can give (the common ones included)."""
    return kit_problem_responses(_DESCRIPTIONS, *_ALWAYS, *statuses)


def needs(summary: str, *roles: str) -> str:
    """An operation's description naming the roles it accepts."""
    return f"{summary}\n\nRoles: {', '.join(f'`{role}`' for role in roles)}."


@dataclass(frozen=True, slots=True)
class Reads:
    """The read side's adapters; built once at start-up."""

    redis: Redis
    keyspace: Keyspace
    hashes: LiveHashes
    search: OrderSearchReader
    watch: PositionWatch
    visibility: SearchVisibility
    consistency_timeout: float


_SEE_EVERYONE = frozenset({STAFF, SERVICE})


class ReadRequest(msgspec.Struct, frozen=True):
    """One read: the adapters, who asks, and the position the answer must include, if any.

    A Struct rather than a frozen dataclass: made once per request, and a frozen dataclass's
    `__init__` sets each field through `object.__setattr__`.
    """

    reads: Reads
    principal: Principal
    token: int | None

    @property
    def sees_everyone(self) -> bool:
        return not self.principal.roles.isdisjoint(_SEE_EVERYONE)

    def own_customer(self, requested: str | None = None) -> str | None:
        """The customer a search must be limited to: the caller, unless staff or the saga asks.

        A customer naming another customer is refused rather than silently answered about themselves.
        """
        if self.sees_everyone:
            return requested
        if requested is not None and requested != self.principal.subject:
            raise NotAllowed("customers may read only their own orders")
        return self.principal.subject

    async def consistent(self, projection: str) -> None:
        """Wait until `projection` has reached the request's token (at once without one)."""
        if self.token is None:
            return
        started = time.monotonic()
        timeout = self.reads.consistency_timeout
        reached = await self.reads.watch.wait(projection, self.token, timeout=timeout)
        if reached is not None:
            # Behind, or lost with its position (Redis restarted empty) and being rebuilt: only
            # the first is cured by retrying at once. The slow path alone pays for the look.
            lost = await model_lost(self.reads.redis, self.reads.keyspace, projection)
            if lost is not None:
                raise ReadModelRebuilding(projection, lost)
            raise NotYetConsistent(projection, self.token, reached, round(time.monotonic() - started, 3))

    async def live_hashes(self) -> LiveHashes:
        """Single-hash reads of the live generation, once the Redis projection is consistent."""
        await self.consistent("redis")
        return self.reads.hashes

    async def redis_models(self) -> RedisModelKeys:
        """The Redis generation to read, once the Redis projection is consistent with the token."""
        await self.consistent("redis")
        return await whole_live_models(self.reads.redis, self.reads.keyspace)

    async def searchable(self) -> OrderSearchReader:
        """The search reader, once searches see everything up to the token."""
        await self.consistent("search")
        if self.token is not None:
            await self.reads.visibility.ensure(self.token)
        return self.reads.search


def read_request(request: Request[Any, Any, Any]) -> ReadRequest:
    """The read a request asks for: the authenticated caller, the token, and strict query parameters.

    A plain call at the top of each handler rather than a Litestar dependency, and the token read
    from the raw headers rather than as a header parameter (the route's `operation_class` documents
    it): a dependency with a header parameter costs about 10 µs a request in Litestar's signature
    machinery, as much as the rest of a read by id apart from its Redis call.
    """
    handler = request.route_handler
    if request.scope["query_string"]:
        _check_query(request, handler.opt.get("query", ()), handler.opt.get("repeatable", ()))
    reads: Reads = request.app.state.reads
    return ReadRequest(reads, principal_of(request), _parse_token(header(request, _CONSISTENCY_HEADER)))


def header(request: Request[Any, Any, Any], name: bytes) -> str | None:
    """The first value of the request header `name` (in lower case), as Litestar's mapping would give
    it, read straight from the ASGI headers without building that mapping."""
    for key, value in request.scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


def _parse_token(value: str | None) -> int | None:
    if value is None:
        return None
    if not _TOKEN.match(value.strip()):
        raise InvalidHeader(CONSISTENCY_HEADER, "expected a position as a command answered it, e.g. 42")
    return int(value)


def _check_query(request: Request[Any, Any, Any], known: Collection[str], repeatable: Iterable[str]) -> None:
    lists = set(repeatable)
    problems: list[tuple[str, str]] = []
    for name in request.query_params:
        values = request.query_params.getall(name)
        if name not in known:
            problems.append((name, "unknown query parameter"))
        elif len(values) > 1 and name not in lists:
            problems.append((name, "given more than once"))
    if problems:
        raise InvalidQuery(problems)


def query_opt(*names: str, repeatable: Iterable[str] = ()) -> dict[str, Any]:
    """Route `opt` naming the query parameters it takes (others are refused)."""
    return {"query": frozenset(names), "repeatable": frozenset(repeatable)}
