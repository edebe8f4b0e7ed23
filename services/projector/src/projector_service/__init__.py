"""The projector: the suite's read models in Redis and the search engine, fed from Kafka, rebuilt from the store."""
