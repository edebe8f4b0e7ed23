"""The command service's problem table: how its own refusals and the store's errors answer over HTTP.

The kit (`servicekit.problems`) answers authentication, rate limits, request
validation and HTTP errors; this adds the domain's refusals, the command path's
own (idempotency keys, preconditions, contention) and the event store's errors.
"""

from __future__ import annotations

import logging

import msgspec
from eventstore.errors import EventStoreError, EventTooLarge, StoreUnavailable, StreamDeleted, UnstorableEvent
from fulfilment.errors import Conflict, DomainError, InvalidCommand, NotFound, NotPermitted
from servicekit.problems import Answer, Problem, ProblemTable, problem

from command_service.errors import IdempotencyKeyReused, PreconditionFailed, TooMuchContention

__all__ = ["PROBLEMS", "VersionProblem"]

log = logging.getLogger("command_service.problems")


class VersionProblem(Problem, frozen=True, kw_only=True, omit_defaults=True):
    """A 412 answer also says which version the stream is at, so the client can reload and retry."""

    current_version: int


_DOMAIN_STATUS: tuple[tuple[type[DomainError], int, str], ...] = (
    (NotFound, 404, "Not found"),
    (NotPermitted, 403, "Not permitted"),
    (Conflict, 409, "Refused by the current state"),
    (InvalidCommand, 422, "Invalid command"),
)


def _domain(exc: DomainError) -> Problem:
    for kind, status, title in _DOMAIN_STATUS:
        if isinstance(exc, kind):
            return problem(status, exc.code, title, exc.message)
    return problem(422, exc.code, "Refused", exc.message)


def _precondition_failed(exc: PreconditionFailed) -> Answer:
    base = problem(412, "stale-version", "Precondition failed", exc.detail)
    answer = VersionProblem(**msgspec.structs.asdict(base), current_version=exc.actual)
    return answer, {"ETag": f'"{exc.actual}"'}


def _store_fault(exc: EventStoreError) -> Problem:
    # Connection failures arrive as StoreUnavailable (a 503); any other store error is a bug here.
    log.error("event store error", exc_info=exc)
    return problem(500, "internal-error", "Internal error", "the service failed")


PROBLEMS = ProblemTable(
    {
        DomainError: _domain,
        IdempotencyKeyReused: lambda exc: problem(
            422, "idempotency-key-reused", "Idempotency key reused", exc.detail
        ),
        PreconditionFailed: _precondition_failed,
        TooMuchContention: lambda exc: (
            problem(409, "contention", "Too much contention", exc.detail),
            {"Retry-After": "1"},
        ),
        StreamDeleted: lambda exc: problem(410, "stream-deleted", "Gone", str(exc)),
        EventTooLarge: lambda exc: problem(413, "event-too-large", "Too large", str(exc)),
        UnstorableEvent: lambda exc: problem(422, "unstorable-event", "Unprocessable content", str(exc)),
        EventStoreError: _store_fault,
    },
    unavailable=(StoreUnavailable,),
)
