"""Order reads: by id (Redis, with ETag), search (the search engine, with cursors), counts, recent orders."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal, cast
from uuid import UUID

from litestar import Controller, Request, Response, get
from litestar.datastructures import ResponseHeader
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, Parameter
from readmodels.keyspace import RECENT_ORDERS
from readmodels.order_queries import SORTS, OrderFilters, SortKey
from readmodels.orders import ORDER_STATUSES
from readmodels.redis_reads import order_counts, recent_orders
from servicekit.auth import CUSTOMER, SERVICE, STAFF, allow
from servicekit.errors import InvalidHeader
from servicekit.openapi import header_parameter
from servicekit.telemetry import add_response_headers

from query_service.errors import InvalidQuery, OrderNotFound
from query_service.routes.conventions import (
    ReadOperation,
    header,
    needs,
    problem_responses,
    query_opt,
    read_request,
)
from query_service.views import (
    OrderPageView,
    OrderView,
    RecentOrdersView,
    StatusCountsView,
    order_from_document,
    order_from_summary,
)

__all__ = ["CustomerController", "OrderController"]

Status = Literal["pending", "confirmed", "rejected", "cancelled"]
# `$(?!\n)`: the true end of the text (a bare `$` also matches before a final newline).
_PRINTABLE = r"^[^\x00-\x1f\x7f]+$(?!\n)"
CustomerId = Annotated[
    str,
    Parameter(
        min_length=1,
        max_length=200,
        pattern=_PRINTABLE,
        description="A customer id (a token's subject). Customers may name only themselves.",
    ),
]
# Years a placement time can have: before the suite existed is as empty as after 9999 is invalid.
_EARLIEST, _LATEST = datetime(2000, 1, 1, tzinfo=UTC), datetime(9999, 1, 1, tzinfo=UTC)
_MAX_TOTAL = 2**53  # amounts in minor units; JSON numbers stay exact below this
_IF_NONE_MATCH = b"if-none-match"
_MAX_IF_NONE_MATCH = 1024
_NO_CACHE = "private, no-cache"  # the client may keep it, but asks each time (If-None-Match)
_NO_CACHE_BYTES = _NO_CACHE.encode()


class OrderByIdOperation(ReadOperation):
    """The read by id's operation: it also lists If-None-Match, which the handler reads itself."""

    headers = (
        *ReadOperation.headers,
        header_parameter(
            "If-None-Match",
            'ETags the client holds (e.g. `"3"`); the same version answers 304 without a body.',
            max_length=_MAX_IF_NONE_MATCH,
        ),
    )


ALL_ROLES = (CUSTOMER, STAFF, SERVICE)


