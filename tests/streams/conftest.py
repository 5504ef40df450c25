"""Fixtures of the stream processors' tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from revloop.kafka import delete_topics, ensure_topics
from revloop.settings import Settings
from tests.worker_support import Worker


@pytest.fixture
def worker(settings: Settings, scratch_catalogue: Any, tmp_path: Path) -> Iterator[Worker]:
    topics = scratch_catalogue()
    ensure_topics(settings, topics)
    running = Worker(settings, topics, tmp_path)
    yield running
    running.stop()
    # quixstreams' own topics (repartition__…, changelog__…) carry the group in their names.
    names = running.producer.list_topics(timeout=10).topics
    delete_topics(settings, [n for n in names if running.group in n])
