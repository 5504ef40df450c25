"""`revloop demo`: a seeded simulation of three stores, sent as signed traffic through the real
ingest endpoints, normalized by the real normalizer, and summed up (docs/demo.md).

The demo keeps its own store registry, master key and customer-key salt in ``<state_dir>/demo``
(made once, mode 0600), starts ``revloop ingest``, ``revloop normalize``, ``revloop connect
hydrate`` and the rest as subprocesses with that registry, sends the requests of
:func:`demo.simulation.run_simulation` over HTTP, waits for the normalizer and the hydrator to
commit past them, and reads back what this run wrote. Counting is by the event ids the run is
expected to produce (:func:`demo.simulation.expected_outcome`), and hydrated events by the
run's deliveries they name as their cause, so other traffic on the same broker does not change
the numbers.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import os
import secrets
import signal
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Annotated, Any, Final

import httpx
import sqlalchemy.exc
import typer
from confluent_kafka import Consumer, KafkaException, TopicPartition
from rich.console import Console
from rich.table import Table

from demo.ad_platforms import ad_outcome, ad_platforms
from demo.hydration import (
    EXAMPLES,
    HYDRATOR_GROUP,
    REQUESTS_PER_WINDOW,
    WINDOW_MS,
    hydrated,
    hydration_outcome,
    store_platform,
)
from demo.loop import ACTIONS, LOOP_TOPICS, LoopOutcome, loop_outcome
from demo.simulation import (
    MAX_ORDERS,
    MIN_ORDERS,
    STORE_SPECS,
    DemoRequest,
    DemoStore,
    Expectation,
    Simulation,
    demo_registry,
    expected_outcome,
    run_simulation,
)
from demo.tables import (
    as_json,
    invoice_previews,
    invoice_problems,
    store_tables,
    table_problems,
    wait_sink_caught_up,
)
from infra.process import Child, port_in_use, wait_until_ok
from infra.supervisor import revloop_command
from revloop.crypto import CryptoError, SecretBox, new_master_key
from revloop.files import write_private
from revloop.kafka import (
    consumer_config,
    ensure_topics,
    high_watermarks,
    is_retriable,
    read_ranges,
    serde_for,
)
from revloop.settings import Settings, get_settings
from revloop.stores import StoreRegistry, new_api_key, normalize_identity
from schemas.serde import AvroSerde, SerdeError
from schemas.topics import topic
from sinks.postgres.migrate import upgrade

__all__ = ["DemoFailed", "DemoState", "demo_command", "ensure_demo_state", "run_demo"]

RAW: Final = topic("raw.webhooks.v1")
RAW_TOPIC: Final = RAW.name
DEAD_LETTERS: Final = topic("ops.dead-letters.v1").name
HYDRATION_REQUESTS: Final = topic("ingest.hydration-requests.v1").name
OUTPUT_TOPICS: Final = (
    "commerce.orders.v1",
    "commerce.products.v1",
    "commerce.inventory-levels.v1",
    "commerce.customers.v1",
    "marketing.touchpoints.v1",
    "marketing.campaign-product-links.v1",
    HYDRATION_REQUESTS,
    DEAD_LETTERS,
)
CONCURRENCY: Final = 8
READY_TIMEOUT: Final = 60.0
_KEY_ID: Final = "demo"


class DemoFailed(Exception):
    """The demo could not run, or the pipeline did not do what it should have."""


# --- the demo's own registry -------------------------------------------------------------------


@dataclass(frozen=True)
class DemoState:
    """What ``<state_dir>/demo`` holds: the master key, the customer-key salt, the registry
    (``stores.json``, secrets encrypted) and the feed API keys (``api-keys.json``)."""

    directory: Path
    master_keys: str = field(repr=False)
    customer_salt: str = field(repr=False)
    stores: tuple[DemoStore, ...]

    @property
    def stores_file(self) -> Path:
        return self.directory / "stores.json"

    def secret_box(self) -> SecretBox:
        """Decrypts ``stores.json`` (as ingest does with ``REVLOOP_MASTER_KEYS``)."""
        return _box(self.master_keys, self.directory / "master-keys")

    def environment(self, port: int) -> dict[str, str]:
        """What ``revloop ingest`` and ``revloop normalize`` need to serve these stores."""
        return {
            "REVLOOP_STORES_FILE": str(self.stores_file),
            "REVLOOP_MASTER_KEYS": self.master_keys,
            "REVLOOP_CUSTOMER_KEY_SALT": self.customer_salt,
            "REVLOOP_INGEST_PORT": str(port),
        }


def ensure_demo_state(directory: Path) -> DemoState:
    """Load the demo's registry from ``directory``, making whatever is missing: a master key and
    a salt (once, kept), and for each demo store a webhook secret and an API key. Files are 0600
    in a 0700 directory."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    master_keys = _read_or_create(directory / "master-keys", lambda: new_master_key(_KEY_ID))
    salt = _read_or_create(directory / "customer-key-salt", lambda: secrets.token_urlsafe(32))
    box = _box(master_keys, directory / "master-keys")
    stores_file = directory / "stores.json"
    registry = StoreRegistry.load(stores_file, box) if stores_file.exists() else StoreRegistry()
    keys_file = directory / "api-keys.json"
    keys: dict[str, str] = json.loads(keys_file.read_text()) if keys_file.exists() else {}
    stores = []
    for spec in STORE_SPECS:
        known = registry.get(spec.store_id)
        usable = (
            known is not None
            and known.platform == spec.platform
            and known.identity == normalize_identity(spec.platform, spec.identity)
            and known.currency == spec.currency
        )
        secret = (
            known.secrets[0].reveal()
            if known is not None and usable
            else secrets.token_urlsafe(32).encode()
        )
        key = keys.get(spec.store_id)
        if key is None or known is None or not usable or not known.accepts_api_key(key):
            key = keys[spec.store_id] = new_api_key(spec.store_id)
        stores.append(DemoStore(spec, secret, key))
    for store in demo_registry(stores):
        registry = registry.with_store(store)
    registry.save(stores_file, box)
    write_private(keys_file, (json.dumps(keys, indent=2) + "\n").encode())
    return DemoState(directory, master_keys, salt, tuple(stores))


