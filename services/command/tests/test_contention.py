"""Many commands on one stream at once: with the state allowing all of them, all of them succeed."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import pytest
from command_service.queues import StreamQueues
from command_service.settings import CommandSettings
from testkit.harness import TokenFactory

from services.command.tests.conftest import place_order
from services.command.tests.support import StoreReader, command_headers


@pytest.fixture
def settings(fresh_database_url: str, settings_for: Callable[..., CommandSettings]) -> CommandSettings:
    # The service's own default number of attempts, not the generous one the other tests use.
    return settings_for(fresh_database_url, max_attempts=5)


async def test_racing_reservations_with_enough_stock_all_succeed_and_the_stock_is_exact(
    client: httpx.AsyncClient, tokens: TokenFactory, reader: StoreReader
) -> None:
    staff, saga = tokens("clerk", roles=["staff"]), tokens("saga", roles=["service"])
    busy = {"sku": "busy-1", "name": "Busy", "unit_price": 10, "currency": "EUR"}
    await client.post("/products", json=busy, headers=command_headers(staff))
    await client.post("/products/busy-1/receipts", json={"quantity": 1000}, headers=command_headers(staff))
    one = {"lines": [{"sku": "busy-1", "quantity": 1}], "currency": "EUR"}
    orders = [await place_order(client, tokens, f"c{n}", one) for n in range(20)]

    responses = await asyncio.gather(
        *(
            client.post(
                "/products/busy-1/reservations",
                json={"order_id": order_id, "quantity": 1},
                headers=command_headers(saga),
            )
            for order_id in orders
        )
    )

    assert [r.status_code for r in responses] == [200] * 20, [
        r.text for r in responses if r.status_code != 200
    ]
    types = await reader.event_types("stock-busy-1")
    assert types.count("StockReserved") == 20
    versions = sorted(r.json()["version"] for r in responses)
    assert versions == list(range(2, 22))


async def test_commands_on_one_stream_take_turns_and_other_streams_do_not_wait() -> None:
    queues = StreamQueues()
    running: dict[str, int] = {"a": 0, "b": 0}
    most: dict[str, int] = {"a": 0, "b": 0}

    async def command(stream_id: str) -> None:
        async with queues.turn(stream_id):
            running[stream_id] += 1
            most[stream_id] = max(most[stream_id], running[stream_id])
            await asyncio.sleep(0)
            running[stream_id] -= 1

    async def both_at_once() -> None:
        async with queues.turn("a"):
            # A command on another stream gets its turn while "a" is held.
            await asyncio.wait_for(command("b"), timeout=5)

    await asyncio.gather(*(command("a") for _ in range(10)), both_at_once())

    assert most == {"a": 1, "b": 1}
    assert len(queues) == 0


async def test_a_failing_command_gives_the_stream_to_the_next_one() -> None:
    queues = StreamQueues()

    with pytest.raises(RuntimeError):
        async with queues.turn("a"):
            raise RuntimeError("refused")
    async with queues.turn("a"):
        assert len(queues) == 1

    assert len(queues) == 0
