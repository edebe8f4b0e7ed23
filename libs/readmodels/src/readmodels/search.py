"""One client for the Elasticsearch-API search engines the suite runs on.

The local stack runs OpenSearch (its artifacts are on Maven Central);
docker-compose runs Elasticsearch. Their REST APIs agree on everything the
read models use, but their official Python clients refuse each other's servers
(elasticsearch-py checks the product header), so `connect_search` asks the server
what it is and wraps the matching official client behind the few operations
the suite needs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import httpx
from elasticsearch import AsyncElasticsearch
from elasticsearch import ConflictError as EsConflict
from elasticsearch import NotFoundError as EsNotFound
from opensearchpy import AsyncOpenSearch
from opensearchpy.exceptions import ConflictError as OsConflict
from opensearchpy.exceptions import NotFoundError as OsNotFound

__all__ = ["SearchClient", "SearchUnavailable", "VersionConflict", "connect_search"]

Engine = Literal["opensearch", "elasticsearch"]
Document = dict[str, Any]


class SearchUnavailable(RuntimeError):
    """The search engine could not be reached or identified."""


class VersionConflict(Exception):
    """An externally versioned write carried a version not above the stored one.

    For read models this is the expected outcome of a duplicate delivery: the
    document already reflects that event or a later one.
    """


class SearchClient:
    """The operations the read models need, on either engine."""

    def __init__(self, engine: Engine, version: str, client: AsyncOpenSearch | AsyncElasticsearch) -> None:
        self.engine = engine
        self.version = version
        self._client = client

    async def close(self) -> None:
        await self._client.close()

    async def create_index(
        self, name: str, *, mappings: Mapping[str, Any] | None = None, shards: int = 1
    ) -> bool:
        """Create an index unless it exists; True when this call created it."""
        body: dict[str, Any] = {"settings": {"number_of_shards": shards, "number_of_replicas": 0}}
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
