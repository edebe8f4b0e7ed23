"""The projector: read models in Redis and the search engine, fed from Kafka, rebuilt from the store."""
