"""The kit's parts on their own: health checks, problem tables, metrics, trace propagation, the runner."""

from __future__ import annotations

import asyncio
import gc
import subprocess
import sys
from typing import Any

import httpx
import msgspec
import pytest
from litestar import Litestar, Request, Router, get
from litestar.exceptions import NotFoundException
from litestar.params import FromPath
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from redis.asyncio import Redis
from servicekit.access import access_check, require_access_check
from servicekit.auth import STAFF, TokenVerifier, allow
from servicekit.errors import AuthenticationFailed, RateLimited
from servicekit.health import CHECK_TIMEOUT_SECONDS, evaluate
from servicekit.observability import Observability
from servicekit.problems import Problem, ProblemTable, problem
from servicekit.ratelimit import RateLimiter
from servicekit.runner import freeze_startup
from servicekit.settings import ServiceSettings, SettingsError
from servicekit.telemetry import add_response_headers, context_of, header_value, link_to, traceparent_of

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


async def _ok() -> str | None:
    return None


async def _down() -> str | None:
    return "no broker answers"


async def _raises() -> str | None:
    raise ConnectionRefusedError("connection refused")


async def _hangs() -> str | None:
    await asyncio.sleep(60)
    return None


async def test_health_is_ok_only_when_every_check_is() -> None:
    assert (await evaluate({"a": _ok, "b": _ok})).status == "ok"
    health = await evaluate({"a": _ok, "b": _down})
    assert health.status == "unavailable"
    assert health.checks == {"a": "ok", "b": "no broker answers"}


async def test_a_check_that_raises_or_hangs_fails_with_its_reason() -> None:
    health = await evaluate({"raises": _raises, "hangs": _hangs})
    assert health.checks["raises"] == "ConnectionRefusedError: connection refused"
    assert health.checks["hangs"] == f"no answer within {CHECK_TIMEOUT_SECONDS:g} s"


class Shortage(Exception):
    pass


class SevereShortage(Shortage):
    pass


def test_the_most_specific_registered_exception_class_answers() -> None:
    table = ProblemTable(
        {
            Shortage: lambda exc: problem(409, "shortage", "Shortage"),
            SevereShortage: lambda exc: problem(422, "severe", "Severe"),
        }
    )
    assert table.answer(Shortage())[0].status == 409
    assert table.answer(SevereShortage())[0].status == 422


def test_dependencies_registered_as_unavailable_answer_503_with_retry_after() -> None:
    class BrokerDown(Exception):
        pass

    found, headers = ProblemTable(unavailable=[BrokerDown]).answer(BrokerDown("down"))
    assert (found.status, found.code, headers["Retry-After"]) == (503, "unavailable", "1")
    assert ProblemTable().answer(TimeoutError())[0].status == 503


def test_the_kit_answers_authentication_rate_limits_and_http_errors() -> None:
    table = ProblemTable()
    found, headers = table.answer(AuthenticationFailed("expired"))
    assert (found.status, headers["WWW-Authenticate"]) == (401, 'Bearer error="invalid_token"')
    found, headers = table.answer(RateLimited(0.2))
    assert (found.status, headers["Retry-After"]) == (429, "1")
    assert table.answer(NotFoundException())[0].code == "not-found"


def test_an_unknown_exception_is_a_generic_500() -> None:
    found, _ = ProblemTable().answer(ZeroDivisionError("secret detail"))
    assert (found.status, found.code) == (500, "internal-error")
    assert "secret" not in msgspec.json.encode(found).decode()


