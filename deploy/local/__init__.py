"""The docker-free local stack: real PostgreSQL, Redis, Kafka and OpenSearch on loopback."""
