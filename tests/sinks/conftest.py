"""Fixtures of the sinks' tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from revloop.kafka import ensure_topics
from revloop.settings import Settings
from tests.sink_support import Sink, scratch_database


@pytest.fixture
def sink(settings: Settings, scratch_catalogue: Any, tmp_path: Path) -> Iterator[Sink]:
    topics = scratch_catalogue()
    ensure_topics(settings, topics)
    with scratch_database(settings) as dsn:
        running = Sink(settings, topics, dsn, tmp_path)
        yield running
        running.stop()
