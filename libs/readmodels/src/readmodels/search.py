"""One client for the Elasticsearch-API search engines the suite runs on (OpenSearch, Elasticsearch).

Their official Python clients refuse each other's servers, so `connect_search`
identifies the server and wraps the matching client behind the few operations the
suite needs, kept to what both engines' core offers (the local stack's Elasticsearch
is the bare integration-test distribution): no painless scripts, `_reindex`,
`_delete_by_query`, language analyzers or `GET /`. The list: `docs/architecture.md`
("The search client").
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal

import elastic_transport
import httpx
import msgspec
from elasticsearch import ApiError as EsApiError
from elasticsearch import AsyncElasticsearch
from elasticsearch import ConflictError as EsConflict
from opensearchpy import AsyncOpenSearch
from opensearchpy.exceptions import ConflictError as OsConflict
from opensearchpy.exceptions import ConnectionError as OsConnectionError
from opensearchpy.exceptions import TransportError as OsTransportError

__all__ = [
    "SEARCH_TRANSIENT",
    "BulkFailed",
    "BulkOutcome",
    "BulkWrite",
    "Hit",
    "IndexNotFound",
    "SearchClient",
    "SearchPage",
    "SearchRejected",
    "SearchUnavailable",
    "StoredDocument",
    "VersionConflict",
    "connect_search",
]

Engine = Literal["opensearch", "elasticsearch"]
Document = dict[str, Any]
# elasticsearch-py 9 sends `compatible-with=9`, which 8.x servers reject.
ELASTICSEARCH_MAJOR = 9


class SearchUnavailable(RuntimeError):
    """The search engine could not be reached or identified, or answered that it cannot serve now.

    Unreachable, timed out, overloaded (429) or failing (5xx): worth trying again later.
    """


# What of the search engine's failures are worth retrying: every operation raises this one.
SEARCH_TRANSIENT: tuple[type[BaseException], ...] = (SearchUnavailable,)


class SearchRejected(RuntimeError):
    """The engine refused a request as malformed (a 4xx, not 404 or 429): a fault of the caller's code."""


class VersionConflict(Exception):
    """An externally versioned write carried a version not above the stored one.

    For read models this is the expected outcome of a duplicate delivery: the
    document already reflects that event or a later one.
    """


class IndexNotFound(LookupError):
    """The index or alias a request names does not exist."""


class BulkFailed(RuntimeError):
    """Some writes of a bulk request failed for a reason other than a stale version."""

    def __init__(self, errors: Mapping[str, str]) -> None:
        self.errors = dict(errors)  # document id -> the engine's error type and reason
        first = next(iter(self.errors.items()), ("?", "?"))
        super().__init__(f"{len(self.errors)} bulk writes failed, e.g. {first[0]}: {first[1]}")


class BulkWrite(msgspec.Struct, frozen=True):
    """One document of a bulk write; with `version`, only applied above the stored version."""

    doc_id: str
    document: Document
    version: int | None = None


class BulkOutcome(msgspec.Struct, frozen=True):
    """What a bulk write did: how many documents it wrote and which it skipped as stale."""

    written: int
    stale: list[str]  # ids already at or above the version sent (duplicate deliveries)


class StoredDocument(msgspec.Struct, frozen=True):
    """A document as stored, with its (external) version."""

    document: Document
    version: int


class Hit(msgspec.Struct, frozen=True):
    """One search hit: the document, its id, and its sort values (the next page's cursor)."""

    doc_id: str
    source: Document
    sort: list[Any] | None = None


class SearchPage(msgspec.Struct, frozen=True):
    """A page of hits; pass `next_after` as `search_after` for the next one (None: last page)."""

    hits: list[Hit]
    total: int
    next_after: list[Any] | None


# What the drivers raise for a request that failed: elastic_transport's errors are the
# Elasticsearch client's transport failures (refused, reset, timed out), its `ApiError`s are
# answers with an error status; opensearch-py raises `TransportError` for both, its
# `ConnectionError` (timeouts included) for the transport failures.
_DRIVER_ERRORS = (elastic_transport.TransportError, EsApiError, OsTransportError)


@contextlib.contextmanager
def _translating(index: str) -> Iterator[None]:
    """Raise the suite's error for a driver's failure of the request made inside, about `index`."""
    try:
        yield
    except _DRIVER_ERRORS as error:
        raise _translated(error, index) from error


