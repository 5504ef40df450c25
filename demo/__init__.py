"""`revloop demo`: simulated stores send a day of webhooks through ingest, the normalizer, the
hydrator and the worker (docs/demo.md)."""

from demo.run import demo_command, run_demo

__all__ = ["demo_command", "run_demo"]
