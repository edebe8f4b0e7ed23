"""The search client against the real engine: what the read models rely on."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from readmodels.search import SearchClient, SearchUnavailable, VersionConflict, connect_search


@pytest.fixture
async def search(search_url: str) -> AsyncIterator[SearchClient]:
    client = await connect_search(search_url)
    yield client
    await client.close()


async def test_identifies_the_engine_it_talks_to(search: SearchClient) -> None:
    assert search.engine in {"opensearch", "elasticsearch"}
    assert search.version[0].isdigit()


async def test_external_versions_refuse_stale_writes(search: SearchClient) -> None:
    index = f"versions-{uuid.uuid4().hex[:10]}"
    await search.create_index(index)
    try:
        await search.put(index, "order-1", {"status": "confirmed"}, version=3, refresh=True)
        with pytest.raises(VersionConflict):
            await search.put(index, "order-1", {"status": "placed"}, version=2)
        with pytest.raises(VersionConflict):  # a redelivered event carries the same version
            await search.put(index, "order-1", {"status": "confirmed"}, version=3)
        assert await search.get(index, "order-1") == {"status": "confirmed"}
    finally:
        await search.delete_index(index)


async def test_alias_moves_atomically_to_a_new_index(search: SearchClient) -> None:
    suffix = uuid.uuid4().hex[:10]
    old, new, alias = f"orders-a-{suffix}", f"orders-b-{suffix}", f"orders-{suffix}"
    for index, status in ((old, "old"), (new, "new")):
        await search.create_index(index)
        await search.put(index, "1", {"status": status}, refresh=True)
    try:
        await search.point_alias(alias, old)
        assert await search.get(alias, "1") == {"status": "old"}
        await search.point_alias(alias, new)
        assert await search.alias_targets(alias) == [new]
        assert await search.get(alias, "1") == {"status": "new"}
    finally:
        await search.delete_index(old)
        await search.delete_index(new)


async def test_an_unreachable_engine_is_a_clear_error() -> None:
    with pytest.raises(SearchUnavailable, match=r"127\.0\.0\.1:9"):
        await connect_search("http://127.0.0.1:9", timeout=1)
