"""The search contract: what the read models rely on, checked on OpenSearch and on Elasticsearch.

Every test taking `search` runs once per engine (`search_engine_url`), against
the real servers of the local stack; the two engines' clients differ, their
behaviour here must not.
"""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import msgspec
import pytest
from readmodels.search import (
    BulkFailed,
    BulkWrite,
    IndexNotFound,
    SearchClient,
    SearchRejected,
    SearchUnavailable,
    VersionConflict,
    connect_search,
)
from testkit.harness import TcpProxy


@pytest.fixture
async def search(search_engine_url: str) -> AsyncIterator[SearchClient]:
    client = await connect_search(search_engine_url)
    yield client
    await client.close()


@pytest.fixture
async def index(search: SearchClient) -> AsyncIterator[str]:
    """A unique index name for one test, deleted afterwards (the test creates it)."""
    name = f"contract-{uuid.uuid4().hex[:12]}"
    yield name
    await search.delete_index(name)


async def test_identifies_the_engine_it_talks_to(
    search: SearchClient, request: pytest.FixtureRequest
) -> None:
    assert search.engine == request.node.callspec.params["search_engine_url"]
    assert search.version.split(".")[0].isdigit()
    assert await search.health() in {"green", "yellow"}


async def test_create_index_reports_whether_it_created_it(search: SearchClient, index: str) -> None:
    assert not await search.index_exists(index)
    assert await search.create_index(index, mappings={"properties": {"sku": {"type": "keyword"}}})
    assert not await search.create_index(index)
    assert await search.index_exists(index)


async def test_external_versions_refuse_stale_writes(search: SearchClient, index: str) -> None:
    await search.create_index(index)
    await search.put(index, "order-1", {"status": "confirmed"}, version=3, refresh=True)
    with pytest.raises(VersionConflict):
        await search.put(index, "order-1", {"status": "placed"}, version=2)
    with pytest.raises(VersionConflict):  # a redelivered event carries the same version
        await search.put(index, "order-1", {"status": "confirmed"}, version=3)
    assert await search.get(index, "order-1") == {"status": "confirmed"}


async def test_bulk_writes_keep_the_highest_version_whatever_the_delivery_order(
    search: SearchClient, index: str
) -> None:
    await search.create_index(index)
    first = await search.put_many(
        index,
        [BulkWrite("order-1", {"status": "shipped"}, 4), BulkWrite("order-2", {"status": "placed"}, 1)],
    )
    assert (first.written, first.stale) == (2, [])
    # A redelivery of older events and a duplicate, mixed with one new event.
    second = await search.put_many(
        index,
        [
            BulkWrite("order-1", {"status": "placed"}, 1),
            BulkWrite("order-1", {"status": "shipped"}, 4),
            BulkWrite("order-2", {"status": "confirmed"}, 2),
        ],
        refresh=True,
    )
    assert (second.written, second.stale) == (1, ["order-1", "order-1"])
    assert await search.get(index, "order-1") == {"status": "shipped"}
    assert await search.get(index, "order-2") == {"status": "confirmed"}


async def test_a_bulk_write_the_mapping_rejects_fails_by_id_and_the_rest_are_written(
    search: SearchClient, index: str
) -> None:
    await search.create_index(index, mappings={"properties": {"quantity": {"type": "integer"}}})
    with pytest.raises(BulkFailed) as failed:
        await search.put_many(
            index,
            [BulkWrite("good", {"quantity": 3}, 1), BulkWrite("bad", {"quantity": "three"}, 1)],
            refresh=True,
        )
    assert list(failed.value.errors) == ["bad"]
    assert "parsing" in failed.value.errors["bad"]
    assert await search.get(index, "good") == {"quantity": 3}
    assert await search.get(index, "bad") is None


async def test_deletes_are_version_guarded_too(search: SearchClient, index: str) -> None:
    await search.create_index(index)
    await search.put(index, "order-1", {"status": "placed"}, version=5, refresh=True)
    with pytest.raises(VersionConflict):
        await search.delete(index, "order-1", version=4)
    assert await search.delete(index, "order-1", version=6, refresh=True)
    assert await search.get(index, "order-1") is None
    assert not await search.delete(index, "never-written")


async def test_alias_moves_to_a_new_index(search: SearchClient) -> None:
    suffix = uuid.uuid4().hex[:10]
    old, new, alias = f"orders-a-{suffix}", f"orders-b-{suffix}", f"orders-{suffix}"
    for name, status in ((old, "old"), (new, "new")):
        await search.create_index(name)
        await search.put(name, "1", {"status": status}, refresh=True)
    try:
        assert await search.alias_targets(alias) == []
        await search.point_alias(alias, old)
        assert await search.get(alias, "1") == {"status": "old"}
        await search.point_alias(alias, new)
        assert await search.alias_targets(alias) == [new]
        assert await search.get(alias, "1") == {"status": "new"}
        await search.swap_alias(alias, old=new, new=old)
        assert await search.alias_targets(alias) == [old]
    finally:
        await search.delete_index(old)
        await search.delete_index(new)


