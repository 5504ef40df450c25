"""The billing ledger's entries from the attribution scores, in the worker (docs/ledger.md)."""

from streams.ledger.topology import add_ledger

__all__ = ["add_ledger"]
