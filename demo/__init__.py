"""`revloop demo`: simulated stores send a day of webhooks through ingest and the normalizer
(docs/demo.md)."""

from demo.run import demo_command, run_demo

__all__ = ["demo_command", "run_demo"]