async def test_readers_never_see_an_alias_on_neither_or_both_indices_while_it_swaps(
    search: SearchClient,
) -> None:
    # The rebuild's swap (invariant 5): a reader counting through the alias sees
    # the old index's 3 documents or the new one's 5, never 0 nor 8.
    suffix = uuid.uuid4().hex[:10]
    old, new, alias = f"swap-a-{suffix}", f"swap-b-{suffix}", f"swap-{suffix}"
    for name, size in ((old, 3), (new, 5)):
        await search.create_index(name)
        await search.put_many(name, [BulkWrite(str(n), {"n": n}) for n in range(size)], refresh=True)
    await search.point_alias(alias, old)
    seen: set[int] = set()
    swapping = True

    async def read() -> None:
        while swapping:
            seen.add(await search.count(alias))

    reader = asyncio.create_task(read())
    try:
        for _ in range(15):
            await search.swap_alias(alias, old=old, new=new)
            await search.swap_alias(alias, old=new, new=old)
    finally:
        swapping = False
        await reader
        await search.delete_index(old)
        await search.delete_index(new)
    assert seen <= {3, 5}
    assert 3 in seen


async def test_alias_actions_apply_all_or_nothing(search: SearchClient) -> None:
    suffix = uuid.uuid4().hex[:10]
    old, new, alias = f"atomic-a-{suffix}", f"atomic-b-{suffix}", f"atomic-{suffix}"
    await search.create_index(old)
    await search.create_index(new)
    try:
        await search.point_alias(alias, old)
        with pytest.raises(IndexNotFound):
            await search.update_aliases(
                [
                    {"add": {"index": new, "alias": alias}},
                    {"remove": {"index": f"missing-{suffix}", "alias": alias}},
                ]
            )
        assert await search.alias_targets(alias) == [old]
    finally:
        await search.delete_index(old)
        await search.delete_index(new)


async def test_search_after_pages_through_every_document_once_in_order(
    search: SearchClient, index: str
) -> None:
    await search.create_index(
        index, mappings={"properties": {"order_id": {"type": "keyword"}, "placed_at": {"type": "date"}}}
    )
    # Several documents share a timestamp: the id breaks the tie, so no cursor repeats.
    documents = [
        BulkWrite(f"o-{n:02}", {"order_id": f"o-{n:02}", "placed_at": f"2026-01-{1 + n // 3:02}T00:00:00Z"})
        for n in range(25)
    ]
    await search.put_many(index, documents, refresh=True)
    sort = [{"placed_at": "desc"}, {"order_id": "asc"}]
    seen: list[str] = []
    after = None
    pages = 0
    while True:
        page = await search.search_page(index, {"match_all": {}}, sort=sort, size=10, search_after=after)
        assert page.total == 25
        seen += [hit.doc_id for hit in page.hits]
        pages += 1
        if page.next_after is None:
            break
        after = page.next_after
    expected = sorted(documents, key=lambda w: (-int(w.document["placed_at"][8:10]), w.doc_id))
    assert seen == [w.doc_id for w in expected]
    assert pages == 3


async def test_nested_queries_match_within_one_line_only(search: SearchClient, index: str) -> None:
    await search.create_index(
        index,
        mappings={
            "properties": {
                "lines": {
                    "type": "nested",
                    "properties": {"sku": {"type": "keyword"}, "quantity": {"type": "integer"}},
                }
            }
        },
    )
    await search.put_many(
        index,
        [
            BulkWrite("a", {"lines": [{"sku": "MUG", "quantity": 3}]}),
            # MUG and a quantity of 3 both occur, but not on the same line.
            BulkWrite("b", {"lines": [{"sku": "MUG", "quantity": 1}, {"sku": "CUP", "quantity": 3}]}),
        ],
        refresh=True,
    )
    line_query = {
        "bool": {"must": [{"term": {"lines.sku": "MUG"}}, {"range": {"lines.quantity": {"gte": 2}}}]}
    }
    page = await search.search_page(index, {"nested": {"path": "lines", "query": line_query}})
    assert [hit.doc_id for hit in page.hits] == ["a"]


