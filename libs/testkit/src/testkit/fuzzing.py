"""Schemathesis against a service's own OpenAPI document: one pytest case per operation and mode.

    CASES = fuzz_cases(create_app(settings).openapi_schema.to_schema(), FUZZ_CONFIG)

    @pytest.mark.parametrize(("operation", "mode"), CASES)
    def test_no_operation_answers_5xx(service_url, operation, mode):
        fuzz(operation, mode, base_url=service_url, max_examples=25)

The document is built without starting the app, so pytest can list the cases.
For the tests only: schemathesis is a development dependency.
"""

from __future__ import annotations

from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.config import SchemathesisConfig
from schemathesis.schemas import APIOperation

__all__ = ["fuzz", "fuzz_cases"]


def fuzz_cases(document: dict[str, Any], config: SchemathesisConfig) -> list[Any]:
    """`pytest.param(operation, mode)` for every operation: valid requests, and invalid ones where
    the operation takes any input (an operation without inputs has no invalid request to make)."""
    import pytest

    schema = schemathesis.openapi.from_dict(document, config=config)
    cases: list[Any] = []
    for result in schema.get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]  # an invalid document fails here, loudly
        modes = [GenerationMode.POSITIVE]
        inputs = (
            len(operation.path_parameters)
            + len(operation.headers)
            + len(operation.query)
            + len(operation.body)
        )
        if inputs:
            modes.append(GenerationMode.NEGATIVE)
        cases.extend(pytest.param(operation, mode, id=f"{operation.label}-{mode}") for mode in modes)
    return cases


def fuzz(
    operation: APIOperation[Any, Any, Any, Any], mode: GenerationMode, *, base_url: str, max_examples: int
) -> None:
    """Send `max_examples` generated requests for `operation` and check every answer against the
    document and the configured checks (no 5xx, statuses the document allows)."""

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=max_examples, deadline=None, suppress_health_check=list(HealthCheck), database=None
    )
    def check(case: schemathesis.Case[Any]) -> None:
        case.call_and_validate(base_url=base_url, timeout=10)

    check()
