"""Product reads: a SKU's price, whether it is for sale, what is on hand and can still be reserved (Redis)."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, get
from litestar.params import FromPath, PathParameter
from servicekit.auth import CUSTOMER, SERVICE, STAFF, allow

from query_service.errors import ProductNotFound
from query_service.routes.conventions import ReadOperation, needs, problem_responses, query_opt, read_request
from query_service.views import StockView, stock_view

__all__ = ["StockController"]

SkuPath = Annotated[
    str,
    PathParameter(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$(?!\n)", description="The product's SKU (case-insensitive)."
    ),
]


class StockController(Controller):
    path = "/stock"
    tags = ["stock"]

    @get(
        "/{sku:str}",
        operation_id="getStock",
        summary="A product: its price, whether it is for sale, on hand and still available to reserve",
        description=needs("From the Redis read model.", CUSTOMER, STAFF, SERVICE),
        opt=allow(CUSTOMER, STAFF, SERVICE) | query_opt(),
        responses=problem_responses(404),
        operation_class=ReadOperation,
    )
    async def get_stock(self, sku: FromPath[SkuPath], request: Request[Any, Any, Any]) -> StockView:
        hashes = await read_request(request).live_hashes()
        level = await hashes.stock(sku)
        if level is None:
            raise ProductNotFound(f"product {sku.lower()} is not known here (yet)")
        return stock_view(level)
