"""The relay: publishes the event store's global log to Kafka."""
