"""Property-based fuzzing of the HTTP API from its own OpenAPI document (schemathesis).

The service runs as a real process over seeded read models; schemathesis
generates valid and invalid requests for every operation and checks that none
is a 5xx and that every response matches the document.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from query_service.app import create_app
from query_service.settings import QuerySettings
from readmodels.keyspace import Keyspace
from readmodels.search import connect_search
from redis.asyncio import Redis
from schemathesis import GenerationMode
from schemathesis.config import SchemathesisConfig
from schemathesis.schemas import APIOperation
from servicekit.tokens import mint
from testkit.fuzzing import fuzz, fuzz_cases
from testkit.harness import ServiceProcess, free_port

from services.query.tests.seeding import SeededModels, order

pytestmark = pytest.mark.slow

SECRET = "fuzzing-secret-that-is-long-enough-for-hs256"
ISSUER, AUDIENCE = "https://issuer.test", "query-api"


async def _seed(redis_url: str, search_url: str, prefix: str, *, drop: bool = False) -> None:
    redis = Redis.from_url(redis_url)
    search = await connect_search(search_url)
    models = SeededModels(redis, search, Keyspace(prefix))
    try:
        if drop:
            await models.drop()
            return
        await models.create()
        for n in range(30):
            await models.put(order(f"customer-{n % 3}", placed=n, total=100 * n, status="pending"))
        await models.stock("blue-mug", "Blue mug", on_hand=5, available=5)
        await models.refresh()
    finally:
        await search.close()
        await redis.aclose()


@pytest.fixture(scope="module")
def service_url(redis_url: str, search_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    prefix = f"fuzz{uuid.uuid4().hex[:8]}-"
    asyncio.run(_seed(redis_url, search_url, prefix))
    port = free_port()
    environment = {
        **os.environ,
        "REDIS_URL": redis_url,
        "SEARCH_URL": search_url,
        "JWT_ISSUER": ISSUER,
        "JWT_AUDIENCE": AUDIENCE,
        "JWT_SECRET": SECRET,
        "QUERY_PORT": str(port),
        "QUERY_KEY_PREFIX": prefix,
        # Generated tokens are far ahead of any position: answer 409 quickly rather than after 2 s.
        "QUERY_CONSISTENCY_TIMEOUT_SECONDS": "0.05",
        "RATE_LIMIT_PER_SECOND": "100000",
        "RATE_LIMIT_BURST": "100000",
        "ACCESS_LOG": "false",
        "LOG_LEVEL": "WARNING",
    }
    service = ServiceProcess(
        "query_service", environment, port=port, log=tmp_path_factory.mktemp("fuzz") / "log"
    )
    service.start()
    try:
        service.ready_blocking(60)
        yield service.url
    finally:
        service.send(signal.SIGINT)
        assert service.process is not None
        try:
            service.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            service.kill()
        asyncio.run(_seed(redis_url, search_url, prefix, drop=True))
        assert '"level":"ERROR"' not in service.log_tail(100_000), service.log_tail()


# A customer token: the most restricted caller, so the fuzzing also probes who may see what.
TOKEN = mint(
    subject="customer-1", roles=["customer"], issuer=ISSUER, audience=AUDIENCE, key=SECRET, ttl_seconds=3600
)

FUZZ_CONFIG = SchemathesisConfig.from_dict(
    {
        "auth": {"openapi": {"bearer": {"bearer": TOKEN}}},
        "checks": {
            # A valid request may still name another customer (403), an unknown order (404), a
            # cursor of another query (400), or a consistency token the models have not reached (409).
            "positive_data_acceptance": {
                "expected-statuses": ["2XX", "304", "400", "403", "404", "409", "429"]
            }
        },
    }
)


def _document() -> dict[str, Any]:
    # The document the app serves, built without starting it, so pytest can list one test per operation.
    settings_ = QuerySettings(
        redis_url="redis://127.0.0.1:1/0",
        search_url="http://127.0.0.1:1",
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
    fuzz(operation, mode, base_url=service_url, max_examples=40)
