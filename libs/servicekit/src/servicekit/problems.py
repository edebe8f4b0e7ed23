"""RFC 9457 problem details: every error answer of every service, from one table per service.

Each error is `application/problem+json` with `type`, `title`, `status`, `detail`,
`instance`, a stable `code`, and `errors` naming each invalid field. Client mistakes
are 4xx; only a service fault is a 500, with a generic detail. A `ProblemTable` maps
exception types to answers (the most specific registered class wins); `unavailable(...)`
registers a dependency's errors as 503 with `Retry-After`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, SerializationException, ValidationException

from servicekit.errors import (
    AuthenticationFailed,
    ClientDisconnected,
    InvalidBodyField,
    InvalidHeader,
    MalformedBody,
    NotAllowed,
    RateLimited,
    ServiceStarting,
    UnsupportedMediaType,
)

__all__ = [
    "PROBLEM_MEDIA_TYPE",
    "Answer",
    "FieldError",
    "Problem",
    "ProblemTable",
    "problem",
]

PROBLEM_MEDIA_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:fulfilment:problem:"

log = logging.getLogger("servicekit.problems")


class FieldError(msgspec.Struct, frozen=True, kw_only=True):
    """One invalid input: where it is (`field` is a path like `lines[0].quantity`) and what is wrong."""

    field: str
    message: str
    source: str = "body"


class Problem(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """An RFC 9457 problem details object. Services subclass it to add extension members."""

    type: str
    title: str
    status: int
    code: str
    detail: str | None = None
    instance: str | None = None
    errors: list[FieldError] | None = None


type Answer = tuple[Problem, Mapping[str, str]]
type Rule = Callable[[Any], Problem | Answer]


def problem(
    status: int, code: str, title: str, detail: str | None = None, *, errors: list[FieldError] | None = None
) -> Problem:
    """A problem whose `type` is derived from its stable `code`."""
    return Problem(
        type=TYPE_PREFIX + code, title=title, status=status, code=code, detail=detail, errors=errors
    )


def _internal_error() -> Problem:
    return problem(500, "internal-error", "Internal error", "the service failed")


class ProblemTable:
    """Maps exceptions to problem answers; `handler` is the Litestar exception handler for all of them."""

    def __init__(
        self,
        rules: Mapping[type[BaseException], Rule] | None = None,
        *,
        unavailable: Iterable[type[BaseException]] = (),
    ) -> None:
        self._rules: dict[type[BaseException], Rule] = {**_KIT_RULES}
        for kind in (*unavailable, ConnectionError, TimeoutError):
            self._rules[kind] = _unavailable
        self._rules.update(rules or {})

    def answer(self, exc: BaseException) -> Answer:
        """The problem details and extra headers that answer `exc`."""
        for kind in type(exc).__mro__:
            rule = self._rules.get(kind)
            if rule is not None:
                answered = rule(exc)
                return answered if isinstance(answered, tuple) else (answered, {})
        log.error("unhandled exception", exc_info=exc)
        return _internal_error(), {}

    def handler(self, request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
        """Litestar's exception handler: the response `answer` describes, with `instance` set."""
        found, headers = self.answer(exc)
        found = msgspec.structs.replace(found, instance=request.url.path)
        return Response(
            content=msgspec.json.encode(found),
            status_code=found.status,
            media_type=PROBLEM_MEDIA_TYPE,
            headers=dict(headers),
        )


def _unavailable(exc: BaseException) -> Answer:
    log.warning("dependency unavailable: %s: %s", type(exc).__name__, exc)
    return problem(503, "unavailable", "Service unavailable", "a dependency is unavailable"), {
        "Retry-After": "1"
    }


def _authentication_failed(exc: AuthenticationFailed) -> Answer:
    challenge = "Bearer" if exc.error is None else f'Bearer error="{exc.error}"'
    return problem(401, "unauthenticated", "Authentication required", exc.detail), {
        "WWW-Authenticate": challenge
    }


