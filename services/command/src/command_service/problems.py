"""RFC 9457 problem details: the one function that maps every exception to an HTTP response.

Every error response of the service is `application/problem+json` with `type`,
`title`, `status`, `detail`, `instance`, a stable `code` clients switch on, and,
for invalid input, `errors` naming each field. A client's mistake maps to a
4xx; only a fault of the service itself becomes a 500, and its detail stays
generic (the log has the traceback, under the same trace id).
"""

from __future__ import annotations

import logging
import re
from typing import Any

import asyncpg
import msgspec
from eventstore.errors import EventStoreError, EventTooLarge, StoreUnavailable, StreamDeleted, UnstorableEvent
from fulfilment.errors import Conflict, DomainError, InvalidCommand, NotFound, NotPermitted
from litestar import Request, Response
from litestar.exceptions import HTTPException, SerializationException, ValidationException

from command_service.errors import (
    AuthenticationFailed,
    IdempotencyKeyReused,
    InvalidHeader,
    NotAllowed,
    PreconditionFailed,
    RateLimited,
    TooMuchContention,
)

__all__ = ["PROBLEM_MEDIA_TYPE", "FieldError", "Problem", "problem_for", "problem_response"]

PROBLEM_MEDIA_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:fulfilment:problem:"

log = logging.getLogger("command_service.problems")


class FieldError(msgspec.Struct, frozen=True, kw_only=True):
    """One invalid input: where it is (`field` is a path like `lines[0].quantity`) and what is wrong."""

    field: str
    message: str
    source: str = "body"


class Problem(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """An RFC 9457 problem details object."""

    type: str
    title: str
    status: int
    code: str
    detail: str | None = None
    instance: str | None = None
    errors: list[FieldError] | None = None
    current_version: int | None = None


def _problem(
    status: int, code: str, title: str, detail: str | None, *, errors: list[FieldError] | None = None
) -> Problem:
    return Problem(
        type=TYPE_PREFIX + code, title=title, status=status, code=code, detail=detail, errors=errors
    )


_DOMAIN_STATUS: tuple[tuple[type[DomainError], int, str], ...] = (
    (NotFound, 404, "Not found"),
    (NotPermitted, 403, "Not permitted"),
    (Conflict, 409, "Refused by the current state"),
    (InvalidCommand, 422, "Invalid command"),
)
_MISSING_HEADER = re.compile(r"Missing required header parameter '([^']+)'")


def problem_for(exc: Exception) -> tuple[Problem, dict[str, str]]:
    """The problem details and extra headers that answer `exc`."""
    match exc:
        case DomainError():
            for kind, status, title in _DOMAIN_STATUS:
                if isinstance(exc, kind):
                    return _problem(status, exc.code, title, exc.message), {}
            return _problem(422, exc.code, "Refused", exc.message), {}
        case AuthenticationFailed():
            challenge = "Bearer" if exc.error is None else f'Bearer error="{exc.error}"'
            return _problem(401, "unauthenticated", "Authentication required", exc.detail), {
                "WWW-Authenticate": challenge
            }
        case NotAllowed():
            headers = {"WWW-Authenticate": 'Bearer error="insufficient_scope"'}
            return _problem(403, "forbidden", "Not allowed", exc.detail), headers
        case RateLimited():
            retry_after = str(max(1, round(exc.retry_after_seconds + 0.5)))
            return _problem(429, "rate-limited", "Too many requests", exc.detail), {
                "Retry-After": retry_after
            }
        case InvalidHeader():
            error = FieldError(field=exc.header, message=exc.message, source="header")
            return _problem(400, "invalid-header", "Invalid header", exc.detail, errors=[error]), {}
        case IdempotencyKeyReused():
            return _problem(422, "idempotency-key-reused", "Idempotency key reused", exc.detail), {}
        case PreconditionFailed():
            problem = _problem(412, "stale-version", "Precondition failed", exc.detail)
            return msgspec.structs.replace(problem, current_version=exc.actual), {"ETag": f'"{exc.actual}"'}
        case TooMuchContention():
            return _problem(409, "contention", "Too much contention", exc.detail), {"Retry-After": "1"}
        case ValidationException():
            return _validation_problem(exc), {}
        case HTTPException():
            return _http_problem(exc), dict(exc.headers or {})
        case StreamDeleted():
            return _problem(410, "stream-deleted", "Gone", str(exc)), {}
        case EventTooLarge():
            return _problem(413, "event-too-large", "Too large", str(exc)), {}
        case UnstorableEvent():
            return _problem(422, "unstorable-event", "Unprocessable content", str(exc)), {}
        case StoreUnavailable() | asyncpg.PostgresConnectionError() | ConnectionError() | TimeoutError():
            log.warning("dependency unavailable: %s", exc)
            return _problem(503, "unavailable", "Service unavailable", "a dependency is unavailable"), {
                "Retry-After": "1"
            }
        case EventStoreError():
            log.error("event store error", exc_info=exc)
            return _problem(500, "internal-error", "Internal error", "the service failed"), {}
    log.error("unhandled exception", exc_info=exc)
    return _problem(500, "internal-error", "Internal error", "the service failed"), {}


def problem_response(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    """Litestar's exception handler for every exception: the response `problem_for` describes."""
    problem, headers = problem_for(exc)
    problem = msgspec.structs.replace(problem, instance=request.url.path)
    return Response(
        content=msgspec.json.encode(problem),
        status_code=problem.status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers=headers,
    )


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
        return _problem(422, "validation-error", "Invalid request body", _summary(errors), errors=errors)
    return _problem(400, "validation-error", "Invalid request", _summary(errors) or exc.detail, errors=errors)


def _summary(errors: list[FieldError]) -> str:
    return "; ".join(f"{error.field or '(body)'}: {error.message}" for error in errors)


_HTTP_CODES = {
    400: ("bad-request", "Bad request"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    413: ("body-too-large", "Request body too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
}


def _http_problem(exc: HTTPException) -> Problem:
    status = exc.status_code
    code, title = _HTTP_CODES.get(status, ("http-error", exc.detail))
    if status >= 500:
        log.error("server error", exc_info=exc)
        return _problem(status, "internal-error", "Internal error", "the service failed")
    detail = exc.detail if exc.detail and exc.detail != title else None
    if status == 400 and _caused_by_undecodable_body(exc):
        code, title = "malformed-body", "Malformed request body"
    return _problem(status, code, title, detail)


def _caused_by_undecodable_body(exc: BaseException) -> bool:
    cause = exc.__cause__
    while cause is not None:
        if isinstance(cause, SerializationException | msgspec.DecodeError):
            return True
        cause = cause.__cause__
    return False
