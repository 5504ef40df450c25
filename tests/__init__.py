"""revloop's tests: one folder per package, the harnesses in ``*_support.py``."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
"""The repository's root."""
FIXTURES = ROOT / "tests" / "fixtures"
"""Recorded platform payloads, one folder per platform."""
