"""The saga under failure, as processes: a crash mid-saga, redelivered events, parked sagas, bad webhooks."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import msgspec
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from fulfilment import order_stream, payment_stream, stock_stream
from saga_service.signatures import SIGNATURE_HEADER, sign
from testkit.harness import running_service

from services.saga.tests.conftest import PROVIDER_SECRET

pytestmark = pytest.mark.slow


def steps(view: dict) -> list[str]:
    return [step["step"] for step in view["steps"]]


async def test_a_saga_killed_mid_flow_completes_after_a_restart(start_suite) -> None:
    # The provider answers after 3 s; the saga is SIGKILLed while it waits, so the first webhook
    # deliveries find nobody and the sandbox retries until the saga is back.
    async with start_suite(sandbox={"SANDBOX_LATENCY_MS": "3000", "SANDBOX_JITTER_MS": "0"}) as suite:
        await suite.stock("MUG", 5)
        order_id = await suite.place("frank", ("MUG", 1))
        await suite.wait_for_saga(order_id, lambda view: "ask-provider" in steps(view))
        suite.saga.kill()
        await asyncio.sleep(3.5)
        suite.saga.start()
        await suite.saga.ready()
        view = await suite.finished(order_id)
        assert view["outcome"] == "confirmed"
        assert await suite.types(order_stream(order_id)) == ["OrderPlaced", "OrderConfirmed"]
        assert await suite.types(payment_stream(order_id)) == ["PaymentRequested", "PaymentAuthorized"]


async def test_a_saga_whose_driver_died_is_carried_on_by_its_wake_up(start_suite) -> None:
    # The first process cannot reach the command service (a closed port), records the order and
    # is SIGKILLed. Kafka will not deliver the order again (it was acknowledged once recorded):
    # only the saga's wake-up timer (2 s here) can make the restarted process carry on.
    async with start_suite(saga={"SAGA_COMMAND_URL": "http://127.0.0.1:9"}) as suite:
        await suite.stock("MUG", 5)
        order_id = await suite.place("gina", ("MUG", 1))
        view = await suite.wait_for_saga(order_id, lambda view: True)
        assert view["steps"] == []
        suite.saga.kill()
        suite.saga.env["SAGA_COMMAND_URL"] = suite.command.url
        suite.saga.start()
        await suite.saga.ready()
        view = await suite.finished(order_id)
        assert view["outcome"] == "confirmed"
        assert len([e for e in view["history"] if e["type"] == "SagaStarted"]) == 1
        assert await suite.types(order_stream(order_id)) == ["OrderPlaced", "OrderConfirmed"]


async def test_redelivered_events_never_command_twice(start_suite, kafka_bootstrap_servers: str) -> None:
    async with start_suite() as suite:
        await suite.stock("MUG", 5)
        order_id = await suite.place("hank", ("MUG", 2))
        before = await suite.finished(order_id)
        # Publish the OrderPlaced record again, twice, exactly as the relay sent it.
        consumer = AIOKafkaConsumer(
            f"{suite.prefix}order", bootstrap_servers=kafka_bootstrap_servers, auto_offset_reset="earliest"
        )
        await consumer.start()
        try:
            record = None
            async with asyncio.timeout(30):
                while record is None:
                    for batch in (await consumer.getmany(timeout_ms=500)).values():
                        record = next((r for r in batch if r.key == order_stream(order_id).encode()), record)
        finally:
            await consumer.stop()
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap_servers)
        await producer.start()
        try:
            for _ in range(2):
                await producer.send_and_wait(
                    record.topic, record.value, key=record.key, headers=list(record.headers)
                )
        finally:
            await producer.stop()
        duplicates = 'saga_events_consumed_total{result="duplicate",type="OrderPlaced"} 2.0'
        await suite.saga.wait_for(lambda _status, _body: True, path="/health/live")
        deadline = time.monotonic() + 30
        while duplicates not in (await suite.saga.get("/metrics")).text:
            assert time.monotonic() < deadline, (await suite.saga.get("/metrics")).text
            await asyncio.sleep(0.2)
        after = (await suite.view(order_id)).json()
        assert after["version"] == before["version"]
        assert len(steps(after)) == len(set(steps(after)))
        mug = await suite.events(stock_stream("mug"))
        mine = [event.event_type for event in mug if getattr(event.data, "order_id", None) == order_id]
        assert mine == ["StockReserved", "StockReservationCommitted"]
        assert await suite.types(order_stream(order_id)) == ["OrderPlaced", "OrderConfirmed"]


async def test_a_parked_saga_is_listed_retried_or_aborted(start_suite, tokens) -> None:
    # The saga is given a token without the service role: every command is refused with 403,
    # which no retry fixes until an operator mends the configuration.
    customer_token = tokens("saga", ["customer"])
    async with start_suite(saga={"SAGA_SERVICE_TOKEN": customer_token}) as suite:
        await suite.stock("MUG", 5)
        first = await suite.place("ivy", ("MUG", 1))
        second = await suite.place("ivy", ("MUG", 2))
        for order_id in (first, second):
            view = await suite.wait_for_saga(order_id, lambda view: view["parked"] is not None)
            assert view["parked"]["step"] == "reserve:mug"
            assert (view["parked"]["status"], view["parked"]["code"]) == (403, "forbidden")
        staff = {"Authorization": f"Bearer {suite.staff}"}
        listed = (await suite.saga.get("/sagas", params={"status": "parked"}, headers=staff)).json()
        assert {saga["saga_id"] for saga in listed["sagas"]} == {str(first), str(second)}

        # Restarted with a token of its own (minted with the service role), the saga stays parked
        # until told to carry on.
        suite.saga.kill()
        del suite.saga.env["SAGA_SERVICE_TOKEN"]
        suite.saga.start()
        await suite.saga.ready()
        assert (await suite.view(first)).json()["parked"] is not None
        response = await suite.post(suite.saga.url, f"/sagas/{first}/retry", suite.staff)
        assert response.status_code == 200, response.text
        assert (await suite.finished(first))["outcome"] == "confirmed"

        response = await suite.post(suite.saga.url, f"/sagas/{second}/abort", suite.staff, {"reason": "typo"})
        assert response.status_code == 200, response.text
        view = await suite.finished(second)
        assert view["outcome"] == "rejected"
        assert view["reason"] == "aborted by staff-1: typo"
        assert await suite.types(order_stream(second)) == ["OrderPlaced", "OrderRejected"]

        # What the API refuses, as problem details.
        again = await suite.post(suite.saga.url, f"/sagas/{first}/retry", suite.staff)
        assert (again.status_code, again.json()["code"]) == (409, "saga-refused")
        unknown = await suite.post(suite.saga.url, f"/sagas/{uuid.uuid4()}/retry", suite.staff)
        assert (unknown.status_code, unknown.json()["code"]) == (404, "saga-not-found")
        customer = await suite.saga.get(
            f"/sagas/{first}", headers={"Authorization": f"Bearer {suite.tokens('ivy', ['customer'])}"}
        )
        assert customer.status_code == 403
        anonymous = await suite.saga.get(f"/sagas/{first}")
        assert anonymous.status_code == 401
        bad_body = await suite.post(suite.saga.url, f"/sagas/{second}/abort", suite.staff, {"reason": ""})
        assert bad_body.status_code == 422


async def test_webhooks_with_bad_signatures_are_refused(start_suite) -> None:
    async with start_suite(sandbox={"SANDBOX_SILENCE_RATE": "1"}) as suite:
        await suite.stock("MUG", 5)
        order_id = await suite.place("jack", ("MUG", 1))
        await suite.wait_for_saga(order_id, lambda view: "ask-provider" in steps(view))
        body = msgspec.json.encode(
            {"payment_id": str(order_id), "status": "authorized", "reference": "forged"}
        )

        async def deliver(content: bytes, **headers: str | bytes) -> httpx.Response:
            async with httpx.AsyncClient(base_url=suite.saga.url) as client:
                return await client.post("/webhooks/payments/sandbox", content=content, headers=headers)

        # A header's bytes need not be ASCII: the server reads them as Latin-1 (`é` below).
        not_ascii = f"t={int(time.time())},v1=\u00e9{'0' * 63}".encode("latin-1")
        headers: dict[str, str | bytes]
        for headers in (
            {},
            {SIGNATURE_HEADER: sign("another-secret-entirely", body)},
            {SIGNATURE_HEADER: sign(PROVIDER_SECRET, body, now=time.time() - 3600)},
            {SIGNATURE_HEADER: "t=abc,v1=00"},
            {SIGNATURE_HEADER: not_ascii},
            {SIGNATURE_HEADER: f"t={int(time.time())},v1={'\u00ff' * 64}".encode()},
        ):
            response = await deliver(body, **headers)
            assert response.status_code == 401, response.text
            assert response.headers["content-type"].startswith("application/problem+json")
            assert response.json()["code"] == "invalid-signature"
        garbage = b'{"payment_id": 5}'
        response = await deliver(garbage, **{SIGNATURE_HEADER: sign(PROVIDER_SECRET, garbage)})
        assert (response.status_code, response.json()["code"]) == (422, "malformed-webhook")
        assert "webhook refused" in suite.saga.log_tail(20_000)
        # None of it moved the saga; a correctly signed answer does.
        view = (await suite.view(order_id)).json()
        assert view["phase"] == "paying"
        response = await deliver(body, **{SIGNATURE_HEADER: sign(PROVIDER_SECRET, body)})
        assert response.json() == {"status": "recorded"}
        assert (await suite.finished(order_id))["outcome"] == "confirmed"


async def test_two_instances_one_killed_every_saga_completes_or_compensates_once(
    start_suite, tmp_path
) -> None:
    # Two instances share the consumer group and the timers; one is SIGKILLed while sagas are in
    # flight. The provider's answers for the dead one's sagas have nowhere to go: those sagas are
    # compensated when their deadlines fire on the survivor. Whatever happens, no saga is left
    # unfinished, and none is both confirmed and rejected.
    sandbox = {"SANDBOX_LATENCY_MS": "1500", "SANDBOX_JITTER_MS": "500"}
    async with (
        start_suite(sandbox=sandbox, saga={"SAGA_PAYMENT_TIMEOUT": "5"}) as suite,
        running_service(
            "saga_service", suite.saga_env, log=tmp_path / "saga-2.log", port_variable="SAGA_PORT"
        ) as survivor,
    ):
        await suite.stock("MUG", 100)
        orders = [await suite.place(f"c{n}", ("MUG", 1)) for n in range(8)]
        await asyncio.sleep(0.5)
        suite.saga.kill()
        for order_id in orders:
            view = await suite.finished(order_id, saga=survivor, timeout=90)
            kinds = await suite.types(order_stream(order_id))
            payment = await suite.types(payment_stream(order_id))
            mine = [
                event.event_type
                for event in await suite.events(stock_stream("mug"))
                if getattr(event.data, "order_id", None) == order_id
            ]
            if view["outcome"] == "confirmed":
                assert kinds == ["OrderPlaced", "OrderConfirmed"]
                assert payment == ["PaymentRequested", "PaymentAuthorized"]
                assert mine == ["StockReserved", "StockReservationCommitted"]
            else:
                assert view["outcome"] == "rejected", view
                assert kinds == ["OrderPlaced", "OrderRejected"]
                assert payment in ([], ["PaymentRequested", "PaymentVoided"])
                assert mine in ([], ["StockReserved", "StockReservationReleased"])


async def test_an_unreadable_order_event_goes_to_the_dead_letter_topic(
    start_suite, kafka_bootstrap_servers: str
) -> None:
    async with start_suite() as suite:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap_servers)
        await producer.start()
        try:
            headers = [("ce_type", b"OrderPlaced"), ("ce_subject", b"order-not-a-uuid"), ("ce_id", b"x-1")]
            await producer.send_and_wait(
                f"{suite.prefix}order",
                b'{"type": "OrderPlaced", "lines": 3}',
                key=b"order-x",
                headers=headers,
            )
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(
            f"{suite.prefix}saga.dead-letters",
            bootstrap_servers=kafka_bootstrap_servers,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        try:
            async with asyncio.timeout(30):
                record = await consumer.getone()
        finally:
            await consumer.stop()
        letter = {name: value.decode() for name, value in record.headers}
        assert record.value == b'{"type": "OrderPlaced", "lines": 3}'
        assert letter["ce_id"] == "x-1"
        assert letter["dead_letter_class"] == "bad-headers"  # no ce_specversion, ce_time, ...
        assert letter["dead_letter_source"].startswith(f"{suite.prefix}order/")
        # The saga moved past it.
        await suite.stock("MUG", 5)
        order_id = await suite.place("kate", ("MUG", 1))
        assert (await suite.finished(order_id))["outcome"] == "confirmed"