def _read_or_create(path: Path, make: Any) -> str:
    if path.exists():
        os.chmod(path, 0o600)
        value = path.read_text().strip()
        if value:
            return value
    value = str(make())
    write_private(path, (value + "\n").encode())
    return value


def _box(master_keys: str, where: Path) -> SecretBox:
    key_id, _, encoded = master_keys.partition(":")
    try:
        return SecretBox({key_id: base64.b64decode(encoded, validate=True)}, key_id)
    except (CryptoError, binascii.Error, ValueError) as exc:
        raise DemoFailed(f"{where} does not hold a usable master key ({exc})") from None


# --- subprocesses ------------------------------------------------------------------------------


def _child(command: str, env: Mapping[str, str], log_path: Path) -> Child:
    """``revloop <command>``, stopped with SIGTERM so ingest flushes its producer and the
    normalizer leaves its group (a killed member would hold its partitions until the session
    times out)."""
    return Child(revloop_command(*command.split()), env=env, log_path=log_path)


def _tail(child: Child) -> str:
    return "\n".join(f"  | {line}" for line in child.tail().splitlines()) or "  | (empty)"


def _check(children: Sequence[Child]) -> None:
    for child in children:
        ended = child.how_it_ended()
        if ended is not None:
            raise DemoFailed(
                f"`{' '.join(child.argv[2:])}` {ended}. "
                f"The end of its log ({child.log_path}):\n{_tail(child)}"
            )


def _require_free_port(host: str, port: int) -> None:
    # Otherwise /readyz could be answered by whatever already listens there.
    if port_in_use(host, port):
        raise DemoFailed(f"{host}:{port} is in use; pick another with --port")


def _wait_ready(base_url: str, ingest: Child, children: Sequence[Child], timeout: float) -> None:
    if not wait_until_ok(f"{base_url}/readyz", timeout, check=lambda: _check(children)):
        raise DemoFailed(
            f"ingest did not answer 200 on {base_url}/readyz within {timeout:.0f}s. "
            f"The end of its log:\n{_tail(ingest)}"
        )


# --- Kafka -------------------------------------------------------------------------------------


def _watermarks(
    consumer: Consumer, names: Sequence[str], prefix: str
) -> dict[tuple[str, int], int]:
    """High watermarks of the catalogue topics ``names``, read under ``prefix``."""
    return {
        (name, partition): high
        for name in names
        for partition, high in high_watermarks(consumer, prefix + name).items()
    }


def _marks_reader(settings: Settings) -> Consumer:
    """Reads the marks the demo counts between: high watermarks, hence read_uncommitted. Under
    read_committed the broker answers the last stable offset instead, which stops before any
    transaction whose commit marker the partition does not have yet. The normalizer's events
    and its raw offsets commit in one transaction, but Kafka does not make them visible at one
    instant (the group coordinator writes the offsets' marker itself, apart from the output
    partitions' markers), so the group can look caught up while its last events are still
    unmarked: end marks read then would leave those events out. Each event is acknowledged
    before its transaction commits, so it is below the high watermark by then, and
    :func:`_read_between` (read_committed) waits until it can be read."""
    return Consumer(
        consumer_config(settings, "revloop.demo.unused", **{"isolation.level": "read_uncommitted"})
    )


def _normalizer_backlog(settings: Settings, partitions: Sequence[int]) -> int:
    """Raw records the normalizer's group has not committed past yet (0 when the broker cannot
    say yet: on a new broker the offsets topic appears with the first group)."""
    reader = Consumer(
        consumer_config(settings, settings.normalizer_group_id)
    )  # reads offsets, never subscribes
    try:
        tps = [TopicPartition(settings.topic_name(RAW), p) for p in partitions]
        backlog = 0
        for tp in reader.committed(tps, timeout=10):
            low, high = reader.get_watermark_offsets(tp, timeout=10)
            backlog += max(0, high - max(tp.offset, low))
        return backlog
    except KafkaException:
        return 0
    finally:
        reader.close()


def _wait_caught_up(
    settings: Settings,
    targets: Mapping[int, int],
    children: Sequence[Child],
    timeout: float,
    console: Console,
    *,
    group_id: str,
    name: str,
    what: str,
    child: Child,
) -> None:
    """Until ``group_id`` has committed past ``targets`` (partition of topic ``name`` →
    offset); ``what`` is the process in that group, and ``child`` it."""
    if not targets:
        return
    # Never subscribes: it only reads the group's committed offsets.
    reader = Consumer(consumer_config(settings, group_id))
    deadline = time.monotonic() + timeout
    group = settings.topic_prefix + group_id
    try:
        with console.status(f"waiting for {what} to catch up") as status:
            while True:
                _check(children)
                try:
                    committed = reader.committed(
                        [TopicPartition(settings.topic_name(topic(name)), p) for p in targets],
                        timeout=10,
                    )
                except KafkaException as exc:
                    if not is_retriable(exc) or time.monotonic() > deadline:
                        raise
                    time.sleep(0.3)
                    continue
                behind = sum(max(0, targets[tp.partition] - max(tp.offset, 0)) for tp in committed)
                if behind == 0:
                    return
                status.update(f"waiting for {what}: {behind} records of {name} to go")
                if time.monotonic() > deadline:
                    raise DemoFailed(
                        f"{what} is still {behind} records of {name} behind after "
                        f"{timeout:.0f}s (a backlog from earlier traffic, or another "
                        f"member of group {group!r} that is stuck?). "
                        f"The end of its log:\n{_tail(child)}"
                    )
                time.sleep(0.3)
    finally:
        reader.close()