async def test_a_custom_analyzer_from_core_parts_folds_case_and_drops_stop_words(
    search: SearchClient, index: str
) -> None:
    analysis = {
        "analyzer": {
            "product_text": {"type": "custom", "tokenizer": "standard", "filter": ["lowercase", "stop"]}
        }
    }
    await search.create_index(
        index,
        settings={"analysis": analysis},
        mappings={"properties": {"name": {"type": "text", "analyzer": "product_text"}}},
    )
    await search.put_many(
        index, [BulkWrite("1", {"name": "The Blue Mug"}), BulkWrite("2", {"name": "A red cup"})], refresh=True
    )
    assert await search.search(index, {"match": {"name": "BLUE mug"}}) == [{"name": "The Blue Mug"}]
    assert await search.search(index, {"match": {"name": "the"}}) == []  # a stop word is not indexed
    assert await search.count(index, {"match": {"name": {"query": "blue cup", "operator": "or"}}}) == 2


async def test_terms_and_date_histogram_aggregations(search: SearchClient, index: str) -> None:
    await search.create_index(
        index, mappings={"properties": {"status": {"type": "keyword"}, "placed_at": {"type": "date"}}}
    )
    rows = [("placed", "2026-01-01"), ("placed", "2026-01-01"), ("shipped", "2026-01-02")]
    await search.put_many(
        index,
        [
            BulkWrite(str(n), {"status": s, "placed_at": f"{day}T12:00:00Z"})
            for n, (s, day) in enumerate(rows)
        ],
        refresh=True,
    )
    results = await search.aggregate(
        index,
        {
            "by_status": {"terms": {"field": "status"}},
            "per_day": {"date_histogram": {"field": "placed_at", "calendar_interval": "day"}},
        },
    )
    assert {b["key"]: b["doc_count"] for b in results["by_status"]["buckets"]} == {"placed": 2, "shipped": 1}
    assert [b["doc_count"] for b in results["per_day"]["buckets"]] == [2, 1]


async def test_reading_an_index_that_does_not_exist_is_a_clear_error(search: SearchClient) -> None:
    missing = f"missing-{uuid.uuid4().hex[:10]}"
    with pytest.raises(IndexNotFound):
        await search.search_page(missing, {"match_all": {}})
    with pytest.raises(IndexNotFound):
        await search.count(missing)
    assert await search.get(missing, "1") is None
    await search.delete_index(missing)  # deleting what is not there is fine


class _Sorted(msgspec.Struct):
    sort: tuple[int, str]


class _Hits(msgspec.Struct):
    hits: list[_Sorted]
    total: dict[str, Any] | None = None


class _Bucket(msgspec.Struct):
    key: str
    doc_count: int


class _Terms(msgspec.Struct):
    buckets: list[_Bucket]


class _Answer(msgspec.Struct):
    hits: _Hits
    aggregations: dict[str, _Terms] = {}


async def test_search_as_sends_the_body_as_prepared_and_converts_the_answer(
    search: SearchClient, index: str
) -> None:
    await search.create_index(
        index,
        mappings={
            "properties": {
                "order_id": {"type": "keyword"},
                "total": {"type": "long"},
                "status": {"type": "keyword"},
            }
        },
    )
    documents = [
        {"order_id": f"o-{n}", "total": 100 * (n % 3), "status": "odd" if n % 2 else "even"} for n in range(6)
    ]
    await search.put_many(index, [BulkWrite(d["order_id"], d) for d in documents], refresh=True)
    body = {
        "query": {"match_all": {}},
        "size": 2,
        "sort": [{"total": {"order": "desc"}}, {"order_id": {"order": "desc"}}],
        "search_after": [200, "o-5"],
        "track_total_hits": False,
        "aggs": {"statuses": {"terms": {"field": "status"}}},
    }

    answer = await search.search_as(index, body, _Answer)

    assert [hit.sort for hit in answer.hits.hits] == [(200, "o-2"), (100, "o-4")]
    assert answer.hits.total is None  # not tracked: the body went as it was
    assert {b.key: b.doc_count for b in answer.aggregations["statuses"].buckets} == {"odd": 3, "even": 3}


async def test_reads_of_a_missing_index_are_index_not_found(search: SearchClient) -> None:
    missing = f"missing-{uuid.uuid4().hex[:10]}"
    with pytest.raises(IndexNotFound):
        await search.search_as(missing, {"query": {"match_all": {}}}, _Answer)
    with pytest.raises(IndexNotFound):
        await search.refresh(missing)
    with pytest.raises(IndexNotFound):
        await search.count(missing)


async def test_a_malformed_body_is_rejected(search: SearchClient, index: str) -> None:
    await search.create_index(index)
    with pytest.raises(SearchRejected, match="no_such_query"):
        await search.search_as(index, {"query": {"no_such_query": {}}}, _Answer)
    with pytest.raises(SearchRejected):
        await search.search_page(index, {"no_such_query": {}})
    with pytest.raises(SearchRejected):
        await search.count(index, {"no_such_query": {}})


