"""Topics per aggregate category, created by the suite (brokers never auto-create)."""

from __future__ import annotations

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError, for_code

__all__ = ["TopicCreator"]


class TopicCreator:
    """Creates each topic once with the configured partitions and replication."""

    def __init__(self, bootstrap_servers: str, *, partitions: int, replication_factor: int) -> None:
        self._bootstrap_servers = bootstrap_servers
        self._partitions = partitions
        self._replication_factor = replication_factor
        self.known: set[str] = set()

    async def ensure(self, topics: set[str]) -> set[str]:
        """Create the topics not yet known to exist; return those this call created."""
        wanted = topics - self.known
        if not wanted:
            return set()
        admin = AIOKafkaAdminClient(bootstrap_servers=self._bootstrap_servers)
        await admin.start()
        try:
            missing = wanted - set(await admin.list_topics())
            if missing:
                new = [NewTopic(t, self._partitions, self._replication_factor) for t in sorted(missing)]
                response = await admin.create_topics(new, timeout_ms=30_000)
                for topic, code, *message in response.topic_errors:
                    # "already exists": another relay or an operator created it between list and create
                    if code not in (0, TopicAlreadyExistsError.errno):
                        raise for_code(code)(f"creating topic {topic}: {message}")
        finally:
            await admin.close()
        self.known |= wanted
        return missing