async def test_an_app_answers_problems_metrics_and_health_in_the_kit_shape() -> None:
    settings = ServiceSettings(access_log=False)
    observability = Observability(settings, "demo")

    @get("/boom/{item:int}")
    async def boom(item: FromPath[int]) -> None:
        raise Shortage(item)

    table = ProblemTable({Shortage: lambda exc: problem(409, "shortage", "Shortage", str(exc))})
    app = observability.instrument(
        Litestar(
            route_handlers=[boom, *observability.routes(ready={"dependency": _down})],
            exception_handlers={Exception: table.handler},
        )
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://demo") as client:
        refused = await client.get("/boom/7")
        nowhere = await client.get("/nowhere", headers={"x-correlation-id": "c-404"})
        ready = await client.get("/health/ready")
        metrics = (await client.get("/metrics")).text
    assert refused.status_code == 409
    assert refused.headers["content-type"] == "application/problem+json"
    assert msgspec.json.decode(refused.content, type=Problem).instance == "/boom/7"
    # The router's own answers pass through the telemetry too: echoed id, nosniff, counted.
    assert (nowhere.status_code, nowhere.headers["x-correlation-id"]) == (404, "c-404")
    assert nowhere.headers["x-content-type-options"] == "nosniff"
    assert 'http_requests_total{method="GET",route="unmatched",status="404"} 1.0' in metrics, metrics
    assert ready.status_code == 503
    assert ready.json() == {"status": "unavailable", "checks": {"dependency": "no broker answers"}}
    assert 'http_requests_total{method="GET",route="/boom/{item}",status="409"} 1.0' in metrics, metrics
    assert 'http_request_duration_seconds_bucket{le="+Inf",method="GET",route="/boom/{item}"} 1.0' in metrics
    assert 'http_request_duration_seconds_count{method="GET",route="/boom/{item}"} 1.0' in metrics
    observability.shutdown()


async def test_unsampled_requests_record_no_span_yet_a_callers_sampled_trace_is_recorded() -> None:
    exporter = InMemorySpanExporter()
    settings = ServiceSettings(access_log=False, otel_traces_sampler="parentbased_always_off")
    observability = Observability(settings, "demo", span_exporter=exporter)

    @get("/items/{item:int}")
    async def item(item: FromPath[int]) -> dict[str, int]:
        return {"item": item}

    app = observability.instrument(Litestar(route_handlers=[item]))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://demo") as client:
        unsampled = await client.get("/items/1")
        sampled = await client.get("/items/2", headers={"traceparent": TRACEPARENT})

    [span] = exporter.get_finished_spans()
    assert span.name == "GET /items/{item}"
    assert span.attributes is not None
    route, status = span.attributes["http.route"], span.attributes["http.response.status_code"]
    assert (route, status) == ("/items/{item}", 200)
    assert sampled.headers["x-correlation-id"] == format(span.context.trace_id, "032x") == TRACEPARENT[3:35]
    # Not recorded, yet it has a trace id of its own: without a caller's id, that is the correlation id.
    assert len(unsampled.headers["x-correlation-id"]) == 32
    assert unsampled.headers["x-correlation-id"] != sampled.headers["x-correlation-id"]
    observability.shutdown()


async def test_headers_a_handler_queues_go_out_with_its_answer_and_no_other() -> None:
    observability = Observability(ServiceSettings(access_log=False), "demo")

    @get("/items/{item:int}")
    async def item(item: FromPath[int], request: Request[Any, Any, Any]) -> dict[str, int]:
        if item == 0:
            raise NotFoundException("no item 0")
        add_response_headers(request, (b"etag", f'"{item}"'.encode()))
        add_response_headers(request, (b"cache-control", b"private, no-cache"))
        return {"item": item}

    app = observability.instrument(Litestar(route_handlers=[item]))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://demo") as client:
        found, second, missing = [await client.get(f"/items/{n}") for n in (7, 8, 0)]
    assert (found.status_code, found.json()) == (200, {"item": 7})
    assert (found.headers["etag"], found.headers["cache-control"]) == ('"7"', "private, no-cache")
    assert found.headers["content-type"] == "application/json"
    assert found.headers["x-content-type-options"] == "nosniff"
    # Each request has its own: nothing of the first answer's leaks into the next one.
    assert second.headers.get_list("etag") == ['"8"']
    assert missing.status_code == 404
    assert "etag" not in missing.headers
    assert "cache-control" not in missing.headers
    observability.shutdown()


async def _own_hook(request: Request[Any, Any, Any]) -> None:
    return None


def test_a_route_naming_roles_that_the_access_check_does_not_run_on_stops_start_up() -> None:
    verifier = TokenVerifier(issuer="demo", audience="demo", algorithms=["HS256"], secret=b"s" * 32)
    access = access_check(verifier, RateLimiter(Redis(), per_second=1, burst=1))

    @get("/checked", opt=allow(STAFF))
    async def checked() -> None:
        return None

    @get("/own-hook", opt=allow(STAFF), before_request=_own_hook)
    async def own_hook() -> None:
        return None

    @get("/open")
    async def open_route() -> None:
        return None

    def app(*handlers: Any) -> Litestar:
        return Litestar([Router("/", route_handlers=list(handlers), before_request=access), open_route])

    with pytest.raises(SettingsError, match=r"not access-checked: GET /own-hook$"):
        require_access_check(app(checked, own_hook), access)
    require_access_check(app(checked), access)


def test_a_consumer_span_continues_the_trace_of_an_event_from_its_kafka_headers() -> None:
    headers = [("ce_id", b"1"), ("ce_traceparent", TRACEPARENT.encode())]
    assert traceparent_of(headers) == TRACEPARENT
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("consume", context=context_of(traceparent_of(headers))) as span:
        assert format(span.get_span_context().trace_id, "032x") == "4bf92f3577b34da6a3ce929d0e0e4736"
    link = link_to(TRACEPARENT)
    assert link is not None
    assert link.context.span_id == 0x00F067AA0BA902B7


def test_malformed_trace_headers_start_a_new_trace_instead_of_failing() -> None:
    assert header_value([("ce_traceparent", b"\xff\xfe")], "ce_traceparent") is None
    assert link_to("00-not-a-trace") is None
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("consume", context=context_of("garbage")) as span:
        assert span.get_span_context().is_valid


def test_a_service_with_a_bad_variable_exits_2_naming_it() -> None:
    program = (
        "from servicekit.runner import serve\n"
        "from servicekit.settings import ServiceSettings\n"
        "raise SystemExit(serve('demo', ServiceSettings, None, prefix='DEMO_'))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", program],
        env={"DEMO_PORT": "eighty", "PATH": ""},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("demo: DEMO_PORT: ")


def test_freezing_start_up_puts_what_exists_out_of_the_collectors_reach() -> None:
    before = gc.get_freeze_count()
    try:
        freeze_startup()
        # Everything alive now, this module among it, is frozen: far more than was before.
        assert gc.get_freeze_count() > before + 1000
    finally:
        gc.unfreeze()


def test_a_rate_window_tells_the_growth_per_second_of_its_recent_samples() -> None:
    from servicekit.metrics import RateWindow

    window = RateWindow()
    assert window.rate() == 0.0
    window.add(5)
    window.add(7)
    assert window.total == 12
    # Both samples are within the last second: the growth since the first is 7, over at least 1 s.
    assert window.rate() == 7.0
