"""Stock commands: register and receive (staff); reserve, release, commit (the saga)."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

import msgspec
from fulfilment.deciders import STOCK
from fulfilment.stock import (
    CommitReservation,
    ReceiveStock,
    RegisterProduct,
    ReleaseReservation,
    ReserveStock,
)
from fulfilment.values import ProductName, Quantity, Sku, stock_stream
from litestar import Controller, Response, post
from litestar.params import FromPath, JSONBody, PathParameter
from servicekit.auth import SERVICE, STAFF, allow

from command_service.handling import CommandAccepted
from command_service.routes.conventions import CommandRequestDep, problem_responses

__all__ = ["StockController"]

SkuPath = Annotated[
    str,
    PathParameter(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$", description="The product's SKU (case-insensitive)."
    ),
]


class RegisterProductBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    sku: Sku
    name: ProductName


class ReceiveStockBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    quantity: Quantity


class ReserveStockBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    order_id: UUID
    quantity: Quantity


class StockController(Controller):
    path = "/products"
    tags = ["stock"]

    @post(
        "/",
        operation_id="registerProduct",
        summary="Register a product (SKU) with no stock",
        status_code=201,
        opt=allow(STAFF),
        responses=problem_responses(409, 412),
    )
    async def register(
        self, data: JSONBody[RegisterProductBody], command_request: CommandRequestDep
    ) -> Response[CommandAccepted]:
        command = RegisterProduct(sku=data.sku, name=data.name)
        return await command_request.run(STOCK, stock_stream(data.sku), command, data)

    @post(
        "/{sku:str}/receipts",
        status_code=200,
        operation_id="receiveStock",
        summary="Record units arriving in the warehouse",
        opt=allow(STAFF),
        responses=problem_responses(404, 412),
    )
    async def receive(
        self,
        sku: SkuPath,
        data: JSONBody[ReceiveStockBody],
        command_request: CommandRequestDep,
    ) -> Response[CommandAccepted]:
        command = ReceiveStock(sku=sku, quantity=data.quantity)
        return await command_request.run(STOCK, stock_stream(sku), command, data)

    @post(
        "/{sku:str}/reservations",
        status_code=200,
        operation_id="reserveStock",
        summary="Reserve units for an order; a shortage is recorded as StockReservationFailed",
        opt=allow(SERVICE),
        responses=problem_responses(404, 412),
    )
    async def reserve(
        self,
        sku: SkuPath,
        data: JSONBody[ReserveStockBody],
        command_request: CommandRequestDep,
    ) -> Response[CommandAccepted]:
        command = ReserveStock(sku=sku, order_id=data.order_id, quantity=data.quantity)
        return await command_request.run(STOCK, stock_stream(sku), command, data)

    @post(
        "/{sku:str}/reservations/{order_id:uuid}/release",
        status_code=200,
        operation_id="releaseReservation",
        summary="Give an order's reserved units back",
        opt=allow(SERVICE),
        responses=problem_responses(404, 409, 412),
    )
    async def release(
        self,
        sku: SkuPath,
        order_id: FromPath[UUID],
        command_request: CommandRequestDep,
    ) -> Response[CommandAccepted]:
        command = ReleaseReservation(sku=sku, order_id=order_id)
        return await command_request.run(STOCK, stock_stream(sku), command)

    @post(
        "/{sku:str}/reservations/{order_id:uuid}/commit",
        status_code=200,
        operation_id="commitReservation",
        summary="Ship an order's reserved units (they leave the stock on hand)",
        opt=allow(SERVICE),
        responses=problem_responses(404, 409, 412),
    )
    async def commit(
        self,
        sku: SkuPath,
        order_id: FromPath[UUID],
        command_request: CommandRequestDep,
    ) -> Response[CommandAccepted]:
        command = CommitReservation(sku=sku, order_id=order_id)
        return await command_request.run(STOCK, stock_stream(sku), command)
