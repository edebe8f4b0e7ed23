"""Catalogue and stock commands: register, price, deactivate, activate, receive (staff); reserve,
release, commit (the saga, checked against the order they name)."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

import msgspec
from fulfilment.deciders import STOCK
from fulfilment.rules import check_commit, check_reservation
from fulfilment.stock import (
    ActivateProduct,
    ChangePrice,
    CommitReservation,
    DeactivateProduct,
    ReceiveStock,
    RegisterProduct,
    ReleaseReservation,
    ReserveStock,
)
from fulfilment.values import (
    CurrencyCode,
    Price,
    ProductName,
    Quantity,
    Reason,
    Sku,
    normalise_sku,
    stock_stream,
    whole,
)
from litestar import Controller, Response, post
from litestar.params import FromPath, JSONBody, PathParameter
from servicekit.auth import SERVICE, STAFF, requires
from servicekit.openapi import OptionalBodyOperation

from command_service.handling import CommandAccepted
from command_service.routes.conventions import CommandRequestDep, problem_responses, run

__all__ = ["StockController"]

SkuPath = Annotated[
    str,
    PathParameter(
        pattern=whole(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}"), description="The product's SKU (case-insensitive)."
    ),
]


class RegisterProductBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A new product, for sale at `unit_price` (minor units) in `currency` from now on."""

    sku: Sku
    name: ProductName
    unit_price: Price
    currency: CurrencyCode


class PriceBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The product's new price: orders placed from now on pay it; orders placed before keep theirs."""

    unit_price: Price
    currency: CurrencyCode


class DeactivateBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    reason: Reason | None = None


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
        summary="Register a product (SKU) with its price and no stock",
        status_code=201,
        **requires(STAFF),
        responses=problem_responses(409, 412),
    )
    async def register(
        self, data: JSONBody[RegisterProductBody], command_request: CommandRequestDep
    ) -> Response[CommandAccepted]:
        command = RegisterProduct(
            sku=data.sku, name=data.name, unit_price=data.unit_price, currency=data.currency
        )
        return await run(command_request, STOCK, stock_stream(data.sku), command, data)

    @post(
        "/{sku:str}/price",
        status_code=200,
        operation_id="changePrice",
        summary="Set a product's price for orders placed from now on",
        **requires(STAFF),
        responses=problem_responses(404),
    )
    async def change_price(
        self, sku: SkuPath, data: JSONBody[PriceBody], command_request: CommandRequestDep
    ) -> Response[CommandAccepted]:
        command = ChangePrice(sku=sku, unit_price=data.unit_price, currency=data.currency)
        return await run(command_request, STOCK, stock_stream(sku), command, data)

    @post(
        "/{sku:str}/deactivate",
        status_code=200,
        operation_id="deactivateProduct",
        operation_class=OptionalBodyOperation,
        summary="Stop selling a product (orders placed before are not affected)",
        **requires(STAFF),
        responses=problem_responses(404),
    )
    async def deactivate(
        self,
        sku: SkuPath,
        command_request: CommandRequestDep,
        # Every field is optional, so is the body: no body (or `null`) is the same as `{}`.
        data: JSONBody[DeactivateBody | None] = None,
    ) -> Response[CommandAccepted]:
        body = data or DeactivateBody()
        command = DeactivateProduct(sku=sku, reason=body.reason)
        return await run(command_request, STOCK, stock_stream(sku), command, body)

    @post(
        "/{sku:str}/activate",
        status_code=200,
        operation_id="activateProduct",
        summary="Sell a deactivated product again",
        **requires(STAFF),
        responses=problem_responses(404),
    )
    async def activate(self, sku: SkuPath, command_request: CommandRequestDep) -> Response[CommandAccepted]:
        return await run(command_request, STOCK, stock_stream(sku), ActivateProduct(sku=sku))

    @post(
        "/{sku:str}/receipts",
        status_code=200,
        operation_id="receiveStock",
        summary="Record units arriving in the warehouse",
        **requires(STAFF),
        responses=problem_responses(404, 412),
    )
    async def receive(
        self,
        sku: SkuPath,
        data: JSONBody[ReceiveStockBody],
        command_request: CommandRequestDep,
    ) -> Response[CommandAccepted]:
        command = ReceiveStock(sku=sku, quantity=data.quantity)
        return await run(command_request, STOCK, stock_stream(sku), command, data)

    @post(
        "/{sku:str}/reservations",
        status_code=200,
        operation_id="reserveStock",
        summary="Reserve the units of an order's line; a shortage is recorded as StockReservationFailed",
        **requires(SERVICE),
        responses=problem_responses(404, 412),
    )
    async def reserve(
        self,
        sku: SkuPath,
        data: JSONBody[ReserveStockBody],
        command_request: CommandRequestDep,
    ) -> Response[CommandAccepted]:
        related = command_request.services.related

        async def fits_the_order() -> None:
            order = await related.order(data.order_id)
            check_reservation(order, data.order_id, normalise_sku(sku), data.quantity)

        command = ReserveStock(sku=sku, order_id=data.order_id, quantity=data.quantity)
        return await run(command_request, STOCK, stock_stream(sku), command, data, check=fits_the_order)

    @post(
        "/{sku:str}/reservations/{order_id:uuid}/release",
        status_code=200,
        operation_id="releaseReservation",
        summary="Give an order's reserved units back",
        **requires(SERVICE),
        responses=problem_responses(404, 409, 412),
    )
    async def release(
        self,
        sku: SkuPath,
        order_id: FromPath[UUID],
        command_request: CommandRequestDep,
    ) -> Response[CommandAccepted]:
        command = ReleaseReservation(sku=sku, order_id=order_id)
        return await run(command_request, STOCK, stock_stream(sku), command)

    @post(
        "/{sku:str}/reservations/{order_id:uuid}/commit",
        status_code=200,
        operation_id="commitReservation",
        summary="Ship an order's reserved units (they leave the stock on hand)",
        **requires(SERVICE),
        responses=problem_responses(404, 409, 412),
    )
    async def commit(
        self,
        sku: SkuPath,
        order_id: FromPath[UUID],
        command_request: CommandRequestDep,
    ) -> Response[CommandAccepted]:
        related = command_request.services.related

        async def paid_and_going_ahead() -> None:
            check_commit(await related.order(order_id), order_id, await related.payment(order_id))

        command = CommitReservation(sku=sku, order_id=order_id)
        return await run(command_request, STOCK, stock_stream(sku), command, check=paid_and_going_ahead)