class OrderController(Controller):
    path = "/orders"
    tags = ["orders"]

    @get(
        "/{order_id:uuid}",
        operation_id="getOrder",
        summary="One order, from Redis",
        description=needs(
            "The order's summary as the Redis read model holds it, with `ETag` = its stream version. "
            "Customers see only their own orders (another's is 404).",
            *ALL_ROLES,
        ),
        opt=allow(*ALL_ROLES) | query_opt(),
        responses=problem_responses(404)
        | {304: ResponseSpec(None, description="Unchanged since the ETag sent in If-None-Match")},
        response_headers=[
            ResponseHeader(
                name="ETag", documentation_only=True, description='The stream version, e.g. `"3"`.'
            )
        ],
        operation_class=OrderByIdOperation,
    )
    async def get_order(self, order_id: FromPath[UUID], request: Request[Any, Any, Any]) -> OrderView:
        if_none_match = header(request, _IF_NONE_MATCH)
        if if_none_match is not None and len(if_none_match) > _MAX_IF_NONE_MATCH:
            raise InvalidHeader("If-None-Match", f"at most {_MAX_IF_NONE_MATCH} characters")
        read = read_request(request)
        hashes = await read.live_hashes()
        summary = await hashes.order(str(order_id))
        if summary is None or (not read.sees_everyone and summary.customer_id != read.principal.subject):
            raise OrderNotFound(f"order {order_id} is not known here (yet)")
        etag = f'"{summary.version}"'
        if _matches(if_none_match, etag):
            # Litestar sends a Response it is handed whatever the annotation says, which documents the
            # 200; a 304 has no body.
            not_modified = Response(None, status_code=304, headers={"ETag": etag, "Cache-Control": _NO_CACHE})
            return cast(OrderView, not_modified)
        view = order_from_summary(summary)
        # The 200, the common answer, as plain data: its headers go out without a Response object.
        add_response_headers(request, (b"etag", etag.encode()), (b"cache-control", _NO_CACHE_BYTES))
        return view

    @get(
        "/",
        operation_id="searchOrders",
        summary="Search orders, newest first, a page at a time",
        description=needs(
            "Text (product names, SKU or order id), status, customer, placement time and total filters; "
            "sorted by `placed_at` or `total` (then order id), which never change, so paging with "
            "`next_cursor` neither repeats nor skips an order while writes go on. Customers search "
            "their own orders only.",
            *ALL_ROLES,
        ),
        opt=allow(*ALL_ROLES)
        | query_opt(
            "q",
            "status",
            "customer",
            "placed_from",
            "placed_to",
            "total_min",
            "total_max",
            "sort",
            "limit",
            "cursor",
            repeatable=["status"],
        ),
        responses=problem_responses(),
        operation_class=ReadOperation,
    )
    async def search(
        self,
        request: Request[Any, Any, Any],
        q: Annotated[
            str | None,
            Parameter(
                min_length=1,
                max_length=200,
                pattern=_PRINTABLE,
                description="Words of a product name, a SKU, or an order id.",
            ),
        ] = None,
        status: Annotated[
            list[Status] | None,
            Parameter(max_items=len(ORDER_STATUSES), description="Any of these statuses (repeat it)."),
        ] = None,
        customer: Annotated[str | None, Parameter(min_length=1, max_length=200, pattern=_PRINTABLE)] = None,
        placed_from: Annotated[
            datetime | None, Parameter(description="Placed at or after (RFC 3339; UTC if no offset).")
        ] = None,
        placed_to: Annotated[datetime | None, Parameter(description="Placed before (RFC 3339).")] = None,
        total_min: Annotated[int | None, Parameter(ge=0, le=_MAX_TOTAL, description="Minor units.")] = None,
        total_max: Annotated[int | None, Parameter(ge=0, le=_MAX_TOTAL, description="Minor units.")] = None,
        sort: Annotated[
            SortKey, Parameter(description=f"One of {', '.join(SORTS)}; `-` is descending.")
        ] = "-placed_at",
        limit: Annotated[int, Parameter(ge=1, le=100, description="Orders per page.")] = 20,
        cursor: Annotated[
            str | None,
            Parameter(
                min_length=1,
                max_length=512,
                pattern=r"^[A-Za-z0-9_-]+$(?!\n)",
                description="`next_cursor` of the previous page, with the same filters and sort.",
            ),
        ] = None,
    ) -> OrderPageView:
        read = read_request(request)
        filters = OrderFilters(
            text=q,
            statuses=tuple(sorted(set(status or ()))),
            customer_id=read.own_customer(customer),
            placed_from=_bounded("placed_from", placed_from),
            placed_to=_bounded("placed_to", placed_to),
            total_min=total_min,
            total_max=total_max,
        )
        _check_ranges(filters)
        search = await read.searchable()
        page = await search.page(filters, sort, limit, cursor)
        orders = [order_from_document(document) for document in page.orders]
        return OrderPageView(orders=orders, next_cursor=page.next_cursor)

    @get(
        "/counts",
        operation_id="countOrders",
        summary="How many orders are in each status",
        description=needs(
            "Staff and the saga: over all customers (Redis), or one customer's with `customer` (the "
            "search engine). Customers: their own orders only.",
            *ALL_ROLES,
        ),
        opt=allow(*ALL_ROLES) | query_opt("customer"),
        responses=problem_responses(),
        operation_class=ReadOperation,
    )
    async def counts(
        self,
        request: Request[Any, Any, Any],
        customer: Annotated[str | None, Parameter(min_length=1, max_length=200, pattern=_PRINTABLE)] = None,
    ) -> StatusCountsView:
        read = read_request(request)
        scope = read.own_customer(customer)
        if scope is None:
            keys = await read.redis_models()
            found = await order_counts(read.reads.redis, keys)
        else:
            search = await read.searchable()
            found = await search.counts(OrderFilters(customer_id=scope))
        counts = {status: max(0, found.get(status, 0)) for status in ORDER_STATUSES}
        return StatusCountsView(counts=counts, total=sum(counts.values()))


class CustomerController(Controller):
    path = "/customers"
    tags = ["orders"]

    @get(
        "/{customer_id:str}/recent-orders",
        operation_id="recentOrders",
        summary="A customer's most recently placed orders, newest first (Redis)",
        description=needs(
            f"At most {RECENT_ORDERS} are kept per customer. Customers may ask for their own only.",
            *ALL_ROLES,
        ),
        opt=allow(*ALL_ROLES) | query_opt("limit"),
        responses=problem_responses(),
        operation_class=ReadOperation,
    )
    async def recent(
        self,
        customer_id: FromPath[CustomerId],
        request: Request[Any, Any, Any],
        limit: Annotated[int, Parameter(ge=1, le=RECENT_ORDERS)] = 20,
    ) -> RecentOrdersView:
        read = read_request(request)
        customer = read.own_customer(customer_id) or customer_id
        keys = await read.redis_models()
        summaries = await recent_orders(read.reads.redis, keys, customer, limit)
        return RecentOrdersView(customer_id=customer, orders=[order_from_summary(s) for s in summaries])


def _matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    for candidate in if_none_match.split(","):
        tag = candidate.strip()
        if tag == "*" or tag.removeprefix("W/") == etag:
            return True
    return False


def _bounded(name: str, value: datetime | None) -> datetime | None:
    if value is None:
        return None
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    # Compared as instants (whatever the offset), so the conversion below cannot overflow.
    if not _EARLIEST <= aware <= _LATEST:
        raise InvalidQuery([(name, f"must be between {_EARLIEST:%Y-%m-%d} and {_LATEST:%Y-%m-%d} (UTC)")])
    # UTC from here on: the engines refuse offsets beyond ±18:00, and one instant written with two
    # offsets is one query (the cursor's fingerprint of the filters sees the same value).
    return aware.astimezone(UTC)


def _check_ranges(filters: OrderFilters) -> None:
    problems: list[tuple[str, str]] = []
    if filters.placed_from and filters.placed_to and filters.placed_from >= filters.placed_to:
        problems.append(("placed_to", "must be after placed_from"))
    low, high = filters.total_min, filters.total_max
    if low is not None and high is not None and low > high:
        problems.append(("total_max", "must be at least total_min"))
    if problems:
        raise InvalidQuery(problems)
