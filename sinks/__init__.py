"""sinks layer (see docs/architecture.md)."""
