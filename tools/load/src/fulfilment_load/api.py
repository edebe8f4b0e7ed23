"""The suite's public HTTP APIs as the load tool uses them: commands, reads with a consistency token,
the saga's view. Every call is counted and timed in `Stats`; nothing here decides what traffic to send.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx

from fulfilment_load.stats import Stats

__all__ = ["Answer", "SuiteClient", "Unreachable"]

# Answers the command service documents as safe to retry with the same Idempotency-Key.
_RETRIED = frozenset({429, 503})
_ATTEMPTS = 4
_MAX_RETRY_AFTER = 2.0


class Unreachable(Exception):
    """A service gave no HTTP answer at all (refused connection, unknown host, timeout)."""

    def __init__(self, service: str, url: str, cause: httpx.TransportError) -> None:
        reason = str(cause) or type(cause).__name__
        super().__init__(f"cannot reach the {service} service at {url}: {reason}")


@dataclass(frozen=True, slots=True)
class Answer:
    """One HTTP answer: its status, its JSON body (None if it had none) and how long it took."""

    status: int
    body: Any
    seconds: float
    retry_after: float | None

    @property
    def problem(self) -> str:
        """The answer as one line: status, and the problem detail's title and detail if it is one."""
        if isinstance(self.body, dict):
            words = [str(self.body[key]) for key in ("title", "detail") if self.body.get(key)]
            if words:
                return f"{self.status} {': '.join(words)}"
        return str(self.status)


class SuiteClient:
    """HTTP clients of the command service, the query service and (optionally) the saga's API."""

    def __init__(
        self,
        stats: Stats,
        *,
        command: httpx.AsyncClient,
        query: httpx.AsyncClient,
        saga: httpx.AsyncClient | None = None,
    ) -> None:
        self.stats = stats
        self._command = command
        self._query = query
        self._saga = saga

    @property
    def has_saga(self) -> bool:
        return self._saga is not None

    async def command(self, path: str, token: str, body: Any = None) -> Answer:
        """POST a command; 429 and 503 are retried after Retry-After with the same Idempotency-Key,
        which makes the command take effect at most once."""
        headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": str(uuid.uuid4())}
        for attempt in range(_ATTEMPTS):
            answer = await self._send(self._command, "command", "POST", path, headers, body)
            self.stats.command_answers[answer.status] += 1
            self.stats.command.add(answer.seconds)
            if answer.status not in _RETRIED or attempt == _ATTEMPTS - 1:
                break
            await asyncio.sleep(min(answer.retry_after or 0.2, _MAX_RETRY_AFTER))
        return answer

    async def read(self, path: str, token: str, consistency: int | None = None) -> Answer:
        """GET from the query service; with `consistency`, it waits until it shows that position."""
        headers = {"Authorization": f"Bearer {token}"}
        if consistency is not None:
            headers["X-Consistency-Token"] = str(consistency)
        answer = await self._send(self._query, "query", "GET", path, headers, None)
        self.stats.query_answers[answer.status] += 1
        return answer

    async def saga(self, order_id: str, token: str) -> Answer:
        """The saga's view of an order (`GET /sagas/{order id}`, staff or service token)."""
        if self._saga is None:
            raise RuntimeError("no saga URL was given")
        headers = {"Authorization": f"Bearer {token}"}
        return await self._send(self._saga, "saga", "GET", f"/sagas/{order_id}", headers, None)

    async def _send(
        self,
        client: httpx.AsyncClient,
        service: str,
        method: str,
        path: str,
        headers: dict[str, str],
        body: Any,
    ) -> Answer:
        started = time.monotonic()
        try:
            response = await client.request(method, path, headers=headers, json=body)
        except httpx.TransportError as e:
            raise Unreachable(service, str(client.base_url), e) from e
        seconds = time.monotonic() - started
        try:
            decoded = response.json() if response.content else None
        except ValueError:
            decoded = None
        return Answer(response.status_code, decoded, seconds, _retry_after(response))


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
