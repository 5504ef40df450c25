"""The ops console (`revloop console`): one web page on what `revloop lag` measures, with the
sink's open circuit breakers, dead letters and ingest outcomes beside it (docs/ops.md, "Ops
console"). Layer 4: it composes the core's lag code and the sink's Postgres views."""

from console.command import console_command

__all__ = ["console_command"]
