"""The local development stack: a single-node Kafka broker and a Postgres cluster, no Docker."""
