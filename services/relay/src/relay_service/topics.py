"""Topics per aggregate category, created by the suite (brokers never auto-create).

The contract (asyncapi.yaml) declares one topic per category of the domain; the
relay creates all of them when it starts leading, before it publishes anything,
so a consumer that subscribes early finds its topic even while no event of that
category exists yet. Streams of other categories are not published.
"""

from __future__ import annotations

import typing

import msgspec
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError, for_code
from fulfilment.events import OrderEvent, PaymentEvent, StockEvent
from fulfilment.values import ORDER_CATEGORY, PAYMENT_CATEGORY, STOCK_CATEGORY

__all__ = ["CHANNELS", "TopicCreator", "contract_topics"]

# Stream category -> the events its streams hold; one topic per category.
CHANNELS: dict[str, tuple[type[msgspec.Struct], ...]] = {
    category: typing.get_args(alias.__value__)
    for category, alias in (
        (ORDER_CATEGORY, OrderEvent),
        (STOCK_CATEGORY, StockEvent),
        (PAYMENT_CATEGORY, PaymentEvent),
    )
}


def contract_topics(prefix: str) -> set[str]:
    """Every topic asyncapi.yaml declares for the topic `prefix`: prefix + category."""
    return {f"{prefix}{category}" for category in CHANNELS}


class TopicCreator:
    """Creates each topic once with the configured partitions, replication and retention."""

    def __init__(
        self, bootstrap_servers: str, *, partitions: int, replication_factor: int, retention_ms: int
    ) -> None:
        self._bootstrap_servers = bootstrap_servers
        self._partitions = partitions
        self._replication_factor = replication_factor
        # Set explicitly rather than left to the broker's default, so the contract can state it.
        self._configs = {"retention.ms": str(retention_ms)}
        self.known: set[str] = set()

    async def ensure(self, topics: set[str]) -> set[str]:
        """Create the topics not yet known to exist; return those this call created.

        Idempotent: topics that exist already, made by an operator or another relay
        (even between our listing and our creating), are left as they are.
        """
        wanted = topics - self.known
        if not wanted:
            return set()
        admin = AIOKafkaAdminClient(bootstrap_servers=self._bootstrap_servers)
        try:
            await admin.start()
            missing = wanted - set(await admin.list_topics())
            if missing:
                new = [
                    NewTopic(t, self._partitions, self._replication_factor, topic_configs=self._configs)
                    for t in sorted(missing)
                ]
                response = await admin.create_topics(new, timeout_ms=30_000)
                for topic, code, *message in response.topic_errors:
                    if code not in (0, TopicAlreadyExistsError.errno):
                        raise for_code(code)(f"creating topic {topic}: {message}")
        finally:
            # Also after a failed start: its bootstrap connection may be open.
            await admin.close()
        self.known |= wanted
        return missing
