"""The billing ledger's entries in the worker: from attribution scores, touchpoint costs and
campaign spend reports (docs/ledger.md)."""

from streams.ledger.topology import add_ledger

__all__ = ["add_ledger"]