def _translated(error: Exception, index: str) -> Exception:
    """The suite's error for a driver's failure of a request about `index`."""
    if isinstance(error, elastic_transport.TransportError | OsConnectionError):
        return SearchUnavailable(f"search engine unreachable: {type(error).__name__}: {error}")
    status = error.meta.status if isinstance(error, EsApiError) else getattr(error, "status_code", None)
    if status == 404:
        return IndexNotFound(index)
    if not isinstance(status, int) or status == 429 or status >= 500:
        return SearchUnavailable(f"search engine answered {status}: {error}")
    return SearchRejected(f"search engine refused the request: {str(error)[:500]}")


class SearchClient:
    """The operations the read models need, on either engine.

    Both official clients still take a request body as `body=` and the query
    parameters (`refresh`, `version`, `version_type`) as keywords, so one call
    serves both engines; only their exception classes differ.

    Every operation translates the drivers' errors: a missing index or alias is `IndexNotFound`;
    an engine that cannot be reached, times out, or answers 429 or 5xx is
    `SearchUnavailable`; any other refusal (a malformed query) is `SearchRejected`.
    """

    def __init__(self, engine: Engine, version: str, client: AsyncOpenSearch | AsyncElasticsearch) -> None:
        self.engine = engine
        self.version = version
        self._client = client

    async def close(self) -> None:
        await self._client.close()

    async def health(self) -> str:
        """Cluster health: green, yellow (replicas unassigned, serving) or red."""
        with _translating("_cluster"):
            response = await self._client.cluster.health()
        status: str = response["status"]
        return status

    async def create_index(
        self,
        name: str,
        *,
        mappings: Mapping[str, Any] | None = None,
        settings: Mapping[str, Any] | None = None,
        shards: int = 1,
    ) -> bool:
        """Create an index unless it exists; True when this call created it.

        `settings` is merged over the shard counts, e.g. `{"analysis": {...}}`.
        """
        merged: dict[str, Any] = {"number_of_shards": shards, "number_of_replicas": 0, **(settings or {})}
        body: dict[str, Any] = {"settings": merged}
        if mappings:
            body["mappings"] = dict(mappings)
        try:
            with _translating(name):
                await self._client.indices.create(index=name, body=body)
        except SearchRejected as error:  # both engines answer 400 resource_already_exists_exception
            if "resource_already_exists_exception" in str(error):
                return False
            raise
        return True

    async def index_exists(self, name: str) -> bool:
        """True when an index or alias of that name exists."""
        with _translating(name):
            return bool(await self._client.indices.exists(index=name))

    async def delete_index(self, name: str) -> None:
        """Delete an index; one that does not exist is not an error."""
        try:
            with _translating(name):
                await self._client.indices.delete(index=name)
        except IndexNotFound:
            return

    async def put(
        self,
        index: str,
        doc_id: str,
        document: Document,
        *,
        version: int | None = None,
        refresh: bool = False,
    ) -> None:
        """Write a document; with `version`, only if it is above the stored one (external versioning)."""
        params: dict[str, Any] = {"refresh": "true" if refresh else "false"}
        if version is not None:
            params.update(version=version, version_type="external")
        with _translating(index):
            try:
                await self._client.index(index=index, id=doc_id, body=document, **params)
            except (OsConflict, EsConflict) as error:
                raise VersionConflict(f"{index}/{doc_id} already at or above version {version}") from error

    async def put_many(
        self,
        index: str,
        writes: Sequence[BulkWrite],
        *,
        refresh: bool = False,
        version_type: Literal["external", "external_gte"] = "external",
    ) -> BulkOutcome:
        """Write documents in one bulk request, each guarded by its external version when it has one.

        A stale version is not an error (it is a duplicate delivery): its id is
        listed in the outcome. Any other failure raises `BulkFailed` naming the
        documents, after the others were written. `external_gte` also accepts a
        version equal to the stored one (rewriting a document at its own version).
        """
        if not writes:
            return BulkOutcome(written=0, stale=[])
        operations: list[dict[str, Any]] = []
        for write in writes:
            meta: dict[str, Any] = {"_index": index, "_id": write.doc_id}
            if write.version is not None:
                meta.update(version=write.version, version_type=version_type)
            operations += [{"index": meta}, write.document]
        with _translating(index):
            response = await self._client.bulk(body=operations, refresh="true" if refresh else "false")
        stale: list[str] = []
        errors: dict[str, str] = {}
        for item in response["items"]:
            result = item["index"]
            error = result.get("error")
            if error is None:
                continue
            if result.get("status") == 409 and error.get("type") == "version_conflict_engine_exception":
                stale.append(result["_id"])
            else:
                errors[result["_id"]] = f"{error.get('type')}: {error.get('reason')}"
        if errors:
            raise BulkFailed(errors)
        return BulkOutcome(written=len(writes) - len(stale), stale=stale)

    async def get_many(self, index: str, doc_ids: Sequence[str]) -> dict[str, StoredDocument]:
        """The stored documents among `doc_ids`, with their versions; missing ids are left out."""
        if not doc_ids:
            return {}
        with _translating(index):
            response = await self._client.mget(index=index, body={"ids": list(doc_ids)})
        return {
            doc["_id"]: StoredDocument(doc["_source"], int(doc["_version"]))
            for doc in response["docs"]
            if doc.get("found")
        }

    async def indices(self, pattern: str) -> list[str]:
        """The names of the indices matching `pattern` (wildcards allowed), sorted."""
        try:
            with _translating(pattern):
                response = await self._client.indices.get(index=pattern)
        except IndexNotFound:
            return []
        return sorted(response)

    async def get(self, index: str, doc_id: str) -> Document | None:
        try:
            with _translating(index):
                response = await self._client.get(index=index, id=doc_id)
        except IndexNotFound:  # the index, or the document (both engines answer 404)
            return None
        source: Document = response["_source"]
        return source

    async def delete(
        self, index: str, doc_id: str, *, version: int | None = None, refresh: bool = False
    ) -> bool:
        """Delete a document (with `version`: only above the stored one); False when there was none."""
        params: dict[str, Any] = {"refresh": "true" if refresh else "false"}
        if version is not None:
            params.update(version=version, version_type="external")
        try:
            with _translating(index):
                try:
                    await self._client.delete(index=index, id=doc_id, **params)
                except (OsConflict, EsConflict) as error:
                    stale = f"{index}/{doc_id} already at or above version {version}"
                    raise VersionConflict(stale) from error
        except IndexNotFound:  # the index, or the document (both engines answer 404)
            return False
        return True

    async def search(
        self, index: str, query: Mapping[str, Any], *, size: int = 10, sort: Sequence[Any] | None = None
    ) -> list[Document]:
        """The sources of the first `size` hits."""
        page = await self.search_page(index, query, size=size, sort=sort)
        return [hit.source for hit in page.hits]

    async def search_page(
        self,
        index: str,
        query: Mapping[str, Any],
        *,
        sort: Sequence[Any] | None = None,
        size: int = 10,
        search_after: Sequence[Any] | None = None,
        aggregations: Mapping[str, Any] | None = None,
    ) -> SearchPage:
        """One page of hits, paged with `search_after` (deep pages cost no more than the first).

        Paging needs a `sort` that ends in a unique field (e.g. the document id
        kept as a keyword), so that no two hits share a cursor.
        """
        body: dict[str, Any] = {"query": dict(query), "size": size, "track_total_hits": True}
        if sort:
            body["sort"] = list(sort)
        if search_after is not None:
            body["search_after"] = list(search_after)
        if aggregations:
            body["aggs"] = dict(aggregations)
        response = await self._search(index, body)
        hits = [Hit(hit["_id"], hit["_source"], hit.get("sort")) for hit in response["hits"]["hits"]]
        next_after = hits[-1].sort if sort and len(hits) == size else None
        return SearchPage(hits=hits, total=int(response["hits"]["total"]["value"]), next_after=next_after)

    async def aggregate(
        self, index: str, aggregations: Mapping[str, Any], *, query: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Run aggregations alone (no hits) and return their results by name."""
        body = {"query": dict(query or {"match_all": {}}), "size": 0, "aggs": dict(aggregations)}
        response = await self._search(index, body)
        results: dict[str, Any] = dict(response["aggregations"])
        return results

    async def search_as[T](self, index: str, body: Mapping[str, Any], answer: type[T]) -> T:
        """Run a `_search` body the caller prepared, as it is, and convert the answer into `answer`.

        Nothing is added to the body: `track_total_hits`, `search_after`, sort
        and aggregations are the caller's. `answer` is a msgspec type naming the
        parts of the response the caller reads (e.g. `hits.hits[]._source` as
        its document Struct); the rest is ignored. Both drivers decode the
        response body into dicts before they hand it back (neither returns the
        raw bytes per request, only a client-wide serializer could), so the
        answer is converted from those with `msgspec.convert`.
        """
        return msgspec.convert(await self._search(index, body), answer)

    async def _search(self, index: str, body: Mapping[str, Any]) -> Mapping[str, Any]:
        """The decoded answer of a `_search` request, the drivers' errors translated."""
        with _translating(index):
            response = await self._client.search(index=index, body=dict(body))
        # elasticsearch-py wraps the decoded body; opensearch-py hands it back as it is.
        answer: Mapping[str, Any] = (
            response.body if isinstance(response, elastic_transport.ObjectApiResponse) else response
        )
        return answer

    async def count(self, index: str, query: Mapping[str, Any] | None = None) -> int:
        """How many documents match `query` (all of them without one).

        Without a query it is also the cheapest check that the engine answers
        and `index` exists (a readiness probe): it reads no documents.
        """
        body = {"query": dict(query)} if query else None
        with _translating(index):
            response = await self._client.count(index=index, body=body)
        return int(response["count"])

    async def refresh(self, index: str) -> None:
        """Make every write to `index` acknowledged so far visible to searches."""
        with _translating(index):
            await self._client.indices.refresh(index=index)

    async def update_aliases(self, actions: Sequence[Mapping[str, Any]]) -> None:
        """Apply alias actions (`{"add": {...}}`, `{"remove": {...}}`) in one atomic request.

        All or nothing: when one action names a missing index or alias, none is
        applied and `IndexNotFound` is raised.
        """
        with _translating(
            ", ".join(sorted({str(a.get("index", "")) for act in actions for a in act.values()}))
        ):
            await self._client.indices.update_aliases(body={"actions": [dict(action) for action in actions]})

    async def swap_alias(self, alias: str, *, old: str, new: str) -> None:
        """Move `alias` from index `old` to index `new` in one request: no reader sees neither or both."""
        await self.update_aliases(
            [{"remove": {"index": old, "alias": alias}}, {"add": {"index": new, "alias": alias}}]
        )

    async def point_alias(self, alias: str, index: str) -> None:
        """Point `alias` at `index` alone, atomically (the swap at the end of a rebuild)."""
        actions: list[dict[str, Any]] = [
            {"remove": {"index": "*", "alias": alias}},
            {"add": {"index": index, "alias": alias}},
        ]
        if not await self.alias_targets(alias):
            actions = actions[1:]  # removing an alias that does not exist is an error
        await self.update_aliases(actions)

    async def alias_targets(self, alias: str) -> list[str]:
        """The indices `alias` points at, sorted; empty when there is no such alias."""
        try:
            with _translating(alias):
                current = await self._client.indices.get_alias(name=alias)
        except IndexNotFound:
            return []
        return sorted(current)


async def connect_search(
    url: str, *, timeout: float = 10.0, connections: int = 10, retries: int = 3
) -> SearchClient:
    """Identify the engine at `url` and return a client for it.

    Elasticsearch names itself in the `X-Elastic-Product` header; OpenSearch does not.

    `timeout` bounds each request, identification included; `connections` is the pool
    size. `retries` is how often the driver repeats a request that found no connection or
    an overloaded engine (default: the drivers' 3); pass 0 when the caller retries or
    answers itself. A timed-out request is never repeated.
    """
    base = url.rstrip("/")
    try:
        async with httpx.AsyncClient(timeout=timeout) as http:
            nodes = await http.get(f"{base}/_nodes/_local", params={"filter_path": "nodes.*.version"})
            nodes.raise_for_status()
            version = str(next(iter(nodes.json()["nodes"].values()))["version"])
            product = nodes.headers.get("x-elastic-product")
            distribution = None
            if product is None:
                root = await http.get(base)
                root.raise_for_status()
                distribution = root.json().get("version", {}).get("distribution")
    except (httpx.HTTPError, ValueError, KeyError, TypeError, StopIteration) as error:
        raise SearchUnavailable(f"search engine at {url} did not answer: {error!r}") from error
    if product == "Elasticsearch":
        major = int(version.split(".")[0]) if version.split(".")[0].isdigit() else 0
        if major < ELASTICSEARCH_MAJOR:
            raise SearchUnavailable(
                f"{url} runs Elasticsearch {version}; the suite's client speaks to {ELASTICSEARCH_MAJOR}.x"
            )
        elasticsearch = AsyncElasticsearch(
            base,
            request_timeout=timeout,
            connections_per_node=connections,
            max_retries=retries,
            retry_on_timeout=False,
        )
        return SearchClient("elasticsearch", version, elasticsearch)
    if distribution == "opensearch":
        opensearch = AsyncOpenSearch(
            hosts=[base],
            timeout=timeout,
            pool_maxsize=connections,  # the aiohttp connector's limit
            max_retries=retries,
            retry_on_timeout=False,
        )
        return SearchClient("opensearch", version, opensearch)
    raise SearchUnavailable(
        f"{url} answers, but is neither Elasticsearch {ELASTICSEARCH_MAJOR} nor OpenSearch"
    )
