"""The command service's problem table: how its own refusals and the store's errors answer over HTTP.

The kit (`servicekit.problems`) answers authentication, rate limits, request
validation and HTTP errors; this adds the domain's refusals, the command path's
own (idempotency keys, preconditions, contention) and the event store's errors.
"""

from __future__ import annotations

import logging

import asyncpg
import msgspec
from eventstore.connection import TRANSIENT_ERRORS
from eventstore.errors import EventStoreError, EventTooLarge, StoreUnavailable, StreamDeleted, UnstorableEvent
from fulfilment.errors import Conflict, DomainError, InvalidCommand, NotFound, NotPermitted
from servicekit.problems import Answer, Problem, ProblemTable, problem

from command_service.errors import IdempotencyKeyReused, PreconditionFailed, TooMuchContention

__all__ = ["PROBLEMS", "TRANSIENT", "VersionProblem", "is_transient"]

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


# What a request in flight meets while PostgreSQL restarts or its backend is terminated,
# besides the store's own TRANSIENT_ERRORS: asyncpg reports a connection closed under it
# as a bare InterfaceError ("connection is closed"), and a terminated backend as an
# operator intervention (AdminShutdown is one; 57P01-57P05 are all of that class).
_CLOSED_CONNECTION = ("connection is closed", "connection was closed")
TRANSIENT: tuple[type[BaseException], ...] = (*TRANSIENT_ERRORS, asyncpg.exceptions.OperatorInterventionError)


def is_transient(exc: BaseException) -> bool:
    """A failure of the connection to PostgreSQL, not of the request: retrying it later is safe."""
    if isinstance(exc, TRANSIENT):
        return True
    if isinstance(exc, asyncpg.InterfaceError):
        return any(text in str(exc) for text in _CLOSED_CONNECTION)
    return False


def _unavailable() -> Answer:
    return problem(503, "unavailable", "Service unavailable", "a dependency is unavailable"), {
        "Retry-After": "1"
    }


def _store_fault(exc: EventStoreError) -> Problem | Answer:
    # The store wraps driver errors; one caused by a dropped connection is an outage, not a bug.
    if exc.__cause__ is not None and is_transient(exc.__cause__):
        log.warning("event store unavailable: %s", exc)
        return _unavailable()
    log.error("event store error", exc_info=exc)
    return problem(500, "internal-error", "Internal error", "the service failed")


def _driver_fault(exc: Exception) -> Problem | Answer:
    # Raw driver errors reach the table from the code that uses the pool directly (idempotency keys).
    if is_transient(exc):
        log.warning("database unavailable: %s: %s", type(exc).__name__, exc)
        return _unavailable()
    log.error("database error", exc_info=exc)
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
        asyncpg.InterfaceError: _driver_fault,
    },
    unavailable=(StoreUnavailable, *TRANSIENT),
)
