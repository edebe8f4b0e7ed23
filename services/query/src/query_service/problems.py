"""The query service's problem table: its own refusals, a bad cursor, and unavailable stores.

The kit (`servicekit.problems`) answers authentication, rate limits, request
validation and HTTP errors. A store that cannot be reached answers 503 with
`Retry-After` for the reads that need it; the other store's reads go on. A read
model that lost its data (Redis restarted empty, the index deleted) answers 503
`read-model-rebuilding` with `Retry-After` while the projector rebuilds it,
never a 404 or a count it cannot vouch for.
"""

from __future__ import annotations

import msgspec
from readmodels.order_queries import InvalidCursor
from readmodels.rebuilding import ReadModelRebuilding
from readmodels.redis_reads import REDIS_TRANSIENT
from readmodels.search import SEARCH_TRANSIENT
from servicekit.problems import Answer, FieldError, Problem, ProblemTable, problem

from query_service.errors import InvalidQuery, NotYetConsistent, OrderNotFound, ProductNotFound

__all__ = ["PROBLEMS", "REBUILDING_RETRY_AFTER_SECONDS", "ConsistencyProblem", "RebuildingProblem"]

# A rebuild takes seconds to minutes; polling faster than this only adds load.
REBUILDING_RETRY_AFTER_SECONDS = 5


class ConsistencyProblem(Problem, frozen=True, kw_only=True, omit_defaults=True):
    """A `not-yet-consistent` answer also says which position was awaited and which was reached."""

    awaited_position: int
    reached_position: int


def _not_yet_consistent(exc: NotYetConsistent) -> Answer:
    base = problem(409, "not-yet-consistent", "Not yet consistent", exc.detail)
    answer = ConsistencyProblem(
        **msgspec.structs.asdict(base), awaited_position=exc.awaited, reached_position=exc.reached
    )
    return answer, {"Retry-After": "1"}


class RebuildingProblem(Problem, frozen=True, kw_only=True, omit_defaults=True):
    """A `read-model-rebuilding` answer also names the read model (`redis` or `search`)."""

    read_model: str


def _rebuilding(exc: ReadModelRebuilding) -> Answer:
    base = problem(503, "read-model-rebuilding", "Read model being rebuilt", str(exc))
    answer = RebuildingProblem(**msgspec.structs.asdict(base), read_model=exc.projection)
    return answer, {"Retry-After": str(REBUILDING_RETRY_AFTER_SECONDS)}


def _invalid_cursor(exc: InvalidCursor) -> Problem:
    error = FieldError(field="cursor", message=str(exc), source="query")
    return problem(400, "invalid-cursor", "Invalid cursor", str(exc), errors=[error])


def _invalid_query(exc: InvalidQuery) -> Problem:
    errors = [FieldError(field=name, message=message, source="query") for name, message in exc.problems]
    return problem(400, "validation-error", "Invalid request", exc.detail, errors=errors)


PROBLEMS = ProblemTable(
    {
        OrderNotFound: lambda exc: problem(404, "order-not-found", "Not found", exc.detail),
        ProductNotFound: lambda exc: problem(404, "product-not-found", "Not found", exc.detail),
        NotYetConsistent: _not_yet_consistent,
        ReadModelRebuilding: _rebuilding,
        InvalidCursor: _invalid_cursor,
        InvalidQuery: _invalid_query,
    },
    unavailable=(*SEARCH_TRANSIENT, *REDIS_TRANSIENT),
)
