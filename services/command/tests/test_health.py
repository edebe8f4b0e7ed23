"""Health endpoints: live and ready, without a token."""

from __future__ import annotations

import httpx
from litestar import Litestar


async def test_live_and_ready_answer_without_a_token(client: httpx.AsyncClient) -> None:
    live = await client.get("/health/live")
    ready = await client.get("/health/ready")

    assert (live.status_code, ready.status_code) == (200, 200)
    assert ready.json() == {"status": "ok", "checks": {"startup": "ok", "loops": "ok", "postgres": "ok"}}
    assert live.json() == {"status": "ok", "checks": {"loops": "ok"}}


async def test_ready_is_503_when_postgres_does_not_answer(app: Litestar, client: httpx.AsyncClient) -> None:
    app.state.services.pool.terminate()

    response = await client.get("/health/ready")

    assert response.status_code == 503
    assert response.json()["status"] == "unavailable"
