"""`revloop dlq list | show | redrive` on ops.dead-letters.v1, and `revloop replay redrive`
(docs/ops.md, "Dead letters"). The logic lives in :mod:`revloop.dead_letters` and
:mod:`streams.normalizer.redrive`; this is the shell."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import typer
from confluent_kafka import Consumer, KafkaException

from revloop.cli.common import fail
from revloop.dead_letters import (
    Letter,
    Marker,
    Result,
    Rework,
    UnreadableLetters,
    failed_again,
    read_letters,
    read_markers,
    read_source,
    redrive,
    reproduce,
    select,
    source_state,
    source_watermarks,
)
from revloop.kafka import consumer_config, serde_for
from revloop.settings import Settings, get_settings
from schemas.serde import AvroSerde, SerdeError
from streams.normalizer.processor import Normalizer
from streams.normalizer.redrive import STAGES, letter_rework, redrive_normalizer

dlq_app = typer.Typer(
    help="Dead letters: list them, show one, redrive them once their cause is fixed.",
    no_args_is_help=True,
)

CONNECTOR_STAGES = ("connect.hydrate",)
"""Connector stages whose redrive re-produces the input record (the hydrator fetches again).
``connect.ads`` is not among them: the executor records a failed action as done, so a
re-produced action would change nothing; the next breaker action for the product acts."""


def reworks_for(normalizer: Callable[[], Normalizer]) -> dict[str, Rework]:
    """What redrive means per stage. The normalizer is built only when a letter needs it."""
    built: list[Rework] = []

    def normalize(letter: Letter, message: Any) -> Any:
        if not built:
            built.append(letter_rework(normalizer()))
        return built[0](letter, message)

    return {
        **{stage: normalize for stage in STAGES},
        **{stage: reproduce for stage in CONNECTOR_STAGES},
    }


def _age(then: datetime, now: datetime) -> str:
    seconds = max(0, int((now - then).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def letter_row(letter: Letter, state: str, marker: Marker | None, now: datetime) -> dict[str, Any]:
    return {
        "id": letter.letter_id,
        "stage": letter.stage,
        "reason": letter.reason,
        "store_id": letter.store_id,
        "source_topic": letter.source_topic,
        "source_partition": letter.source_partition,
        "source_offset": letter.source_offset,
        "event_id": letter.event_id,
        "written_at": letter.written_at.isoformat(),
        "age": _age(letter.written_at, now),
        "source": state,
        "redriven": marker.at.isoformat() if marker else None,
        "failed_again": failed_again(letter, marker),
    }


def _context() -> tuple[Settings, AvroSerde]:
    settings = get_settings()
    return settings, serde_for(settings, "dlq.redrive")


@dlq_app.command("list")
def list_command(
    stage: str | None = typer.Option(None, help="Only letters of this stage (normalize, ...)."),
    reason: str | None = typer.Option(None, help="Only letters with this reason."),
    store: str | None = typer.Option(None, help="Only letters of this store id."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per letter."),
) -> None:
    """One row per dead letter: its reason, its source record, whether the source is still
    readable or expired by retention, and whether it was redriven."""
    settings, serde = _context()
    try:
        letters = select(_letters(settings, serde), stage=stage, reason=reason, store=store)
        markers = read_markers(settings, serde)
        marks = source_watermarks(settings, letters)
    except KafkaException as exc:
        raise fail(f"cannot read the dead letters: {exc}") from exc
    now = datetime.now(UTC)
    rows = [
        letter_row(letter, source_state(letter, marks), markers.get(letter.letter_id), now)
        for letter in letters
    ]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        typer.echo("no dead letters")
        return
    header = ("id", "stage", "reason", "source", "age", "source state", "redriven")
    lines = [header] + [
        (
            r["id"],
            r["stage"],
            r["reason"],
            f"{r['source_topic']}[{r['source_partition']}]@{r['source_offset']}",
            r["age"],
            r["source"],
            "failed again" if r["failed_again"] else "yes" if r["redriven"] else "no",
        )
        for r in rows
    ]
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    for line in lines:
        typer.echo("  ".join(str(v).ljust(w) for v, w in zip(line, widths, strict=True)).rstrip())


@dlq_app.command("show")
def show_command(letter_id: str = typer.Argument(..., help="The letter's id.")) -> None:
    """A letter's fields and its source record's metadata (never its body: it holds personal
    data)."""
    settings, serde = _context()
    matches = select(_letters(settings, serde), ids=[letter_id])
    if not matches:
        raise fail(f"no dead letter {letter_id}")
    letter = matches[0]
    marks = source_watermarks(settings, [letter])
    marker = read_markers(settings, serde).get(letter_id)
    shown = letter_row(letter, source_state(letter, marks), marker, datetime.now(UTC))
    shown |= {
        "message": letter.message,
        "platform": letter.platform,
        "source_key": letter.source_key.decode("utf-8", "replace") if letter.source_key else None,
        "attempts": letter.attempts,
    }
    if marker is not None:
        shown["redrive"] = {"outcome": marker.outcome, "event_ids": list(marker.event_ids)}
    shown["source_record"] = source_metadata(settings, serde, letter, shown["source"])
    typer.echo(json.dumps(shown, indent=2, default=str))


def source_metadata(
    settings: Settings, serde: AvroSerde, letter: Letter, state: str
) -> Mapping[str, Any] | None:
    """The source record's position, timestamp, size and envelope: no field of its body."""
    if state != "readable":
        return None
    consumer = Consumer(consumer_config(settings, "revloop.dlq.read"))
    try:
        message = read_source(consumer, letter, settings.kafka_call_timeout_seconds)
    finally:
        consumer.close()
    if message is None:
        return None
    _, stamp = message.timestamp()
    value = message.value() or b""
    meta: dict[str, Any] = {
        "timestamp": datetime.fromtimestamp(stamp / 1000, UTC).isoformat(),
        "bytes": len(value),
    }
    try:
        decoded = serde.decode(value)
    except SerdeError:
        meta["record"] = "does not decode"
        return meta
    meta["record"] = decoded.record_name
    meta["envelope"] = decoded.value.get("envelope")
    if "topic" in decoded.value:  # a raw delivery's webhook topic, not its body
        meta["webhook_topic"] = decoded.value["topic"]
    return meta


