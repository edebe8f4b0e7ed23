"""What every command endpoint shares: the headers it reads, the responses it documents, its reply.

- `Idempotency-Key` (required): see `command_service.idempotency`.
- `If-Match` (optional): the stream version the client last saw, as the `ETag`
  of a previous reply (`"3"`); a stream at another version answers 412.
- `X-Correlation-ID` / `X-Causation-ID` (optional): carried into event metadata.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import msgspec
from eventstore import Decider, Metadata
from fulfilment.values import whole
from litestar import Request, Response
from litestar.datastructures import ResponseHeader
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import HeaderParameter, SkipValidation
from servicekit.auth import principal_of
from servicekit.errors import InvalidHeader
from servicekit.logs import correlation_id
from servicekit.openapi import problem_responses as kit_problem_responses
from servicekit.telemetry import current_traceparent

from command_service.handling import CommandAccepted, CommandRequest, Outcome, Services, handle

__all__ = [
    "COMMAND_RESPONSE_HEADERS",
    "CommandRequest",
    "CommandRequestDep",
    "ServicesDep",
    "accepted",
    "problem_responses",
    "provide_command_request",
    "run",
]

IdempotencyKeyHeader = Annotated[
    str,
    HeaderParameter(
        name="Idempotency-Key",
        min_length=1,
        max_length=255,
        pattern=whole(r"[\x21-\x7e]+"),
        description="A unique key per command (a UUID is a good choice). Retrying with the same key and "
        "body returns the first response and appends nothing; reusing it for another request is refused.",
    ),
]
_IF_MATCH = re.compile(r'^"(-?[0-9]{1,18})"$')
# Optional headers are typed `str` with an empty default: `str | None` would document them as nullable,
# and a header cannot be null.
IfMatchHeader = Annotated[
    str,
    HeaderParameter(
        name="If-Match",
        required=False,
        # Documented here, checked by `_parse_if_match`: Litestar would check the empty default too.
        schema_extra={"pattern": _IF_MATCH.pattern},
        description='The stream version the client expects, as returned in `ETag` (e.g. `"3"`). '
        "If the stream moved on, the command is refused with 412.",
    ),
]
CausationHeader = Annotated[
    str,
    HeaderParameter(
        name="X-Causation-ID",
        required=False,
        max_length=128,
        description="What caused this command (e.g. the id of the event a saga reacted to).",
    ),
]

# Injected by name and not validated: they are the service's own objects, not client input.
ServicesDep = NamedDependency[SkipValidation[Services]]

COMMAND_RESPONSE_HEADERS = [
    ResponseHeader(
        name="ETag", documentation_only=True, description='The stream version after the command, e.g. `"4"`.'
    ),
    ResponseHeader(
        name="Idempotent-Replayed",
        documentation_only=True,
        description="`true` when this is the stored response to an earlier request with the same key.",
    ),
]

_DESCRIPTIONS = {
    400: "Invalid headers or parameters",
    401: "Missing or invalid bearer token",
    403: "The token lacks the role the operation requires",
    404: "The aggregate does not exist, or is not the caller's to see",
    409: "The aggregate's state refuses the command (`code` says which rule), or the stream kept "
    "changing (`code: contention`, with Retry-After). A contention answer is safe to retry with the "
    "same Idempotency-Key: the key makes the command take effect at most once",
    410: "The stream was deleted",
    412: "If-Match named a version the stream is not at",
    413: "The request body is too large",
    422: "Invalid body (the errors name each field), a command that breaks a rule, or a reused key",
    429: "Too many requests for this subject; see Retry-After, then it is safe to retry with the "
    "same Idempotency-Key: the key makes the command take effect at most once",
    503: "A dependency is unavailable (PostgreSQL restarting, a connection lost mid-request); see "
    "Retry-After. Safe to retry with the same Idempotency-Key: whether or not the first attempt "
    "was stored, the key makes the command take effect at most once",
}
_ALWAYS = (400, 401, 403, 409, 412, 413, 422, 429, 503)


def problem_responses(*statuses: int) -> dict[int, ResponseSpec]:
    """OpenAPI entries for the problem responses an endpoint can give (the common ones included)."""
    return kit_problem_responses(_DESCRIPTIONS, *_ALWAYS, *statuses)


CommandRequestDep = NamedDependency[SkipValidation[CommandRequest]]


async def provide_command_request(
    request: Request[Any, Any, Any],
    services: ServicesDep,
    idempotency_key: IdempotencyKeyHeader,
    if_match: IfMatchHeader = "",
    causation_id: CausationHeader = "",
) -> CommandRequest:
    """Litestar dependency: reads the command headers of an authenticated request.

    It is the endpoints' only dependency (the services come along in it): Litestar resolves two
    independent dependencies concurrently, in an anyio task group per request, which costs more
    than the two of them.
    """
    subject = principal_of(request).subject
    # Read from the headers, not `if_match`: an empty If-Match is an error, an absent one is not.
    return CommandRequest(
        services=services,
        subject=subject,
        idempotency_key=idempotency_key,
        if_match=_parse_if_match(request.headers.get("if-match")),
        method=request.method,
        path=request.url.path,
        status_code=request.route_handler.status_code,
        metadata=Metadata(
            correlation_id=correlation_id(),
            # A command nothing else caused starts its chain: its causation is its correlation.
            causation_id=causation_id or correlation_id(),
            traceparent=current_traceparent(),
            actor=subject,
        ),
    )


def _parse_if_match(value: str | None) -> int | None:
    if value is None:
        return None
    match = _IF_MATCH.match(value.strip())
    if match is None:
        raise InvalidHeader("If-Match", 'expected a stream version as sent in ETag, e.g. "3"')
    return int(match[1])


def accepted[T: CommandAccepted](outcome: Outcome, body: T) -> Response[T]:
    """The reply to an accepted (or replayed) command: its body, ETag and replay marker."""
    headers = {"ETag": f'"{outcome.accepted.version}"'}
    if outcome.replayed:
        headers["Idempotent-Replayed"] = "true"
    return Response(content=body, status_code=outcome.status_code, headers=headers)


async def run[S, C, E: msgspec.Struct](
    command_request: CommandRequest,
    decider: Decider[S, C, E],
    stream_id: str,
    command: C,
    body: msgspec.Struct | None = None,
    *,
    check: Callable[[], Awaitable[None]] | None = None,
) -> Response[CommandAccepted]:
    """Handle `command` on `stream_id` and answer as every command endpoint does."""
    outcome = await handle(command_request, decider, stream_id, command, body, check=check)
    return accepted(outcome, outcome.accepted)
