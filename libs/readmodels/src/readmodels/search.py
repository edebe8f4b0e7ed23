"""One client for the Elasticsearch-API search engines the suite runs on.

The local stack runs OpenSearch (its artifacts are on Maven Central);
docker-compose runs Elasticsearch. Their REST APIs agree on everything the
read models use, but their official Python clients refuse each other's servers
(elasticsearch-py checks the product header), so `connect_search` asks the server
what it is and wraps the matching official client behind the few operations
the suite needs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping, Sequence
from typing import Any, Literal

import elastic_transport
import httpx
import msgspec
from elasticsearch import AsyncElasticsearch
from elasticsearch import ConflictError as EsConflict
from elasticsearch import NotFoundError as EsNotFound
from opensearchpy import AsyncOpenSearch
from opensearchpy.exceptions import ConflictError as OsConflict
from opensearchpy.exceptions import ConnectionError as OsConnectionError
from opensearchpy.exceptions import NotFoundError as OsNotFound

__all__ = [
    "BulkOutcome",
    "BulkWrite",
    "SearchClient",
    "SearchUnavailable",
    "StoredDocument",
    "VersionConflict",
    "connect_search",
]

Engine = Literal["opensearch", "elasticsearch"]
Document = dict[str, Any]


class SearchUnavailable(RuntimeError):
    """The search engine could not be reached or identified."""


class VersionConflict(Exception):
    """An externally versioned write carried a version not above the stored one.

    For read models this is the expected outcome of a duplicate delivery: the
    document already reflects that event or a later one.
    """


class BulkWrite(msgspec.Struct, frozen=True):
    """One document to index in a bulk request, with its external version."""

    doc_id: str
    document: Document
    version: int


class BulkOutcome(msgspec.Struct, frozen=True):
    """What a bulk request did: ids refused by the version check, and ids that failed otherwise."""

    conflicts: frozenset[str]
    errors: dict[str, str]


class StoredDocument(msgspec.Struct, frozen=True):
    document: Document
    version: int


# Transport failures of either client: the engine is down or slow, not the request wrong.
_UNREACHABLE = (OsConnectionError, elastic_transport.TransportError, OSError, TimeoutError)


async def _reach[T](call: Awaitable[T]) -> T:
    try:
        return await call
    except _UNREACHABLE as error:
        raise SearchUnavailable(f"search engine unreachable: {type(error).__name__}: {error}") from error


class SearchClient:
    """The operations the read models need, on either engine."""

    def __init__(self, engine: Engine, version: str, client: AsyncOpenSearch | AsyncElasticsearch) -> None:
        self.engine = engine
        self.version = version
        self._client = client

    async def close(self) -> None:
        await self._client.close()

    async def create_index(
        self,
        name: str,
        *,
        mappings: Mapping[str, Any] | None = None,
        shards: int = 1,
        settings: Mapping[str, Any] | None = None,
    ) -> bool:
        """Create an index unless it exists; True when this call created it.

        `settings` adds index settings (analysis, refresh interval) to the shard counts.
        """
        body: dict[str, Any] = {
            "settings": {**(settings or {}), "number_of_shards": shards, "number_of_replicas": 0}
        }
        if mappings:
            body["mappings"] = dict(mappings)
        try:
            if isinstance(self._client, AsyncOpenSearch):
                await self._client.indices.create(index=name, body=body)
            else:
                await self._client.indices.create(
                    index=name, settings=body["settings"], mappings=body.get("mappings")
                )
        except (OsConflict, EsConflict):
            return False
        except Exception as error:  # both clients raise 400 resource_already_exists_exception
            if "resource_already_exists_exception" in str(error):
                return False
            raise
        return True

    async def delete_index(self, name: str) -> None:
        try:
            await self._client.indices.delete(index=name)
        except (OsNotFound, EsNotFound):
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
        try:
            if isinstance(self._client, AsyncOpenSearch):
                await self._client.index(index=index, id=doc_id, body=document, params=params)
            else:
                await self._client.index(index=index, id=doc_id, document=document, **params)
        except (OsConflict, EsConflict) as error:
            raise VersionConflict(f"{index}/{doc_id} already at or above version {version}") from error

    async def get(self, index: str, doc_id: str) -> Document | None:
        try:
            response = await self._client.get(index=index, id=doc_id)
        except (OsNotFound, EsNotFound):
            return None
        source: Document = response["_source"]
        return source

    async def search(
        self, index: str, query: Mapping[str, Any], *, size: int = 10, sort: Sequence[Any] | None = None
    ) -> list[Document]:
        body: dict[str, Any] = {"query": dict(query), "size": size}
        if sort:
            body["sort"] = list(sort)
        if isinstance(self._client, AsyncOpenSearch):
            response = await self._client.search(index=index, body=body)
        else:
            response = await self._client.search(index=index, **body)
        return [hit["_source"] for hit in response["hits"]["hits"]]

    async def bulk_put(
        self,
        index: str,
        writes: Sequence[BulkWrite],
        *,
        version_type: Literal["external", "external_gte"] = "external",
        refresh: bool = False,
    ) -> BulkOutcome:
        """Index many documents in one request, each only if its version is above the stored one.

        A refused version (409) is reported in `conflicts`, not raised: for read models
        it means the document already reflects that version or a later one. Raises
        `SearchUnavailable` when the engine cannot be reached.
        """
        if not writes:
            return BulkOutcome(frozenset(), {})
        operations: list[dict[str, Any]] = []
        for write in writes:
            operations.append(
                {
                    "index": {
                        "_index": index,
                        "_id": write.doc_id,
                        "version": write.version,
                        "version_type": version_type,
                    }
                }
            )
            operations.append(write.document)
        flag = "true" if refresh else "false"
        if isinstance(self._client, AsyncOpenSearch):
            response = await _reach(self._client.bulk(body=operations, params={"refresh": flag}))
        else:
            response = await _reach(self._client.bulk(operations=operations, refresh=flag))
        conflicts: set[str] = set()
        errors: dict[str, str] = {}
        for item in response["items"]:
            result = item["index"]
            status = int(result.get("status", 200))
            if status == 409:
                conflicts.add(result["_id"])
            elif status >= 300:
                if status == 429 or status >= 500:  # overloaded or failing shard: transient
                    raise SearchUnavailable(f"bulk item {result['_id']}: {status} {result.get('error')}")
                errors[result["_id"]] = str(result.get("error"))
        return BulkOutcome(frozenset(conflicts), errors)

    async def get_many(self, index: str, doc_ids: Sequence[str]) -> dict[str, StoredDocument]:
        """The stored documents among `doc_ids`, with their versions; missing ids are left out."""
        if not doc_ids:
            return {}
        if isinstance(self._client, AsyncOpenSearch):
            response = await _reach(self._client.mget(index=index, body={"ids": list(doc_ids)}))
        else:
            response = await _reach(self._client.mget(index=index, ids=list(doc_ids)))
        return {
            doc["_id"]: StoredDocument(doc["_source"], int(doc["_version"]))
            for doc in response["docs"]
            if doc.get("found")
        }

    async def indices(self, pattern: str) -> list[str]:
        """The names of the indices matching `pattern` (wildcards allowed)."""
        try:
            response = await _reach(self._client.indices.get(index=pattern))
        except (OsNotFound, EsNotFound):
            return []
        return sorted(response)

    async def ping(self) -> None:
        """Raise `SearchUnavailable` unless the engine answers."""
        await _reach(self._client.info())

    async def refresh(self, index: str) -> None:
        await self._client.indices.refresh(index=index)

    async def point_alias(self, alias: str, index: str) -> None:
        """Point `alias` at `index` alone, atomically (the swap at the end of a rebuild)."""
        actions: list[dict[str, Any]] = [
            {"remove": {"index": "*", "alias": alias}},
            {"add": {"index": index, "alias": alias}},
        ]
        try:
            current = await self._client.indices.get_alias(name=alias)
        except (OsNotFound, EsNotFound):
            current = {}
        if not current:
            actions = actions[1:]  # removing an alias that does not exist is an error
        if isinstance(self._client, AsyncOpenSearch):
            await self._client.indices.update_aliases(body={"actions": actions})
        else:
            await self._client.indices.update_aliases(actions=actions)

    async def alias_targets(self, alias: str) -> list[str]:
        try:
            current = await self._client.indices.get_alias(name=alias)
        except (OsNotFound, EsNotFound):
            return []
        return sorted(current)


async def connect_search(url: str, *, timeout: float = 10.0) -> SearchClient:
    """Identify the engine at `url` and return a client for it."""
    try:
        async with httpx.AsyncClient(timeout=timeout) as http:
            response = await http.get(url)
            response.raise_for_status()
            info = response.json()
    except (httpx.HTTPError, ValueError) as error:
        raise SearchUnavailable(f"search engine at {url} did not answer: {error}") from error
    version = info.get("version", {})
    number = str(version.get("number", "?"))
    client: AsyncOpenSearch | AsyncElasticsearch
    if version.get("distribution") == "opensearch":
        client = AsyncOpenSearch(hosts=[url], timeout=timeout)
        return SearchClient("opensearch", number, client)
    client = AsyncElasticsearch(url, request_timeout=timeout)
    return SearchClient("elasticsearch", number, client)
