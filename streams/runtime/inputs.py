"""The worker's inputs: one stream per catalogue topic, shared by every processor that reads it
(quixstreams allows one root dataframe per topic; processors branch from it), and each input
record as the JSON the stateful steps keep."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import quixstreams.dataframe.windows.aggregations as agg
from quixstreams import Application
from quixstreams.dataframe import StreamingDataFrame
from quixstreams.state import State

from revloop.settings import Settings
from revloop.stores import LiveStoreSettings, StoreSettings
from schemas.serde import AvroSerde
from schemas.topics import topic
from streams.runtime.metrics import WorkerMetrics
from streams.runtime.quix import input_topic, internal_topic

Stored = dict[str, Any]
R = TypeVar("R")
RulesFor = Callable[[str, datetime], R]
"""A store's rules in effect at an event time: ``rules(store_id, at)``."""


class Inputs:
    def __init__(
        self,
        app: Application,
        settings: Settings,
        serde: AvroSerde,
        stores: LiveStoreSettings,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        self._app, self._settings, self._serde = app, settings, serde
        self._stores = stores
        self._streams: dict[str, StreamingDataFrame] = {}
        self.metrics = metrics or WorkerMetrics()
        """The worker's counters: each input record counted here, the processors add theirs."""

    def rules(self, make: Callable[[Settings], R]) -> RulesFor[R]:
        """A store's rules at an event time, ``make`` applied to the settings in effect then
        (made once per store and settings version), as of the stores file's last change."""

        def rules_for(store_id: str, at: datetime) -> R:
            current: StoreSettings = self._stores.current
            return current.build(store_id, at, make)

        return rules_for

    def stream(self, name: str) -> StreamingDataFrame:
        """The root stream of catalogue topic ``name``."""
        if name not in self._streams:
            catalogued = input_topic(
                self._app, self._settings, topic(name), self._serde, self.metrics.record_read
            )
            self._streams[name] = self._app.dataframe(catalogued)
        return self._streams[name]


def meet(
    app: Application,
    settings: Settings,
    name: str,
    streams: Sequence[StreamingDataFrame],
    key: Callable[[Stored], str],
) -> StreamingDataFrame:
    """A join's inputs, written keyed by the join key to one topic of the worker's own, read
    back as one stream: every record of a key reaches the same partition and state store.

    This is quixstreams' ``concat(...).group_by(...)`` by hand, because that names its topics
    (and their changelogs) after every source upstream: under a topic prefix a chain of joins
    passed Kafka's 249-character limit. These topics are ``<group>--<name>``, written in the
    worker's transactions like any output."""
    topic = internal_topic(app, settings, name, JOIN_PARTITIONS)
    for stream in streams:
        stream.to_topic(topic, key=key)
    return app.dataframe(topic)


JOIN_PARTITIONS = 6
"""Partitions of each join topic: the most any catalogue input has."""


def stateful(step: Any) -> Any:
    """A pure ``step(record, stored) -> (stored, outputs)`` as a quixstreams stateful apply: the
    key's stored JSON in, the new one kept, the outputs returned (to expand)."""

    def run(value: Stored, state: State[str, Stored]) -> list[Stored]:
        stored, outputs = step(value, state.get("stored", {}))
        state.set("stored", stored)
        return list(outputs)

    return run


def event_time_ms(iso: str) -> int:
    """A record's event time, for windows that run on it (the timers). It also stamps what the
    windows produce, and brokers refuse stamps over an hour ahead of their clock, so an event
    from a shop whose clock runs ahead is taken as happening now."""
    return min(int(datetime.fromisoformat(iso).timestamp() * 1000), int(time.time() * 1000))


def timer(
    stream: StreamingDataFrame,
    name: str,
    after: timedelta,
    grace: timedelta,
    step: Callable[[datetime, Stored], tuple[Stored, list[Stored]]],
) -> StreamingDataFrame:
    """Calls ``step(now, stored)`` for a key once the partition's stream time passes the key's
    last record plus ``after`` (plus ``grace``, for records out of order), with ``now`` that
    time; its outputs come out. quixstreams has no punctuation: a session window with half that
    gap closes then, on any key's record (``closing_strategy="partition"``, docs/streams.md)."""
    window = stream.session_window(
        inactivity_gap_ms=after / 2, grace_ms=grace, name=name, on_late=_quiet_when_late
    )

    def fire(closed: Stored, stored: Stored) -> tuple[Stored, list[Stored]]:
        last = datetime.fromtimestamp((closed["end"] - 1) / 1000, UTC)  # end is exclusive
        return step(last + after + grace, stored)

    closed = window.agg(records=agg.Count()).final(closing_strategy="partition")
    fired: StreamingDataFrame = closed.apply(stateful(fire), stateful=True, expand=True)
    return fired


def _quiet_when_late(*args: Any, **kwargs: Any) -> bool:
    # A record behind the partition's stream time starts no timer (its own step still ran),
    # which is expected of out-of-order keys: no log line for each.
    return False


def product_key(record: Stored) -> str:
    """The join key of the stages that meet per product."""
    return f"{record['store_id']}/{record['product_id']}"


def link_record(link: Stored) -> Stored:
    """A campaign-product link, as kept by the steps that need campaigns per product."""
    envelope = link["envelope"]
    return {
        "kind": "link",
        "store_id": envelope["store_id"],
        "product_id": link["product_id"],
        "campaign_id": link["campaign_id"],
        "channel": link["channel"],
        "active": link["active"],
        "at": envelope["occurred_at"].isoformat(),
        "event_id": envelope["event_id"],
    }
