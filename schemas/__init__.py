"""Event contracts: Avro schemas, their committed ids, the serde, the topic catalogue."""

from schemas.registry import CommittedCatalogue, ConfluentRegistry, Registry, SchemaError
from schemas.serde import AvroSerde, Decoded, SerdeError
from schemas.topics import TOPICS, Topic, topic, topic_for_record

__all__ = [
    "TOPICS",
    "AvroSerde",
    "CommittedCatalogue",
    "ConfluentRegistry",
    "Decoded",
    "Registry",
    "SchemaError",
    "SerdeError",
    "Topic",
    "topic",
    "topic_for_record",
]
