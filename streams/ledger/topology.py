"""Each attribution score's ledger entries (:func:`revloop.ledger.score_entries`), written to
``billing.ledger-entries.v1`` in the same transaction as the score itself: a score is never
without its entries, nor an entry without its score."""

from __future__ import annotations

from quixstreams import Application
from quixstreams.dataframe import StreamingDataFrame

from revloop.ledger import entry_value, score_entries
from revloop.settings import Settings
from schemas.serde import AvroSerde
from streams.runtime.inputs import Stored
from streams.runtime.quix import catalogue_key, output_topic

ENTRY = "dev.revloop.events.LedgerEntry"


def entries(score: Stored) -> list[Stored]:
    return [entry_value(entry) for entry in score_entries(score)]


def add_ledger(
    app: Application, settings: Settings, serde: AvroSerde, scores: StreamingDataFrame
) -> None:
    out = output_topic(app, settings, ENTRY, serde)
    scores.apply(entries, expand=True).to_topic(out, key=catalogue_key(ENTRY))