@pytest.fixture
async def proxied(search_engine_url: str) -> AsyncIterator[tuple[TcpProxy, SearchClient]]:
    """A client whose engine a test can take away (`stop`, `freeze`) and give back (`start`)."""
    target = urlsplit(search_engine_url)
    proxy = await TcpProxy(target.hostname or "127.0.0.1", target.port or 9200).start()
    client = await connect_search(f"http://127.0.0.1:{proxy.port}", timeout=1, retries=0)
    yield proxy, client
    await client.close()
    await proxy.stop()


async def test_an_engine_gone_after_connecting_is_unavailable_until_it_is_back(
    proxied: tuple[TcpProxy, SearchClient], search: SearchClient, index: str
) -> None:
    proxy, client = proxied
    await search.create_index(index)
    body = {"query": {"match_all": {}}, "size": 1}

    await proxy.stop()
    with pytest.raises(SearchUnavailable, match="unreachable"):
        await client.search_as(index, body, _Answer)
    with pytest.raises(SearchUnavailable):
        await client.refresh(index)
    with pytest.raises(SearchUnavailable):
        await client.count(index)

    await proxy.start()
    assert await client.count(index) == 0


async def test_a_request_the_engine_does_not_answer_in_time_is_unavailable(
    proxied: tuple[TcpProxy, SearchClient], search: SearchClient, index: str
) -> None:
    proxy, client = proxied
    await search.create_index(index)

    proxy.freeze()  # the request reaches the proxy and is held there
    with pytest.raises(SearchUnavailable, match="Timeout"):
        await client.count(index)
    assert proxy.held == 1  # sent once: a timed-out request is not repeated


async def test_an_unreachable_engine_is_a_clear_error() -> None:
    with pytest.raises(SearchUnavailable, match=r"127\.0\.0\.1:9"):
        await connect_search("http://127.0.0.1:9", timeout=1)


class _NotASearchEngine(BaseHTTPRequestHandler):
    """Answers every GET with 200 and a JSON body that names no engine."""

    def do_GET(self) -> None:
        body = json.dumps({"nodes": {"x": {"version": "1.0.0"}}, "version": {"number": "1.0.0"}}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture
def other_http_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NotASearchEngine)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


async def test_a_server_that_is_neither_engine_is_refused(other_http_server: str) -> None:
    with pytest.raises(SearchUnavailable, match="neither Elasticsearch 9 nor OpenSearch"):
        await connect_search(other_http_server, timeout=2)


class _OverloadedEngine(BaseHTTPRequestHandler):
    """Identifies itself as its server's `engine`, then answers every search with its server's `status`.

    A real engine cannot be made to answer 429 or 503 on demand without harming
    the other tests sharing it (an index without its primary shard turns the
    whole cluster red), so this stands in for one in the failure that is checked:
    what the client does with such an answer.
    """

    server: _OverloadedServer

    def do_GET(self) -> None:
        if self.path.startswith("/_nodes"):
            self._answer(200, {"nodes": {"n": {"version": self.server.version}}})
        else:  # OpenSearch names itself in `GET /`
            self._answer(200, {"version": {"distribution": "opensearch", "number": self.server.version}})

    def do_POST(self) -> None:
        self.server.searches += 1
        self.rfile.read(int(self.headers.get("content-length", 0)))
        error = {"type": "es_rejected_execution_exception", "reason": "overloaded"}
        self._answer(self.server.status, {"error": error, "status": self.server.status})

    def _answer(self, status: int, document: dict[str, Any]) -> None:
        body = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        if self.server.engine == "elasticsearch":
            self.send_header("x-elastic-product", "Elasticsearch")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        return


class _OverloadedServer(ThreadingHTTPServer):
    def __init__(self, engine: str, status: int) -> None:
        super().__init__(("127.0.0.1", 0), _OverloadedEngine)
        self.engine = engine
        self.version = "9.2.0" if engine == "elasticsearch" else "2.19.0"
        self.status = status
        self.searches = 0


@pytest.mark.parametrize("engine", ["opensearch", "elasticsearch"])
@pytest.mark.parametrize(("status", "retries", "sent"), [(503, 0, 1), (429, 0, 1), (502, 2, 3)])
async def test_an_overloaded_or_failing_engine_is_unavailable_and_retried_only_as_asked(
    engine: str, status: int, retries: int, sent: int
) -> None:
    server = _OverloadedServer(engine, status)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        client = await connect_search(f"http://127.0.0.1:{server.server_port}", timeout=2, retries=retries)
        assert client.engine == engine
        try:
            with pytest.raises(SearchUnavailable, match=str(status)):
                await client.search_as("orders", {"query": {"match_all": {}}}, _Answer)
        finally:
            await client.close()
    finally:
        server.shutdown()
        server.server_close()
    assert server.searches == sent