def _not_allowed(exc: NotAllowed) -> Answer:
    return problem(403, "forbidden", "Not allowed", exc.detail), {
        "WWW-Authenticate": 'Bearer error="insufficient_scope"'
    }


def _rate_limited(exc: RateLimited) -> Answer:
    return problem(429, "rate-limited", "Too many requests", exc.detail), {
        "Retry-After": str(exc.retry_after)
    }


def _invalid_header(exc: InvalidHeader) -> Problem:
    error = FieldError(field=exc.header, message=exc.message, source="header")
    return problem(400, "invalid-header", "Invalid header", exc.detail, errors=[error])


def _client_disconnected(exc: ClientDisconnected) -> Problem:
    log.info("client disconnected mid-request")
    return problem(400, "client-disconnected", "Client disconnected", exc.detail)


def _invalid_body_field(exc: InvalidBodyField) -> Problem:
    errors = [FieldError(field=exc.field, message=exc.message)]
    return problem(422, "validation-error", "Invalid request body", exc.detail, errors=errors)


_MISSING_HEADER = re.compile(r"Missing required header parameter '([^']+)'")


def _validation_problem(exc: ValidationException) -> Problem:
    errors: list[FieldError] = []
    if isinstance(exc.extra, list):
        for item in exc.extra:
            if isinstance(item, dict):
                key = str(item.get("key", ""))
                raw_source = item.get("source", "body")
                source = str(getattr(raw_source, "value", raw_source))
                field = "" if key == "data" and source == "body" else key
                errors.append(
                    FieldError(field=field, message=str(item.get("message", "invalid")), source=source)
                )
    elif missing := _MISSING_HEADER.search(exc.detail):
        errors.append(FieldError(field=missing.group(1), message="required", source="header"))
    if any(error.source == "body" for error in errors):
        return problem(422, "validation-error", "Invalid request body", _summary(errors), errors=errors)
    return problem(400, "validation-error", "Invalid request", _summary(errors) or exc.detail, errors=errors)


def _summary(errors: list[FieldError]) -> str:
    return "; ".join(f"{error.field or '(body)'}: {error.message}" for error in errors)


_HTTP_CODES = {
    400: ("bad-request", "Bad request"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    413: ("body-too-large", "Request body too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
}


def _http_problem(exc: HTTPException) -> Answer:
    status = exc.status_code
    if status >= 500:
        log.error("server error", exc_info=exc)
        return _internal_error(), {}
    code, title = _HTTP_CODES.get(status, ("http-error", exc.detail))
    detail = exc.detail if exc.detail and exc.detail != title else None
    if status == 400 and _caused_by_undecodable_body(exc):
        code, title = "malformed-body", "Malformed request body"
    return problem(status, code, title, detail), dict(exc.headers or {})


def _caused_by_undecodable_body(exc: BaseException) -> bool:
    cause = exc.__cause__
    while cause is not None:
        if isinstance(cause, SerializationException | msgspec.DecodeError):
            return True
        cause = cause.__cause__
    return False


_KIT_RULES: dict[type[BaseException], Rule] = {
    AuthenticationFailed: _authentication_failed,
    NotAllowed: _not_allowed,
    RateLimited: _rate_limited,
    InvalidHeader: _invalid_header,
    MalformedBody: lambda exc: problem(400, "malformed-body", "Malformed request body", exc.detail),
    ClientDisconnected: _client_disconnected,
    InvalidBodyField: _invalid_body_field,
    UnsupportedMediaType: lambda exc: problem(
        415, "unsupported-media-type", "Unsupported media type", exc.detail
    ),
    ValidationException: _validation_problem,
    HTTPException: _http_problem,
    ServiceStarting: lambda exc: (
        problem(503, "starting", "Service starting", exc.detail),
        {"Retry-After": "1"},
    ),
}
