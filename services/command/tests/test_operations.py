"""Rate limiting, health, logs: the parts that keep the service operable."""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from command_service.app import create_app
from command_service.settings import CommandSettings
from command_service.testing import ORDER_BODY, command_headers
from litestar import Litestar
from opentelemetry.sdk.trace import TracerProvider
from servicekit.logs import JsonFormatter
from servicekit.testing import TokenFactory, lifespan_of


@pytest.fixture
async def limited_client(
    fresh_database_url: str, settings_for: Callable[..., CommandSettings]
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings_for(fresh_database_url, rate_limit_per_second=0.5, rate_limit_burst=3))
    async with (
        lifespan_of(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://command.test") as http,
    ):
        yield http


async def test_a_subject_over_its_rate_gets_429_with_retry_after_while_others_go_on(
    limited_client: httpx.AsyncClient, tokens: TokenFactory
) -> None:
    greedy, patient = tokens(f"greedy-{uuid.uuid4()}"), tokens(f"patient-{uuid.uuid4()}")

    statuses = [
        (await limited_client.post("/orders", json=ORDER_BODY, headers=command_headers(greedy))).status_code
        for _ in range(4)
    ]
    limited = await limited_client.post("/orders", json=ORDER_BODY, headers=command_headers(greedy))
    other = await limited_client.post("/orders", json=ORDER_BODY, headers=command_headers(patient))

    assert statuses == [201, 201, 201, 429]
    assert limited.status_code == 429
    assert limited.json()["code"] == "rate-limited"
    assert 1 <= int(limited.headers["retry-after"]) <= 3
    assert limited.json()["detail"] == f"too many requests: retry in {limited.headers['retry-after']} s"
    assert other.status_code == 201


async def test_requests_without_a_valid_token_are_limited_per_client_address(
    fresh_database_url: str, settings_for: Callable[..., CommandSettings], tokens: TokenFactory
) -> None:
    app = create_app(settings_for(fresh_database_url, rate_limit_per_second=0.5, rate_limit_burst=3))
    address = f"192.0.2.{uuid.uuid4().int % 250 + 1}-{uuid.uuid4().hex[:6]}"
    async with (
        lifespan_of(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, client=(address, 4000)), base_url="http://command.test"
        ) as anonymous,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, client=(f"{address}-other", 4000)),
            base_url="http://command.test",
        ) as neighbour,
    ):
        statuses = [(await anonymous.post("/orders", json=ORDER_BODY)).status_code for _ in range(4)]
        forged = await anonymous.post("/orders", json=ORDER_BODY, headers={"Authorization": "Bearer x.y.z"})
        other = await neighbour.post("/orders", json=ORDER_BODY)

    assert statuses == [401, 401, 401, 429]
    assert forged.status_code == 429
    assert other.status_code == 401


async def test_live_and_ready_answer_without_a_token(client: httpx.AsyncClient) -> None:
    live = await client.get("/health/live")
    ready = await client.get("/health/ready")

    assert (live.status_code, ready.status_code) == (200, 200)
    assert ready.json() == {"status": "ok", "checks": {"postgres": "ok"}}


async def test_ready_is_503_when_postgres_does_not_answer(app: Litestar, client: httpx.AsyncClient) -> None:
    app.state.services.pool.terminate()

    response = await client.get("/health/ready")

    assert response.status_code == 503
    assert response.json()["status"] == "unavailable"


async def test_the_openapi_document_names_every_operation_and_documents_its_problems(
    client: httpx.AsyncClient,
) -> None:
    document = (await client.get("/schema/openapi.json")).json()

    operations = [op for path in document["paths"].values() for op in path.values()]
    ids = {op["operationId"] for op in operations}
    assert {"placeOrder", "cancelOrder", "reserveStock", "refundPayment", "live", "ready"} <= ids
    place = document["paths"]["/orders"]["post"]
    assert place["responses"]["422"]["content"]["application/problem+json"]["schema"]["$ref"].endswith(
        "/Problem"
    )
    assert {p["name"] for p in place["parameters"]} >= {"Idempotency-Key", "If-Match"}
    assert place["security"] == [{"bearer": []}]


