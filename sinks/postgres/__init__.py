"""The Postgres sink: the canonical and derived topics into tables analysts query
(docs/sinks.md). ``tables`` is the schema, ``rows`` the pure event-to-row mapping, ``writer``
the batch writes, ``followups`` what rows imply for other rows, ``service`` the process."""

from sinks.postgres.migrate import upgrade
from sinks.postgres.service import SINK_TOPICS, PostgresSink

__all__ = ["SINK_TOPICS", "PostgresSink", "upgrade"]
