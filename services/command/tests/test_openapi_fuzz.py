"""Property-based fuzzing of the HTTP API from its own OpenAPI document (schemathesis).

The service runs as a real process on a fresh database; schemathesis generates
valid and invalid requests for every operation and checks that none is a 5xx and
that every response (status, content type, headers, body) matches the document.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import threading
import uuid
from collections.abc import Callable, Coroutine, Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from command_service.app import create_app
from command_service.settings import CommandSettings
from schemathesis import GenerationMode
from schemathesis.config import SchemathesisConfig
from schemathesis.schemas import APIOperation
from servicekit.tokens import mint
from testkit.fuzzing import fuzz, fuzz_cases
from testkit.harness import ServiceProcess, free_port

pytestmark = pytest.mark.slow

SECRET = "fuzzing-secret-that-is-long-enough-for-hs256"
ISSUER, AUDIENCE = "https://issuer.test", "command-api"


def _in_thread(coroutine_function: Callable[[], Coroutine[Any, Any, None]]) -> None:
    # Module fixtures are synchronous; run the database set-up on a loop of its own.
    error: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(coroutine_function())
        except BaseException as exc:
            error.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if error:
        raise error[0]


@pytest.fixture(scope="module")
def service_url(database_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    name = f"test_fuzz_{uuid.uuid4().hex[:12]}"

    async def create() -> None:
        admin = await asyncpg.connect(database_url)
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()

    async def drop() -> None:
        admin = await asyncpg.connect(database_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()

    _in_thread(create)
    port = free_port()
    environment = {
        **os.environ,
        "DATABASE_URL": urlunsplit(urlsplit(database_url)._replace(path=f"/{name}")),
        "REDIS_URL": redis_url,
        "JWT_ISSUER": ISSUER,
        "JWT_AUDIENCE": AUDIENCE,
        "JWT_SECRET": SECRET,
        "COMMAND_PORT": str(port),
        "RATE_LIMIT_PER_SECOND": "100000",
        "RATE_LIMIT_BURST": "100000",
        "ACCESS_LOG": "false",
        "LOG_LEVEL": "WARNING",
    }
    service = ServiceProcess(
        "command_service", environment, port=port, log=tmp_path_factory.mktemp("fuzz") / "log"
    )
    service.start()
    try:
        service.ready_blocking(30)
        yield service.url
    finally:
        service.send(signal.SIGINT)
        assert service.process is not None
        try:
            service.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            service.kill()
        _in_thread(drop)
        assert '"level":"ERROR"' not in service.log_tail(100_000), service.log_tail()


# Every role, so generated requests get past authorisation and reach validation and the domain.
TOKEN = mint(
    subject="fuzzer",
    roles=["customer", "staff", "service"],
    issuer=ISSUER,
    audience=AUDIENCE,
    key=SECRET,
    ttl_seconds=3600,
)


# A schema-valid command may still be refused for its state: a stale If-Match (412), a rule the schema
# cannot express such as two lines for one SKU (422), or an Idempotency-Key reused with another body (422).
FUZZ_CONFIG = SchemathesisConfig.from_dict(
    {
        # Given as the bearer scheme's credentials, so schemathesis knows the requests are authenticated.
        "auth": {"openapi": {"bearer": {"bearer": TOKEN}}},
        "checks": {
            "positive_data_acceptance": {
                "expected-statuses": ["2XX", "401", "403", "404", "409", "412", "422", "429"]
            }
        },
    }
)


def _document() -> dict[str, Any]:
    # The document the app serves, built without starting it, so pytest can list one test per operation.
    settings_ = CommandSettings(
        database_url="postgresql://unused@127.0.0.1/unused",
        redis_url="redis://127.0.0.1:1/0",
        jwt_issuer=ISSUER,
        jwt_audience=AUDIENCE,
        jwt_secret=SECRET,
    )
    document: dict[str, Any] = create_app(settings_).openapi_schema.to_schema()
    return document


@pytest.mark.parametrize(("operation", "mode"), fuzz_cases(_document(), FUZZ_CONFIG))
def test_no_operation_answers_5xx_or_outside_its_schema(
    service_url: str, operation: APIOperation, mode: GenerationMode
) -> None:
    fuzz(operation, mode, base_url=service_url, max_examples=25)
