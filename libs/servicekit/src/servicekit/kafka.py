"""Kafka consumers of the suite (FastStream over aiokafka): raw records in, and whether they can fetch.

`raw_parser` and `raw_decoder` (a subscriber's `parser=` and `decoder=`) hand the
handler untouched `ConsumerRecord`s: FastStream's defaults raise on a non-UTF-8
header or a bad JSON value before any handler runs, and the record was then dropped
silently, so the consumer's own reading must decide, and dead-letter. `fetch_problem`
asks each subscriber's consumer whether it could fetch now (readiness), since a
subscriber keeps "running" through an outage. FastStream and aiokafka are used only
through the few attributes named here.
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

__all__ = [
    "ConsumerStalled",
    "fetch_problem",
    "kafka_answers",
    "raw_decoder",
    "raw_parser",
    "subscribers_fetch_problem",
    "watch_fetching",
]


async def raw_parser(message: Any, original: Callable[[Any], Awaitable[Any]]) -> Any:
    """A FastStream `parser=` that never fails on headers: FastStream's message is built from copies
    whose header values are made decodable, and its `raw_message` is then the untouched record(s)."""
    if isinstance(message, tuple):
        parsed = await original(tuple(_decodable(record) for record in message))
    else:
        parsed = await original(_decodable(message))
    parsed.raw_message = message
    return parsed


def raw_decoder(message: Any) -> Any:
    """A FastStream `decoder=` that decodes nothing: the body stays bytes, whatever its content type."""
    return message.body


def _decodable(record: Any) -> Any:
    headers = record.headers or ()
    if all(isinstance(value, bytes) and value.isascii() for _, value in headers):
        return record  # the usual case: nothing to copy
    clean = copy.copy(record)
    clean.headers = tuple(
        (name, (value or b"").decode("utf-8", "replace").encode("utf-8")) for name, value in headers
    )
    return clean


async def fetch_problem(consumer: Any, *, timeout: float = 2.0) -> str | None:
    """None when an aiokafka consumer could fetch now, else a short reason.

    It could when its group's coordinator is known (lost in an outage, found again
    when the consumer rejoins) and the broker leading each assigned partition, or
    any broker it knows when it has none, accepts a connection within `timeout`.
    """
    if consumer is None:
        return "the consumer is not started"
    client = consumer._client
    coordinator = getattr(consumer, "_coordinator", None)
    if getattr(coordinator, "coordinator_id", 0) is None:
        return "the consumer group has no coordinator (Kafka unreachable or rejoining)"
    cluster = client.cluster
    nodes = {cluster.leader_for_partition(tp) for tp in consumer.assignment()}
    if None in nodes or -1 in nodes:
        return "a partition has no leader"
    if not nodes:
        nodes = {broker.nodeId for broker in cluster.brokers()} or {"bootstrap"}
    try:
        async with asyncio.timeout(timeout):
            reachable = await asyncio.gather(*(client.ready(node) for node in nodes))
    except TimeoutError:
        return f"no answer from the brokers within {timeout:g} s"
    unreachable = sorted(str(node) for node, ok in zip(nodes, reachable, strict=True) if not ok)
    if unreachable:
        return f"broker(s) {', '.join(unreachable)} unreachable"
    return None


async def subscribers_fetch_problem(subscribers: Iterable[Any], *, timeout: float = 2.0) -> str | None:
    """`fetch_problem` for every subscriber of a FastStream Kafka broker (`broker.subscribers`),
    and whether its consuming task still runs; None when all can fetch."""
    problems: list[str] = []
    for subscriber in subscribers:
        name = ",".join(getattr(subscriber, "topic_names", None) or ["?"])
        ended = [task for task in getattr(subscriber, "tasks", ()) if task.done()]
        if ended:
            problems.append(f"{name}: the consuming task ended")
            continue
        problem = await fetch_problem(getattr(subscriber, "consumer", None), timeout=timeout)
        if problem is not None:
            problems.append(f"{name}: {problem}")
    return "; ".join(problems) or None


class ConsumerStalled(RuntimeError):
    """A consumer cannot fetch although Kafka answers: only a new consumer (a new process) helps."""


async def kafka_answers(bootstrap_servers: str, *, timeout: float = 5.0) -> bool:
    """Whether Kafka answers a fresh client's metadata request now."""
    from aiokafka import AIOKafkaClient  # the services' dependency, imported where it is used

    client = AIOKafkaClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=int(timeout * 1000))
    try:
        async with asyncio.timeout(timeout):
            await client.bootstrap()
        return True
    except Exception:  # any failure to bootstrap means: not answering now
        return False
    finally:
        await client.close()


async def watch_fetching(
    check: Callable[[], Awaitable[str | None]],
    bootstrap_servers: str,
    *,
    stall_after: float = 90.0,
    every: float = 5.0,
) -> None:
    """Raise `ConsumerStalled` once `check` (a consumer's readiness) has failed for `stall_after`
    seconds while Kafka itself answers; run it as a supervised loop, which ends the process then.

    After a broker is killed (not stopped), aiokafka's consumers were seen to stay without a group
    coordinator for good though the broker was back and had loaded their group: alive, ready to
    nobody, consuming nothing. A new consumer joins at once; so the process ends and its
    supervisor starts a new one. While Kafka is down the watch only waits.
    """
    failing_since: float | None = None
    while True:
        await asyncio.sleep(every)
        reason = await check()
        if reason is None or not await kafka_answers(bootstrap_servers):
            failing_since = None
            continue
        now = time.monotonic()
        failing_since = failing_since or now
        if now - failing_since >= stall_after:
            raise ConsumerStalled(f"cannot fetch for {stall_after:g} s while Kafka answers: {reason}")
