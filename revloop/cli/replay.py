"""`revloop replay`: a topic's history by time, for analysts (docs/ops.md, "Replay").

- ``export`` writes a time range of a topic to an Avro Object Container File or JSON Lines;
- ``reset`` moves a stopped consumer group's offsets to a moment, so it rebuilds from there.
"""

from __future__ import annotations

import gc
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import typer
from confluent_kafka import Consumer, KafkaException
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from revloop.cli.common import fail, parse_moment
from revloop.history import (
    CODECS,
    Decoder,
    GroupActive,
    TopicSchemas,
    apply_group_reset,
    export,
    is_jsonl,
    plan_group_reset,
    plan_range,
    to_millis,
)
from revloop.kafka import admin_client, consumer_config
from revloop.settings import get_settings
from schemas.registry import registry_for
from schemas.topics import topic as catalogued_topic

replay_app = typer.Typer(
    help="Replay history: export a time range, reset a group to a time, re-normalize raw records.",
    no_args_is_help=True,
)


@replay_app.command("export")
def export_command(
    topic: str = typer.Option(..., "--topic", help="Catalogue name, e.g. commerce.orders.v1."),
    start: str = typer.Option(..., "--from", help="ISO 8601, inclusive (UTC if no offset)."),
    end: str = typer.Option(..., "--to", help="ISO 8601, exclusive (UTC if no offset)."),
    out: Path = typer.Option(..., "--out", help="The file to write."),  # noqa: B008
    file_format: str | None = typer.Option(
        None,
        "--format",
        help="avro or jsonl (default: jsonl for .jsonl/.ndjson/.json, else avro).",
    ),
    codec: str = typer.Option(
        "deflate", "--codec", help="Avro OCF codec: deflate (about 3x smaller) or null (faster)."
    ),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Every record of TOPIC stamped in [FROM, TO), in its type's current schema, as an Avro
    Object Container File (writer schema embedded) or JSON Lines. Reads without a consumer
    group: nothing is committed, nobody is moved."""
    if file_format not in (None, "avro", "jsonl"):
        raise typer.BadParameter("--format is avro or jsonl")
    if codec not in CODECS:
        raise typer.BadParameter(f"--codec is one of {', '.join(CODECS)}")
    settings = get_settings()
    try:
        entry = catalogued_topic(topic)
    except KeyError as exc:
        raise fail(str(exc.args[0])) from None
    moment_from, moment_to = parse_moment(start), parse_moment(end)
    if moment_to <= moment_from:
        raise fail("--to must be after --from")
    name = settings.topic_name(entry)
    schemas = TopicSchemas.of(entry.values)
    decoder = Decoder(registry_for(settings.registry_url), schemas)
    jsonl = is_jsonl(out, file_format)
    consumer = Consumer(
        consumer_config(
            settings,
            f"revloop.replay.export-{uuid.uuid4().hex[:8]}",
            **{"enable.partition.eof": False, "fetch.max.bytes": 64 * 1024 * 1024},
        )
    )
    console = Console(stderr=True)
    # Every record makes a few objects; without this each full collection walks the hundreds of
    # thousands the imports made (docs/benchmarks.md: it cut throughput by 4 there).
    gc.freeze()
    # Written beside the target and renamed at the end: a failed export leaves no file that
    # looks whole.
    partial = out.with_name(out.name + ".part")
    try:
        plan = plan_range(consumer, name, moment_from, moment_to)
        total = sum(e - s for s, e in plan.values())
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
        )
        with (
            Progress(*columns, console=console, disable=quiet) as bar,
            partial.open("wb") as sink,
        ):
            task = bar.add_task(name, total=total)
            result = export(
                consumer,
                name,
                plan,
                decoder,
                schemas,
                sink,
                jsonl=jsonl,
                codec=codec,
                start_ms=to_millis(moment_from),
                end_ms=to_millis(moment_to),
                progress=lambda n: bar.advance(task, n),
            )
            bar.update(task, completed=total)
        partial.replace(out)
    except (KafkaException, LookupError) as exc:
        raise fail(f"Kafka: {exc}") from None
    finally:
        consumer.close()
        partial.unlink(missing_ok=True)
    skipped = f", {result.skipped} skipped (not decodable)" if result.skipped else ""
    console.print(
        f"{result.records} records of {name} to {out} "
        f"({'JSON Lines' if jsonl else 'Avro OCF'}){skipped}"
    )


@replay_app.command("reset")
def reset_command(
    group: str = typer.Option(
        ..., "--group", help="The group id as `revloop lag` shows it (with the topic prefix)."
    ),
    to_datetime: str = typer.Option(..., "--to-datetime", help="ISO 8601 (UTC if no offset)."),
    topics: list[str] = typer.Option(  # noqa: B008
        [], "--topic", help="Only this catalogue topic (repeatable; default: all the group reads)."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show the plan; change nothing."),
) -> None:
    """Move GROUP's committed offsets to the first record at or after TO-DATETIME on every
    partition it reads (a moment past a partition's last record: its end). Refused while the
    group has active members."""
    settings = get_settings()
    moment = parse_moment(to_datetime)
    try:
        names = [settings.topic_name(catalogued_topic(t)) for t in topics] or None
    except KeyError as exc:
        raise fail(str(exc.args[0])) from None
    admin = admin_client(settings)
    try:
        moves = plan_group_reset(admin, group, moment, names)
        if not moves:
            raise fail(f"{group} has no committed offsets (check the name with `revloop lag`)")
        table = Table(title=f"{group} to {moment.isoformat()}", title_justify="left")
        for column in ("topic", "partition", "current", "planned", "change"):
            table.add_column(column, justify="left" if column == "topic" else "right")
        for m in moves:
            change = "" if m.current is None else f"{m.planned - m.current:+d}"
            current = "-" if m.current is None else str(m.current)
            table.add_row(m.topic, str(m.partition), current, str(m.planned), change)
        Console().print(table)
        if dry_run:
            typer.echo("dry run: nothing changed")
            return
        apply_group_reset(admin, group, moves)
    except GroupActive as exc:
        raise fail(str(exc)) from None
    except KafkaException as exc:
        raise fail(f"Kafka: {exc}") from None
    typer.echo(f"moved {len(moves)} partition(s) of {group}")


@replay_app.command("redrive")
def redrive_command(
    start: str = typer.Option(..., "--from", help="ISO 8601 instant (UTC if no offset)."),
    end: str | None = typer.Option(None, "--to", help="ISO 8601 instant; default: now."),
) -> None:
    """Re-normalize the raw records received in [--from, --to) into the canonical topics,
    after a normalizer fix. Event ids are deterministic, so consumers dedupe what the live
    run already wrote. Records that fail again are counted, not dead-lettered again."""
    # Imported here: the normalizer's modules would slow every other replay command's start.
    from streams.normalizer.redrive import redrive_normalizer, replay

    settings = get_settings()
    since, until = parse_moment(start), parse_moment(end) if end else None
    try:
        normalizer = redrive_normalizer(settings)
    except ValueError as exc:
        raise fail(str(exc)) from exc
    last = [0.0]

    def progress(done: int, total: int) -> None:
        now = datetime.now(UTC).timestamp()
        if done in (0, total) or now - last[0] >= 1:
            last[0] = now
            share = f" ({100 * done // total}%)" if total else ""
            print(f"\r{done}/{total} records{share}", end="", file=sys.stderr, flush=True)

    try:
        report = replay(normalizer, since, until, progress=progress)
    except (KafkaException, LookupError) as exc:
        raise fail(f"replay stopped: {exc}") from exc
    print(file=sys.stderr)
    typer.echo(
        f"{report.records} raw records, {report.events} events written; "
        + ", ".join(f"{n} {outcome}" for outcome, n in sorted(report.outcomes.items()))
    )
    for why, n in sorted(report.failures.items()):
        typer.secho(f"{n} still failing: {why}", fg=typer.colors.YELLOW)
