"""Reading the orders index: filters, sort, cursors, and the reader that runs them.

The query service's side of the index the projector writes behind the orders alias.
Pages use `search_after` on an immutable key (`placed_at` or `total`, then `order_id`),
so no order is shown twice or skipped however the index changes (why: `docs/query.md`,
"Pagination"). Cursors are HMAC-SHA256-signed with the reader's cursor key; any other or
altered cursor raises `InvalidCursor`. Queries go through `readmodels.search.SearchClient`
and read the same on OpenSearch and Elasticsearch.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import hmac
import logging
import secrets
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import msgspec

from readmodels.orders import OrderDocument
from readmodels.rebuilding import ReadModelRebuilding
from readmodels.search import IndexNotFound, SearchClient, SearchRejected, SearchUnavailable, connect_search

__all__ = [
    "SORTS",
    "InvalidCursor",
    "OrderFilters",
    "OrderPage",
    "OrderSearchReader",
    "SearchRejected",
    "SortKey",
    "counts_body",
    "decode_cursor",
    "encode_cursor",
    "search_body",
]

log = logging.getLogger(__name__)

SortKey = Literal["-placed_at", "placed_at", "-total", "total"]
SORTS: tuple[SortKey, ...] = ("-placed_at", "placed_at", "-total", "total")
_LONG = msgspec.Meta(ge=-(2**63), le=2**63 - 1)


class InvalidCursor(ValueError):
    """A cursor that this query did not hand out (malformed, or made for another sort or filters)."""


class OrderFilters(msgspec.Struct, frozen=True, kw_only=True):
    """What a search keeps. `customer_id`, when set, is a filter clause of the query itself."""

    text: str | None = None
    statuses: tuple[str, ...] = ()
    customer_id: str | None = None
    placed_from: datetime | None = None  # inclusive
    placed_to: datetime | None = None  # exclusive
    total_min: int | None = None  # inclusive, minor units
    total_max: int | None = None  # inclusive


class _CursorState(msgspec.Struct, frozen=True, array_like=True, forbid_unknown_fields=True):
    sort: SortKey
    after: tuple[Annotated[int, _LONG], Annotated[str, msgspec.Meta(max_length=128)]]
    query: Annotated[str, msgspec.Meta(max_length=32)]


class OrderPage(msgspec.Struct, frozen=True):
    """One page of results, and the cursor of the next one (None on the last page)."""

    orders: list[OrderDocument]
    next_cursor: str | None


def _time(value: datetime) -> str:
    # Always UTC: the engines parse offsets with Java's `ZoneOffset`, which refuses any beyond
    # ±18:00 that RFC 3339 (and Python) allow, failing the whole search. A time without zone is
    # read as UTC.
    utc = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return utc.replace(tzinfo=None).isoformat() + "Z"


def _fingerprint(filters: OrderFilters) -> str:
    """Ties a cursor to the filters it was made for, so a changed query is refused, not mixed."""
    return hashlib.blake2b(msgspec.json.encode(filters), digest_size=8).hexdigest()


_MAC_BYTES = hashlib.sha256().digest_size


def _mac(key: bytes, state: bytes) -> bytes:
    return hmac.new(key, state, hashlib.sha256).digest()


def encode_cursor(sort: SortKey, after: tuple[int, str], filters: OrderFilters, *, key: bytes) -> str:
    """An opaque cursor: the sort values of the last hit shown, for this sort and these filters,
    authenticated with `key` (HMAC-SHA256)."""
    state = msgspec.json.encode(_CursorState(sort=sort, after=after, query=_fingerprint(filters)))
    return base64.urlsafe_b64encode(state + _mac(key, state)).rstrip(b"=").decode()


def decode_cursor(cursor: str, sort: SortKey, filters: OrderFilters, *, key: bytes) -> tuple[int, str]:
    """The sort values a cursor continues after; raises `InvalidCursor` saying what is wrong.

    The MAC is checked first: nothing of a cursor `key` did not sign is read.
    """
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except (binascii.Error, ValueError) as error:
        raise InvalidCursor("not a cursor this service handed out") from error
    signed, tag = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
    if not signed or not hmac.compare_digest(tag, _mac(key, signed)):
        raise InvalidCursor("not a cursor this service handed out")
    try:
        state = msgspec.json.decode(signed, type=_CursorState)
    except (ValueError, msgspec.DecodeError) as error:  # signed by us: only a change of format
        raise InvalidCursor("not a cursor this service handed out") from error
    if state.sort != sort:
        raise InvalidCursor(f"the cursor was made for sort={state.sort}, not sort={sort}")
    if state.query != _fingerprint(filters):
        raise InvalidCursor("the cursor was made for other filters: send the same filters with it")
    return state.after


def _filter_clauses(filters: OrderFilters) -> list[dict[str, Any]]:
    clauses: list[dict[str, Any]] = []
    if filters.customer_id is not None:
        clauses.append({"term": {"customer_id": filters.customer_id}})
    if filters.statuses:
        clauses.append({"terms": {"status": list(filters.statuses)}})
    placed: dict[str, str] = {}
    if filters.placed_from is not None:
        placed["gte"] = _time(filters.placed_from)
    if filters.placed_to is not None:
        placed["lt"] = _time(filters.placed_to)
    if placed:
        clauses.append({"range": {"placed_at": placed}})
    total: dict[str, int] = {}
    if filters.total_min is not None:
        total["gte"] = filters.total_min
    if filters.total_max is not None:
        total["lte"] = filters.total_max
    if total:
        clauses.append({"range": {"total": total}})
    return clauses


def _query(filters: OrderFilters) -> dict[str, Any]:
    boolean: dict[str, Any] = {"filter": _filter_clauses(filters)}
    if filters.text:
        # Plain `match` and `term` clauses: the text is data, never query syntax, so no
        # `field:value` in it can reach another field (least of all customer_id).
        boolean["must"] = [
            {
                "bool": {
                    "should": [
                        {"match": {"lines.product_name": {"query": filters.text, "operator": "and"}}},
                        {"term": {"lines.sku": filters.text.lower()}},
                        {"term": {"order_id": filters.text.lower()}},
                    ],
                    "minimum_should_match": 1,
                }
            }
        ]
    return {"bool": boolean}


def search_body(
    filters: OrderFilters, sort: SortKey, size: int, after: tuple[int, str] | None = None
) -> dict[str, Any]:
    """The `_search` body of one page: `size` hits after `after`, in `sort` order, then order id."""
    order = "desc" if sort.startswith("-") else "asc"
    body: dict[str, Any] = {
        "query": _query(filters),
        "size": size,
        "sort": [{sort.lstrip("-"): {"order": order}}, {"order_id": {"order": order}}],
        "track_total_hits": False,
    }
    if after is not None:
        body["search_after"] = list(after)
    return body


def counts_body(filters: OrderFilters) -> dict[str, Any]:
    """The `_search` body counting the matching orders per status."""
    return {
        "query": _query(filters),
        "size": 0,
        "track_total_hits": True,
        "aggs": {"status": {"terms": {"field": "status", "size": 20}}},
    }


class _Hit(msgspec.Struct):
    source: OrderDocument = msgspec.field(name="_source")
    sort: tuple[int, str] = msgspec.field(default=(0, ""))


class _Hits(msgspec.Struct):
    hits: list[_Hit]


class _Bucket(msgspec.Struct):
    key: str
    doc_count: int


class _Terms(msgspec.Struct):
    buckets: list[_Bucket]


class _Aggregations(msgspec.Struct):
    status: _Terms


class _SearchResponse(msgspec.Struct):
    hits: _Hits
    aggregations: _Aggregations | None = None


class OrderSearchReader:
    """Runs order searches against the index (or alias) `index` of the engine at `url`.

    Raises `SearchUnavailable` when the engine is unreachable, overloaded, failing, not yet
    identified, or the index is missing, and `SearchRejected` for a query the engine calls
    malformed. The engine is identified on first use (one attempt at a time, retried on the
    next call), so a service starts while the engine is down. Each request is bounded by
    `timeout`, never retried by the driver, over at most `connections` connections. Cursors
    are signed with `cursor_key` (one per API; default: a random key of this process).
    """

    def __init__(
        self,
        url: str,
        index: str,
        *,
        timeout: float = 5.0,
        connections: int = 32,
        cursor_key: bytes | None = None,
    ) -> None:
        self.url = url
        self.index = index
        if cursor_key is None:
            # Still authenticated, but only this process knows the key: a cursor is good only on
            # the instance that made it (and until it restarts). Services pass a configured key.
            log.warning("no cursor key configured: cursors are valid on this process only")
            cursor_key = secrets.token_bytes(32)
        self._cursor_key = cursor_key
        self._timeout = timeout
        self._connections = connections
        self._client: SearchClient | None = None
        self._identifying: asyncio.Task[SearchClient] | None = None

    async def close(self) -> None:
        if self._identifying is not None and not self._identifying.done():
            self._identifying.cancel()
            with contextlib.suppress(asyncio.CancelledError, SearchUnavailable):
                await self._identifying
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def page(
        self, filters: OrderFilters, sort: SortKey, limit: int, cursor: str | None = None
    ) -> OrderPage:
        """One page of matching orders; raises `InvalidCursor` for a cursor of another query."""
        after = decode_cursor(cursor, sort, filters, key=self._cursor_key) if cursor else None
        found = await self._search(search_body(filters, sort, limit + 1, after))
        hits = found.hits.hits
        next_cursor = None
        if len(hits) > limit:
            hits = hits[:limit]
            next_cursor = encode_cursor(sort, hits[-1].sort, filters, key=self._cursor_key)
        return OrderPage([hit.source for hit in hits], next_cursor)

    async def counts(self, filters: OrderFilters) -> dict[str, int]:
        """How many matching orders are in each status (statuses with none are left out)."""
        found = await self._search(counts_body(filters))
        if found.aggregations is None:
            return {}
        return {bucket.key: bucket.doc_count for bucket in found.aggregations.status.buckets}

    async def refresh(self) -> None:
        """Make every write acknowledged so far visible to searches."""
        engine = await self._engine()
        with self._index_present():
            await engine.refresh(self.index)

    async def ping(self) -> None:
        """Raise `SearchUnavailable` unless the engine answers.

        A missing index is no reason: the engine answers, and searches say the model is being
        rebuilt (`ReadModelRebuilding`). An instance taken out of service for it would leave
        clients a load balancer's bare 503 instead, and its Redis reads unserved.
        """
        engine = await self._engine()
        with contextlib.suppress(IndexNotFound):
            await engine.count(self.index)

    async def _search(self, body: Mapping[str, Any]) -> _SearchResponse:
        engine = await self._engine()
        with self._index_present():
            return await engine.search_as(self.index, body, _SearchResponse)

    async def _engine(self) -> SearchClient:
        if self._client is not None:
            return self._client
        if self._identifying is None or self._identifying.done():
            self._identifying = asyncio.create_task(self._identify(), name="identify-search-engine")
        # Shielded: a caller giving up (its request cancelled) must not cancel the others' attempt.
        return await asyncio.shield(self._identifying)

    async def _identify(self) -> SearchClient:
        client = await connect_search(
            self.url, timeout=self._timeout, connections=self._connections, retries=0
        )
        self._client = client
        return client

    @contextlib.contextmanager
    def _index_present(self) -> Iterator[None]:
        # The projector always keeps the alias pointing at a whole index (a rebuild moves it in
        # one request): no alias means the index was deleted and is being rebuilt, never "no orders".
        try:
            yield
        except IndexNotFound as error:
            raise ReadModelRebuilding("search", f"the index {self.index} does not exist") from error