def test_a_log_line_is_json_with_the_trace_id_and_extras() -> None:
    provider = TracerProvider()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("test.json")
    logger.addHandler(handler)
    logger.propagate = False

    with provider.get_tracer("test").start_as_current_span("request") as span:
        logger.warning("order %s placed", "o-1", extra={"order_id": "o-1"})
    line = json.loads(stream.getvalue())

    assert line["message"] == "order o-1 placed"
    assert line["level"] == "WARNING"
    assert line["order_id"] == "o-1"
    assert line["trace_id"] == format(span.get_span_context().trace_id, "032x")


async def test_an_access_log_line_carries_the_trace_and_correlation_ids(
    client: httpx.AsyncClient, tokens: TokenFactory
) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    access = logging.getLogger("command.access")
    access.addHandler(handler)
    access.setLevel(logging.INFO)
    try:
        extra = {"X-Correlation-ID": "c-9", "traceparent": f"00-{'ab' * 16}-{'1' * 16}-01"}
        await client.post("/orders", json=ORDER_BODY, headers=command_headers(tokens("alice"), **extra))
    finally:
        access.removeHandler(handler)
        access.setLevel(logging.NOTSET)

    line = json.loads(stream.getvalue().splitlines()[-1])
    assert (line["status"], line["path"], line["subject"]) == (201, "/orders", "alice")
    assert (line["correlation_id"], line["trace_id"]) == ("c-9", "ab" * 16)


def test_settings_come_from_the_environment() -> None:
    from servicekit.settings import SettingsError, from_env

    environ = {
        "DATABASE_URL": "postgresql://u:p@h:5432/d",
        "REDIS_URL": "redis://h:6379/0",
        "JWT_ISSUER": "i",
        "JWT_AUDIENCE": "a",
        "PORT": "9000",
        "JWT_ALGORITHMS": "HS256, RS256",
    }
    settings = from_env(CommandSettings, environ)

    assert (settings.port, settings.algorithms) == (9000, ("HS256", "RS256"))
    with pytest.raises(SettingsError, match="PORT"):
        from_env(CommandSettings, {**environ, "PORT": "http"})


async def test_leased_allowance_never_lets_a_subject_past_its_burst_across_instances(redis_url: str) -> None:
    import redis.asyncio as redis
    from servicekit.errors import RateLimited
    from servicekit.ratelimit import RateLimiter

    client = redis.Redis.from_url(redis_url)
    subject = f"spread-{uuid.uuid4()}"
    instances = [RateLimiter(client, per_second=0.01, burst=25, lease=10) for _ in range(3)]
    allowed = 0
    try:
        for _ in range(20):
            for limiter in instances:
                try:
                    await limiter.check(subject)
                    allowed += 1
                except RateLimited:
                    pass
    finally:
        await client.aclose()

    # Every request was paid for in Redis: the three instances together let through at most the burst.
    assert 20 <= allowed <= 25


async def test_concurrent_first_requests_of_a_subject_share_one_lease(redis_url: str) -> None:
    import asyncio

    import redis.asyncio as redis
    from servicekit.ratelimit import RateLimiter

    client = redis.Redis.from_url(redis_url)
    limiter = RateLimiter(client, per_second=50, burst=100, lease=10)
    try:
        # 60 requests at once fit in a burst of 100; separate leases for each would have spent 600.
        subject = f"eager-{uuid.uuid4()}"
        await asyncio.gather(*(limiter.check(subject) for _ in range(60)))
    finally:
        await client.aclose()


async def test_a_command_is_traced_as_a_server_span_continuing_the_callers_trace(
    settings: CommandSettings, tokens: TokenFactory
) -> None:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import SpanKind

    exporter = InMemorySpanExporter()
    app = create_app(settings, span_exporter=exporter)
    caller_trace, caller_span = "cd" * 16, "2" * 16
    extra = {"traceparent": f"00-{caller_trace}-{caller_span}-01"}
    async with (
        lifespan_of(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://command.test") as http,
    ):
        response = await http.post(
            "/orders", json=ORDER_BODY, headers=command_headers(tokens("alice"), **extra)
        )
        await http.get("/health/live")

    [span] = [s for s in exporter.get_finished_spans() if s.kind is SpanKind.SERVER]
    assert response.status_code == 201
    assert span.name == "POST /orders"
    assert span.attributes is not None
    assert (span.attributes["http.route"], span.attributes["http.response.status_code"]) == ("/orders", 201)
    assert span.parent is not None
    assert (format(span.context.trace_id, "032x"), format(span.parent.span_id, "016x")) == (
        caller_trace,
        caller_span,
    )