def _skip_to(
    settings: Settings, group_id: str, name: str, marks: Mapping[tuple[str, int], int]
) -> None:
    """Moves ``group_id`` on to ``marks`` of topic ``name`` where it is behind them, before its
    process starts: the demo's hydrator reads this run's requests, not those of the runs before
    (their stores' records are gone with their emulators). If the group cannot be moved (a
    member of it still runs), it reads on from where it is."""
    full = settings.topic_name(topic(name))
    wanted = {p: offset for (t, p), offset in marks.items() if t == name}
    consumer = Consumer(consumer_config(settings, group_id))  # never subscribes
    try:
        committed = consumer.committed([TopicPartition(full, p) for p in wanted], timeout=10)
        behind = [
            TopicPartition(full, tp.partition, wanted[tp.partition])
            for tp in committed
            if tp.offset < wanted[tp.partition]
        ]
        if behind:
            consumer.commit(offsets=behind, asynchronous=False)
    except KafkaException:
        pass
    finally:
        consumer.close()


def _ends(
    settings: Settings,
    name: str,
    start: Mapping[tuple[str, int], int],
    end: Mapping[tuple[str, int], int],
) -> dict[int, int]:
    """Partition → the offset after the last record of topic ``name`` from ``start`` up to
    ``end``: where a consumer that processed them all commits (a transaction's marker takes an
    offset after its records, which nobody commits past until more come)."""
    prefix = settings.topic_prefix
    ranges = {
        (prefix + t, p): (start.get((t, p), 0), offset)
        for (t, p), offset in end.items()
        if t == name and offset > start.get((t, p), 0)
    }
    if not ranges:
        return {}
    consumer = Consumer(consumer_config(settings, f"revloop.demo.reader.{secrets.token_hex(4)}"))
    found: dict[int, int] = {}
    try:
        for message in read_ranges(consumer, ranges, timeout=60):
            partition, offset = message.partition(), message.offset()
            if partition is not None and offset is not None:
                found[partition] = max(found.get(partition, 0), offset + 1)
    except TimeoutError as exc:
        raise DemoFailed(str(exc)) from None
    finally:
        consumer.close()
    return found