@dlq_app.command("redrive")
def redrive_command(
    ids: list[str] = typer.Option(  # noqa: B008
        [], "--id", help="A letter to redrive (repeatable)."
    ),
    stage: str | None = typer.Option(None, help="Only letters of this stage."),
    reason: str | None = typer.Option(None, help="Only letters with this reason."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Say what would happen; write nothing."),
) -> None:
    """Put letters back through the pipeline once their cause is fixed, each exactly once:
    what it yields and its redrive marker commit in one transaction; a marked letter is
    skipped. Exits 1 if any selected letter could not be redriven (source expired by retention,
    failed again, or a stage without redrive)."""
    settings, serde = _context()
    if not (ids or stage or reason):
        raise fail("name letters with --id, --stage or --reason")
    letters = select(_letters(settings, serde), ids=ids, stage=stage, reason=reason)
    missing = set(ids) - {letter.letter_id for letter in letters}
    if missing:
        typer.secho(f"no such letter: {', '.join(sorted(missing))}", fg=typer.colors.RED, err=True)

    def normalizer() -> Normalizer:
        try:
            return redrive_normalizer(settings)
        except ValueError as exc:
            raise fail(str(exc)) from exc

    try:
        results = redrive(
            settings, serde, letters, reworks_for(normalizer), dry_run=dry_run, on_result=_echo
        )
    except KafkaException as exc:
        raise fail(f"redrive stopped (another redrive may have fenced this one): {exc}") from exc
    counts: dict[str, int] = {}
    for result in results:
        counts[result.status] = counts.get(result.status, 0) + 1
    typer.echo(", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "nothing")
    if missing or not all(result.ok for result in results):
        raise typer.Exit(1)


def _letters(settings: Settings, serde: AvroSerde) -> list[Letter]:
    try:
        return read_letters(settings, serde)
    except (KafkaException, UnreadableLetters) as exc:
        raise fail(f"cannot read the dead letters: {exc}") from exc


def _echo(result: Result) -> None:
    color = typer.colors.GREEN if result.ok else typer.colors.RED
    events = f" ({len(result.event_ids)} events)" if result.event_ids else ""
    typer.secho(
        f"{result.letter.letter_id} {result.status}: {result.detail}{events}", fg=color, err=False
    )
