"""Order commands: place (customers), confirm and reject (the saga), cancel (the order's customer)."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID, uuid4

import msgspec
from fulfilment.deciders import ORDERS
from fulfilment.orders import CancelOrder, ConfirmOrder, OrderLine, PlaceOrder, RejectOrder
from fulfilment.rules import check_confirmation
from fulfilment.values import MAX_LINES, CurrencyCode, Reason, order_id_of, order_stream
from litestar import Controller, Response, post
from litestar.params import FromPath, JSONBody
from servicekit.auth import CUSTOMER, SERVICE, requires
from servicekit.openapi import OptionalBodyOperation

from command_service.handling import CommandAccepted, handle
from command_service.routes.conventions import CommandRequestDep, accepted, problem_responses, run

__all__ = ["OrderController"]


class PlaceOrderBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """An order to place for the calling customer, paid in `currency`.

    There is no price and no total: each line's unit price is the catalogue's at
    placement, and the service computes the totals.
    """

    lines: Annotated[list[OrderLine], msgspec.Meta(min_length=1, max_length=MAX_LINES)]
    currency: CurrencyCode


class RejectOrderBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    reason: Reason


class CancelOrderBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    reason: Reason | None = None


class OrderAccepted(CommandAccepted, frozen=True, kw_only=True):
    """An accepted order: its id, and where its stream now stands."""

    order_id: UUID


class OrderController(Controller):
    path = "/orders"
    tags = ["orders"]

    @post(
        "/",
        operation_id="placeOrder",
        summary="Place an order for the calling customer",
        status_code=201,
        **requires(CUSTOMER),
        responses=problem_responses(),
    )
    async def place(
        self, data: JSONBody[PlaceOrderBody], command_request: CommandRequestDep
    ) -> Response[OrderAccepted]:
        order_id = uuid4()
        catalogue = await command_request.services.related.stock_items(line.sku for line in data.lines)
        command = PlaceOrder(
            order_id=order_id,
            customer_id=command_request.subject,
            lines=tuple(data.lines),
            currency=data.currency,
            catalogue=catalogue,
        )
        outcome = await handle(
            command_request, ORDERS, order_stream(order_id), command, data, new_stream=True
        )
        # A replay answers with the order of the first request, whose id is in its stream id.
        first_order_id = order_id_of(outcome.accepted.stream_id)
        body = OrderAccepted(order_id=first_order_id, **msgspec.structs.asdict(outcome.accepted))
        return accepted(outcome, body)

    @post(
        "/{order_id:uuid}/confirm",
        status_code=200,
        operation_id="confirmOrder",
        summary="Confirm a pending order once its payment is authorised and every line is reserved",
        **requires(SERVICE),
        responses=problem_responses(404, 409, 412),
    )
    async def confirm(
        self, order_id: FromPath[UUID], command_request: CommandRequestDep
    ) -> Response[CommandAccepted]:
        related = command_request.services.related

        async def paid_and_reserved() -> None:
            order = await related.order(order_id)
            if order is not None:  # a missing order is the order's own rule (404)
                payment = await related.payment(order_id)
                check_confirmation(order, payment, await related.stock_items(order.lines))

        command = ConfirmOrder(order_id=order_id)
        return await run(command_request, ORDERS, order_stream(order_id), command, check=paid_and_reserved)

    @post(
        "/{order_id:uuid}/reject",
        status_code=200,
        operation_id="rejectOrder",
        summary="Reject a pending order, saying why (a confirmed one: 409 order-confirmed)",
        **requires(SERVICE),
        responses=problem_responses(404, 409, 412),
    )
    async def reject(
        self,
        order_id: FromPath[UUID],
        data: JSONBody[RejectOrderBody],
        command_request: CommandRequestDep,
    ) -> Response[CommandAccepted]:
        command = RejectOrder(order_id=order_id, reason=data.reason)
        return await run(command_request, ORDERS, order_stream(order_id), command, data)

    @post(
        "/{order_id:uuid}/cancel",
        status_code=200,
        operation_id="cancelOrder",
        operation_class=OptionalBodyOperation,
        summary="Cancel one of the calling customer's orders (pending or confirmed)",
        **requires(CUSTOMER),
        responses=problem_responses(404, 409, 412),
    )
    async def cancel(
        self,
        order_id: FromPath[UUID],
        command_request: CommandRequestDep,
        # Every field is optional, so is the body: no body (or `null`) is the same as `{}`.
        data: JSONBody[CancelOrderBody | None] = None,
    ) -> Response[CommandAccepted]:
        body = data or CancelOrderBody()
        command = CancelOrder(order_id=order_id, customer_id=command_request.subject, reason=body.reason)
        return await run(command_request, ORDERS, order_stream(order_id), command, body)