def _read_between(
    settings: Settings,
    serde: AvroSerde,
    start: Mapping[tuple[str, int], int],
    end: Mapping[tuple[str, int], int],
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every committed record from ``start`` up to ``end`` (by catalogue name), decoded, as
    (catalogue name, value)."""
    prefix = settings.topic_prefix
    ranges = {(prefix + t, p): (start.get((t, p), 0), offset) for (t, p), offset in end.items()}
    consumer = Consumer(consumer_config(settings, f"revloop.demo.reader.{secrets.token_hex(4)}"))
    try:
        for message in read_ranges(consumer, ranges, timeout=60):
            name = (message.topic() or "").removeprefix(prefix)
            try:
                yield name, serde.decode(message.value() or b"").value
            except SerdeError:
                continue
    except TimeoutError as exc:
        raise DemoFailed(str(exc)) from None
    finally:
        consumer.close()


# --- sending -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sent:
    request: DemoRequest
    status: int | None
    """None when no answer came back at all."""
    answer: str


async def _send_all(base_url: str, requests: Sequence[DemoRequest]) -> list[Sent]:
    """Each store's requests in the story's order, the stores side by side. Platforms do not
    promise order, and ingest and the processors take any (the tests shuffle); in order, the
    story's sell-outs and restocks reach the breaker as they happened, so the demo can hold
    the worker's answers to its table."""
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    by_store: dict[str, list[int]] = {}
    for index, request in enumerate(requests):
        by_store.setdefault(request.store_id, []).append(index)
    sent: list[Sent | None] = [None] * len(requests)

    async with httpx.AsyncClient(base_url=base_url, timeout=15.0, limits=limits) as client:

        async def send(request: DemoRequest) -> Sent:
            try:
                response = await client.request(
                    request.method, request.path, content=request.body, headers=request.headers
                )
            except httpx.HTTPError as exc:
                return Sent(request, None, f"{type(exc).__name__}: {exc}")
            return Sent(request, response.status_code, response.text[:500])

        async def send_in_order(indexes: list[int]) -> None:
            for index in indexes:
                sent[index] = await send(requests[index])

        await asyncio.gather(*(send_in_order(indexes) for indexes in by_store.values()))
    return [s for s in sent if s is not None]


# --- the run -----------------------------------------------------------------------------------


@dataclass
class DemoReport:
    """What happened, as printed and as written to ``last-run.json``."""

    seed: int
    orders: int
    simulated_from: str
    simulated_to: str
    requests: dict[str, dict[str, int]]
    """Label (platform and topic) → status code (or ``no answer``) → count."""
    events: dict[str, dict[str, int]]
    """Topic → {"expected": n, "written": n, "hydrated": n, "unexpected": n}."""
    dead_letters: list[dict[str, str]]
    duplicates: list[str]
    stock: list[dict[str, Any]]
    loop: dict[str, Any]
    """What the worker made of the run (:class:`demo.loop.LoopOutcome`)."""
    problems: list[str]
    seconds: float
    tables: dict[str, Any] = field(default_factory=dict)
    """This run's orders in Postgres and the ledger (:mod:`demo.tables`)."""
    invoices: list[dict[str, Any]] = field(default_factory=list)
    """Each store's invoice preview for the run's periods, with its proof's sums."""
    ads: list[dict[str, Any]] = field(default_factory=list)
    """Each breaker action of the run as `revloop connect ads` carried it out."""
    hydration: dict[str, Any] = field(default_factory=dict)
    """What `revloop connect hydrate` made of BigCommerce's thin webhooks
    (:class:`demo.hydration.Hydration`)."""

    @property
    def ok(self) -> bool:
        return not self.problems


def run_demo(
    settings: Settings,
    *,
    seed: int,
    orders: int,
    port: int,
    directory: Path,
    keep_running: bool = False,
    timeout: float = 120.0,
    console: Console | None = None,
) -> DemoReport:
    """Runs the demo end to end and returns its report; raises DemoFailed when something did
    not work (a refused request, a dead subprocess, a wrong count)."""
    console = console or Console()
    began = time.monotonic()
    state = ensure_demo_state(directory)
    host = settings.ingest_host
    base_url = f"http://{host}:{port}"
    _require_free_port(host, port)
    try:
        ensure_topics(settings)
    except (ConnectionError, KafkaException, TimeoutError) as exc:
        raise DemoFailed(
            f"cannot prepare the topics on {settings.bootstrap_servers}: {exc} "
            "(is the local stack up? `revloop infra up`)"
        ) from None
    logs = directory / "logs"
    logs.mkdir(mode=0o700, exist_ok=True)
    # The children read their settings from the environment: the same broker as ours, whatever
    # told us which one it is (the environment, .env, or the caller's Settings).
    env = {
        **os.environ,
        **state.environment(port),
        "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "REVLOOP_TOPIC_PREFIX": settings.topic_prefix,
        "REVLOOP_INGEST_HOST": host,
    }
    if settings.schema_registry_url:
        env["SCHEMA_REGISTRY_URL"] = settings.schema_registry_url
    serde = serde_for(settings)
    marks_reader = _marks_reader(settings)
    with ExitStack() as stack:
        stack.callback(marks_reader.close)
        start_marks = _watermarks(
            marks_reader, [RAW_TOPIC, *OUTPUT_TOPICS, *LOOP_TOPICS], settings.topic_prefix
        )
        backlog = _normalizer_backlog(settings, [p for t, p in start_marks if t == RAW_TOPIC])
        if backlog > 10_000:
            console.print(
                f"[yellow]note:[/] group {settings.topic_prefix}{settings.normalizer_group_id} has "
                f"{backlog} raw "
                "records it has not normalized yet; the normalizer works through them before "
                f"this run's (it waits up to --timeout {timeout:.0f}s)"
            )
        try:
            upgrade(settings.dsn)
        except (OSError, sqlalchemy.exc.OperationalError) as exc:
            raise DemoFailed(
                f"cannot prepare the database: {exc} (is the local stack up? `revloop infra up`)"
            ) from None
        platforms = stack.enter_context(ad_platforms())
        env.update(platforms.env)
        bigcommerce = next(s for s in state.stores if s.platform == "bigcommerce")
        store_api = stack.enter_context(
            store_platform(
                bigcommerce.spec.identity, bigcommerce.spec.currency, bigcommerce.spec.name
            )
        )
        env.update(store_api.env)
        _skip_to(settings, HYDRATOR_GROUP, HYDRATION_REQUESTS, start_marks)
        # Stopped in reverse: ingest first, so nothing arrives for a normalizer that is leaving,
        # and the normalizer before the hydrator that reads its requests.
        ads = _child("connect ads", env, logs / "connect-ads.log")
        stack.callback(ads.stop)
        sink = _child("sink postgres", env, logs / "sink-postgres.log")
        stack.callback(sink.stop)
        worker = _child("worker", env, logs / "worker.log")
        stack.callback(worker.stop)
        hydrate = _child("connect hydrate", env, logs / "connect-hydrate.log")
        stack.callback(hydrate.stop)
        normalizer = _child("normalize", env, logs / "normalize.log")
        stack.callback(normalizer.stop)
        ingest = _child("ingest", env, logs / "ingest.log")
        stack.callback(ingest.stop)
        children = (normalizer, worker, ingest, sink, ads, hydrate)
        with console.status(f"starting ingest on {base_url}, the normalizer and the worker"):
            _wait_ready(base_url, ingest, children, READY_TIMEOUT)

        now = datetime.now(UTC)
        # The BigCommerce store's records go to the emulator as the story tells them.
        simulation = run_simulation(
            seed, orders, stores=state.stores, now=now, bigcommerce=store_api.bigcommerce
        )
        platforms.add_campaigns(
            [
                link
                for request in simulation.requests
                if request.topic == "campaigns"
                for link in json.loads(request.body)["links"]
            ]
        )
        registry = demo_registry(state.stores)
        expected = expected_outcome(
            simulation.requests, registry, state.customer_salt.encode(), now
        )
        with console.status(f"sending {len(simulation.requests)} requests to {base_url}"):
            sent = asyncio.run(_send_all(base_url, simulation.requests))
        _check(children)
        refused = [s for s in sent if s.status is None or not 200 <= s.status < 300]
        if refused:
            _print_requests(console, sent)
            lines = "\n".join(
                f"  {s.request.label}: {s.status or 'no answer'} {s.answer}" for s in refused[:5]
            )
            raise DemoFailed(
                f"{len(refused)} of {len(sent)} requests were not answered 2xx, e.g.:\n{lines}\n"
                f"The end of ingest's log:\n{_tail(ingest)}"
            )

        raw_end = _watermarks(marks_reader, [RAW_TOPIC], settings.topic_prefix)
        targets = {
            p: offset for (_, p), offset in raw_end.items() if offset > start_marks[(RAW_TOPIC, p)]
        }
        _wait_caught_up(
            settings,
            targets,
            children,
            timeout,
            console,
            group_id=settings.normalizer_group_id,
            name=RAW_TOPIC,
            what="the normalizer",
            child=normalizer,
        )
        requests_end = _watermarks(marks_reader, [HYDRATION_REQUESTS], settings.topic_prefix)
        _wait_caught_up(
            settings,
            _ends(settings, HYDRATION_REQUESTS, start_marks, requests_end),
            children,
            timeout,
            console,
            group_id=HYDRATOR_GROUP,
            name=HYDRATION_REQUESTS,
            what="the hydrator",
            child=hydrate,
        )
        end_marks = _watermarks(marks_reader, OUTPUT_TOPICS, settings.topic_prefix)
        with console.status("reading back what this run wrote"):
            records = list(_read_between(settings, serde, start_marks, end_marks))
        placed = _run_orders(records, expected)
        hydration, hydration_problems = hydration_outcome(
            bigcommerce.store_id, store_api.bigcommerce, records, expected.raw_event_ids
        )
        loop = _wait_for_the_loop(
            settings,
            serde,
            marks_reader,
            start_marks,
            simulation,
            placed,
            children,
            timeout,
            console,
        )
        with console.status("waiting for the ad executor: Meta and Google Ads"):
            now_marks = _watermarks(marks_reader, [ACTIONS], settings.topic_prefix)
            breaker_actions = [
                value
                for name, value in _read_between(settings, serde, start_marks, now_marks)
                if name == ACTIONS
            ]
            ad_rows, ad_problems = ad_outcome(
                settings, platforms, breaker_actions, lambda: _check(children), timeout
            )
        with console.status("waiting for the sink: tables and the ledger"):
            wait_sink_caught_up(settings, marks_reader, lambda: _check(children), timeout)
        tables = store_tables(settings, placed)
        # Settlement reads each store's contract from the demo's own stores file.
        demo_settings = settings.model_copy(update={"stores_file": state.stores_file})
        invoices = invoice_previews(
            demo_settings, [s.store_id for s in state.stores], simulation.start
        )
        report = _report(simulation, expected, sent, iter(records), loop, time.monotonic() - began)
        report.tables = as_json(tables)
        worker_incremental = {s: v["incremental_minor"] for s, v in report.loop["scores"].items()}
        report.problems += table_problems(tables, worker_incremental)
        report.invoices = [vars(i) for i in invoices]
        report.ads = [vars(row) for row in ad_rows]
        report.problems += ad_problems
        report.hydration = asdict(hydration)
        report.problems += hydration_problems
        report.problems += invoice_problems(invoices)
        _print_summary(console, report, sent)
        write_private(
            directory / "last-run.json", (json.dumps(asdict(report), indent=2) + "\n").encode()
        )
        if not report.ok:
            raise DemoFailed(
                "the pipeline did not do what it should have:\n  - "
                + "\n  - ".join(report.problems)
                + f"\nThe end of the normalizer's log:\n{_tail(normalizer)}"
            )
        if keep_running:
            _keep_running(console, state, base_url, children, settings)
    return report


def _run_orders(
    records: Sequence[tuple[str, dict[str, Any]]], expected: Expectation
) -> dict[str, dict[str, str]]:
    """Store id → order id → currency: the orders this run placed (created or paid), those of
    the webhooks and those the hydrator read for the run's thin ones."""
    orders: dict[str, dict[str, str]] = {}
    wanted = expected.events.get("commerce.orders.v1", frozenset())
    for name, value in records:
        if (
            name == "commerce.orders.v1"
            and value["kind"] in ("created", "paid")
            and (value["envelope"]["event_id"] in wanted or hydrated(value, expected.raw_event_ids))
        ):
            store = orders.setdefault(value["envelope"]["store_id"], {})
            store[value["order_id"]] = value["currency"]
    return orders


def _wait_for_the_loop(
    settings: Settings,
    serde: AvroSerde,
    marks_reader: Consumer,
    start_marks: Mapping[tuple[str, int], int],
    simulation: Simulation,
    orders: Mapping[str, Mapping[str, str]],
    children: Sequence[Child],
    timeout: float,
    console: Console,
) -> LoopOutcome:
    """Until the worker has answered every sell-out and restock and scored every order (or the
    timeout passes: what is missing then is reported)."""
    deadline = time.monotonic() + timeout
    with console.status("waiting for the worker: pauses, resumes and scores") as status:
        while True:
            _check(children)
            end = _watermarks(marks_reader, LOOP_TOPICS, settings.topic_prefix)
            records = list(_read_between(settings, serde, start_marks, end))
            outcome = loop_outcome(simulation.stock, orders, records)
            if time.monotonic() > deadline:
                return outcome
            if not outcome.missing:
                # Answered; corrections (a late touch re-scores an order) may still be on their
                # way: done once a second and a half brings nothing more.
                time.sleep(1.5)
                later = _watermarks(marks_reader, LOOP_TOPICS, settings.topic_prefix)
                if later == end:
                    return outcome
                continue
            status.update(f"waiting for the worker: {len(outcome.missing)} answers to go")
            time.sleep(1.0)


def _report(
    simulation: Simulation,
    expected: Expectation,
    sent: Sequence[Sent],
    records: Iterator[tuple[str, dict[str, Any]]],
    loop: LoopOutcome,
    seconds: float,
) -> DemoReport:
    written: Counter[str] = Counter()
    unexpected: Counter[str] = Counter()
    hydrated_ids: dict[str, set[str]] = {}
    dead: list[dict[str, str]] = []
    for name, value in records:
        envelope = value.get("envelope", {})
        if name == DEAD_LETTERS:
            if value.get("raw_event_id") in expected.raw_event_ids:
                dead.append(
                    {
                        "store_id": str(envelope.get("store_id")),
                        "reason": str(value.get("error_type")),
                        "message": str(value.get("error_message")),
                    }
                )
            continue
        if envelope.get("event_id") in expected.events.get(name, frozenset()):
            written[name] += 1
        elif hydrated(value, expected.raw_event_ids):
            # Each read of an order repeats its refunds so far: one event each, by id.
            hydrated_ids.setdefault(name, set()).add(envelope["event_id"])
        elif set(envelope.get("caused_by") or ()) & expected.raw_event_ids:
            unexpected[name] += 1
    requests: dict[str, dict[str, int]] = {}
    for s in sent:
        answers = requests.setdefault(s.request.label, {})
        key = str(s.status) if s.status is not None else "no answer"
        answers[key] = answers.get(key, 0) + 1
    events = {
        name: {
            "expected": len(expected.events.get(name, ())),
            "written": written[name],
            "hydrated": len(hydrated_ids.get(name, ())),
            "unexpected": unexpected[name],
        }
        for name in OUTPUT_TOPICS
        if name != DEAD_LETTERS
    }
    problems = [f"ingest would refuse {label} ({reason})" for label, reason in expected.rejected]
    problems += [f"{label} was dead-lettered ({reason})" for label, reason in expected.dead_letters]
    problems += [
        f"{d['store_id']}: a delivery was dead-lettered ({d['reason']}: {d['message']})"
        for d in dead
    ]
    for name, counts in events.items():
        if counts["written"] != counts["expected"] or counts["unexpected"]:
            problems.append(
                f"{name}: expected {counts['expected']} events, found {counts['written']}"
                + (f" and {counts['unexpected']} unexpected ones" if counts["unexpected"] else "")
            )
    problems += [f"the worker: {m}" for m in loop.missing] + loop.problems
    return DemoReport(
        seed=simulation.seed,
        orders=sum(simulation.orders.values()),
        simulated_from=simulation.start.isoformat(),
        simulated_to=simulation.end.isoformat(),
        requests=requests,
        events=events,
        dead_letters=dead,
        duplicates=list(expected.duplicates),
        stock=[{**asdict(m), "at": m.at.isoformat()} for m in simulation.stock],
        loop=asdict(loop),
        problems=problems,
        seconds=round(seconds, 1),
    )


# --- output ------------------------------------------------------------------------------------


def _hhmm(iso: str) -> str:
    return datetime.fromisoformat(iso).astimezone(UTC).strftime("%H:%M")


def _print_requests(console: Console, sent: Sequence[Sent]) -> None:
    table = Table(title="Requests", title_justify="left", show_edge=False)
    table.add_column("platform")
    table.add_column("topic / feed")
    table.add_column("sent", justify="right")
    table.add_column("answers")
    rows: dict[tuple[str, str], Counter[str]] = {}
    for s in sent:
        answers = rows.setdefault((s.request.platform, s.request.topic), Counter())
        answers[str(s.status) if s.status is not None else "no answer"] += 1
    for (platform, topic_name), answers in sorted(rows.items()):
        text = ", ".join(
            f"[{'green' if code.startswith('2') else 'red'}]{code}[/] x{count}"
            for code, count in sorted(answers.items())
        )
        table.add_row(platform, topic_name, str(sum(answers.values())), text)
    console.print(table)


def _print_summary(console: Console, report: DemoReport, sent: Sequence[Sent]) -> None:
    console.print()
    console.print(
        f"[bold]revloop demo[/]: seed {report.seed}, {report.orders} orders at "
        f"{len(STORE_SPECS)} stores, simulated {_hhmm(report.simulated_from)} to "
        f"{_hhmm(report.simulated_to)} UTC; {len(sent)} requests, done in {report.seconds:.1f}s"
    )
    console.print()
    _print_requests(console, sent)
    console.print()

    events = Table(
        title="Canonical events written by this run", title_justify="left", show_edge=False
    )
    events.add_column("topic")
    events.add_column("records")
    events.add_column("expected", justify="right")
    events.add_column("written", justify="right")
    events.add_column("hydrated", justify="right")
    for name, counts in report.events.items():
        good = counts["written"] == counts["expected"] and not counts["unexpected"]
        mark = "[green]✓[/]" if good else "[red]✗[/]"
        events.add_row(
            name,
            ", ".join(v.rsplit(".", 1)[-1] for v in topic(name).values),
            str(counts["expected"]),
            f"{counts['written']} {mark}",
            str(counts["hydrated"] or ""),
        )
    console.print(events)
    console.print(
        "  Expected and written: the events of the webhooks and feeds, by id. Hydrated: what "
        "`revloop connect hydrate` read from the store's API for BigCommerce's thin webhooks "
        "(their requests are the ones on ingest.hydration-requests.v1), counted by cause."
    )
    console.print()
    _print_hydration(console, report.hydration)

    if report.dead_letters:
        console.print(f"[red]Dead letters: {len(report.dead_letters)}[/]")
        for letter in report.dead_letters[:10]:
            console.print(f"  {letter['store_id']}: {letter['reason']}: {letter['message']}")
    else:
        console.print("Dead letters: [green]0[/]")
    retried = [s.request.label for s in sent if s.request.retry]
    repeats = Counter(report.duplicates)
    for label in retried:
        repeats[label] -= 1
    console.print(
        f"Duplicates: {len(retried)} deliveries sent twice ({', '.join(retried)}); ingest "
        "answered 200 with the same event id and the normalizer wrote nothing for the repeat."
    )
    same_hash = sum(n for n in repeats.values() if n > 0)
    if same_hash:
        console.print(
            f"  {same_hash} BigCommerce callbacks had the same data (so the same hash) as an "
            "earlier one and were dropped as repeats too."
        )
    console.print()

    stock = Table(
        title="Stock, and the circuit breaker's answer (actions.circuit-breaker.v1)",
        title_justify="left",
        show_edge=False,
    )
    stock.add_column("store")
    stock.add_column("variant")
    stock.add_column("sold out")
    stock.add_column("ads paused")
    stock.add_column("back in stock")
    stock.add_column("ads resumed")
    open_rows: dict[tuple[str, str], list[str]] = {}
    rows: list[list[str]] = []
    for moment, answer in zip(report.stock, report.loop["stock"], strict=True):
        key = (moment["store_id"], moment["sku"])
        answered = _answer(answer)
        if moment["kind"] == "sold_out":
            when = f"{_hhmm(moment['at'])} ({moment['cause']})"
            row = [moment["store_id"], moment["product"], when, answered, "", ""]
            open_rows[key] = row
            rows.append(row)
        elif key in open_rows:
            row = open_rows.pop(key)
            row[4] = f"{_hhmm(moment['at'])} ({moment['level']} units)"
            row[5] = answered
    for row in rows:
        stock.add_row(*row)
    console.print(stock)
    for whole in report.loop["whole_products"]:
        console.print(
            f"  {whole['store_id']}: product {whole['product_id']}'s own breaker (every variant "
            f"it had levels for sold out): {whole['action']} at {_hhmm(whole['at'])}"
        )
    console.print()

    scores = Table(
        title="Attribution (analytics.attribution-scores.v1)", title_justify="left", show_edge=False
    )
    for column in ("store", "orders", "scored", "incremental", "incremental revenue"):
        scores.add_column(column, justify="left" if column == "store" else "right")
    scores.add_column("reversals", justify="right")
    for store_id, row in report.loop["scores"].items():
        scores.add_row(
            store_id,
            str(row["orders"]),
            str(row["scored"]),
            str(row["incremental"]),
            _money(row["incremental_minor"], row["currency"]),
            str(row["reversals"]),
        )
    console.print(scores)
    console.print(
        "  An order is incremental at confidence 7000 bp or above; refunds and corrections are "
        "reversing scores, so the revenue shown is what stands."
    )
    flows = ", ".join(f"{n} {flow}" for flow, n in sorted(report.loop["triggers"].items()))
    console.print(f"Lifecycle triggers (lifecycle.triggers.v1): {flows or 'none'}")
    console.print()
    _print_ads(console, report.ads)
    tables = Table(
        title="In Postgres (revloop sink postgres) and the billing ledger",
        title_justify="left",
        show_edge=False,
    )
    for column in ("store", "orders", "incremental (orders table)", "ledger entries"):
        tables.add_column(column, justify="left" if column == "store" else "right")
    tables.add_column("ledger net", justify="right")
    tables.add_column("chain", justify="left")
    for store_id, row in report.tables.items():
        ok = row["chain_holds"] and row["balances_sum_to_zero"]
        tables.add_row(
            store_id,
            f"{row['orders_found']} of {row['orders_expected']}",
            _money(row["incremental_minor"], row["currency"]),
            str(row["ledger_entries"]),
            _money(row["ledger_minor"], row["currency"]),
            "[green]holds ✓[/]" if ok else "[red]broken ✗[/]",
        )
    console.print(tables)
    console.print(
        "  The sink's standing incremental revenue and the ledger's net equal the scores'; "
        "`revloop ledger verify` walks the chains."
    )
    console.print()
    bills = Table(
        title="Invoices (revloop settle --preview: the periods are still running)",
        title_justify="left",
        show_edge=False,
    )
    columns = (
        "store",
        "period",
        "plan",
        "expected",
        "billed on",
        "fee",
        "proof: sum",
        "proof: fee",
    )
    for column in columns:
        bills.add_column(column, justify="left" if column in columns[:3] else "right")
    for bill in report.invoices:
        agree = (bill["proof_amount_minor"], bill["proof_fee_minor"]) == (
            bill["amount_minor"],
            bill["fee_minor"],
        )
        mark = " ✓" if agree else " ✗"
        expected = bill["expected_minor"]
        bills.add_row(
            bill["store_id"],
            bill["period"],
            bill["plan"].replace("_", " "),
            "" if expected is None else _money(expected, bill["currency"]),
            _money(bill["billed_on_minor"], bill["currency"]),
            _money(bill["fee_minor"], bill["currency"]),
            _money(bill["proof_amount_minor"], bill["currency"]) + mark,
            _money(bill["proof_fee_minor"], bill["currency"]) + mark,
        )
    console.print(bills)
    console.print(
        "  One store on each plan (docs/ledger.md): demo-shopify pays 15% of attributed revenue "
        "above 3.0 x the ad spend its touches cost; demo-woo 20% of revenue above its baseline "
        "(the demo sets one at 80% of the month's revenue when the store has none); "
        "demo-bigcommerce 20% of net incremental revenue. "
        "The proof CSV has a row per order and sums to the invoice (its revenue or incremental "
        "revenue, and the fee). `revloop settle` bills a period once it is over."
    )
    console.print()
    if report.ok:
        console.print("[green]Every request was accepted and every expected event was written.[/]")


def _print_hydration(console: Console, hydration: Mapping[str, Any]) -> None:
    events = hydration["events"]
    orders = hydration["orders"]
    answered = hydration["answered"] == hydration["requests"]
    console.print(
        f"[bold]Hydration[/] (revloop connect hydrate, on a BigCommerce emulator): "
        f"{hydration['answered']} of {hydration['requests']} requests of "
        f"{hydration['store_id']} answered {'[green]✓[/]' if answered else '[red]✗[/]'}, with "
        f"{events['commerce.orders.v1']} order events, {events['commerce.products.v1']} "
        f"products, {events['commerce.customers.v1']} customers and "
        f"{events['commerce.inventory-levels.v1']} stock levels; {hydration['calls']} API calls, "
        f"{hydration['violations']} over its limit ({REQUESTS_PER_WINDOW} per "
        f"{WINDOW_MS // 1000} s)."
    )
    table = Table(
        title=f"BigCommerce orders, hydrated: {len(orders)} of {hydration['orders_held']} "
        "arrived with their totals and lines on commerce.orders.v1",
        title_justify="left",
        show_edge=False,
    )
    for column in ("order", "as of", "status", "total", "line items", "refunded"):
        table.add_column(column, justify="right" if column in ("total", "refunded") else "left")
    # The orders with the most to show (a refund, several lines), in the order they came.
    shown = sorted(
        orders, key=lambda o: (not o["refunded_minor"], -len(o["lines"]), o["order_id"])
    )[:EXAMPLES]
    for order in sorted(shown, key=lambda o: o["order_id"]):
        refunded = order["refunded_minor"]
        table.add_row(
            order["order_id"],
            _hhmm(order["at"]),
            order["status"],
            _money(order["total_minor"], order["currency"]),
            "\n".join(order["lines"]),
            _money(refunded, order["currency"]) if refunded else "",
        )
    console.print(table)
    if len(orders) > EXAMPLES:
        console.print(f"  ... and {len(orders) - EXAMPLES} more (all in last-run.json).")
    console.print(
        "  The store's webhooks carry ids only; the hydrator read each order (with its products "
        "and refunds), product and customer as the store holds it at the end of the day (as of: "
        "its last change), and took the stock levels the inventory webhooks announce."
    )
    console.print()


def _print_ads(console: Console, ads: Sequence[dict[str, Any]]) -> None:
    table = Table(
        title="Ads (revloop connect ads, on the Meta and Google Ads emulators)",
        title_justify="left",
        show_edge=False,
    )
    for column in ("store", "product", "breaker", "at", "calls", "changes made"):
        table.add_column(column, justify="right" if column == "calls" else "left")
    for ad in ads:
        failed = ad["outcome"].startswith("failed") or ad["outcome"] == "not done"
        changes = ", ".join(ad["changes"]) or (
            "none: " + ad["outcome"].removeprefix("applied; ")
            if "no account" in ad["outcome"]
            else "none: no campaign promotes it"
            if not ad["campaigns"]
            else "none: its ads were paused already"
        )
        table.add_row(
            ad["store_id"],
            ad["product_id"] + (f" ({ad['variant_id']})" if ad["variant_id"] else ""),
            ad["action"],
            _hhmm(ad["at"]),
            str(ad["calls"]),
            f"[red]{ad['outcome']}[/]" if failed else changes,
        )
    console.print(table)
    console.print(
        "  Each sell-out pauses the running ad sets (Meta) or campaigns (Google) of the campaigns "
        "promoting the product, and its restock resumes what the pause changed: the ad set its "
        "merchant had paused stays paused, and a campaign shared with a product still sold out "
        "waits for it. TikTok has no executor yet."
    )
    console.print()


def _money(minor: int, currency: str) -> str:
    """Minor units as the demo's currencies (two decimals) print them; integers throughout."""
    units, cents = divmod(abs(minor), 100)
    return f"{'-' if minor < 0 else ''}{units:,}.{cents:02d} {currency}"


def _answer(answer: dict[str, Any]) -> str:
    if answer["action_at"] is None:
        return "[red]none ✗[/]"
    return f"{_hhmm(answer['action_at'])} [green]✓[/]"


def _keep_running(
    console: Console, state: DemoState, base_url: str, children: Sequence[Child], settings: Settings
) -> None:
    prefix = settings.topic_prefix
    console.print()
    console.print(
        f"ingest:     {base_url}  (POST /webhooks/..., /events/...; GET /readyz, /metrics)"
    )
    console.print(
        f"normalizer: consuming {prefix}{RAW_TOPIC} as group {prefix}{settings.normalizer_group_id}"
    )
    console.print(
        f"hydrator:   consuming {prefix}{HYDRATION_REQUESTS} as group {prefix}{HYDRATOR_GROUP}"
    )
    console.print(
        f"registry:   {state.stores_file} (API keys in {state.directory / 'api-keys.json'})"
    )
    console.print(f"logs:       {state.directory / 'logs'}")
    console.print("Press Ctrl-C to stop them all.")
    try:
        while True:
            _check(children)
            time.sleep(0.5)
    except KeyboardInterrupt:
        console.print("stopping")


# --- the command -------------------------------------------------------------------------------


def _terminate(_signum: int, _frame: FrameType | None) -> None:
    # The children run in their own sessions; exiting through Python stops them too.
    raise SystemExit(143)


def demo_command(
    seed: int = typer.Option(7, help="Seed of the simulation: the same seed tells the same story."),
    orders: int = typer.Option(
        40, min=MIN_ORDERS, max=MAX_ORDERS, help="Orders across the three stores."
    ),
    keep_running: bool = typer.Option(
        False,
        "--keep-running",
        help="Leave ingest, the normalizer and the other processes up until Ctrl-C.",
    ),
    port: int | None = typer.Option(None, help="Ingest port (default REVLOOP_INGEST_PORT)."),
    state_dir: Annotated[
        Path | None,
        typer.Option(help="Where the demo keeps its registry and logs (default <state dir>/demo)."),
    ] = None,
    timeout: float = typer.Option(
        120.0,
        help="Seconds to wait for each stage: the normalizer, the hydrator, the worker, the sink.",
    ),
) -> None:
    """Simulate three stores (Shopify, WooCommerce, BigCommerce) and send their signed webhooks
    and ad touchpoints through ingest and the normalizer; print what came out."""
    settings = get_settings()
    console = Console()
    signal.signal(signal.SIGTERM, _terminate)
    try:
        run_demo(
            settings,
            seed=seed,
            orders=orders,
            port=port or settings.ingest_port,
            directory=state_dir or settings.state_dir / "demo",
            keep_running=keep_running,
            timeout=timeout,
            console=console,
        )
    except DemoFailed as exc:
        Console(stderr=True, highlight=False).print(f"error: {exc}", style="red", markup=False)
        raise typer.Exit(1) from None
    except KafkaException as exc:
        Console(stderr=True, highlight=False).print(
            f"error: Kafka at {settings.bootstrap_servers}: {exc}", style="red", markup=False
        )
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
