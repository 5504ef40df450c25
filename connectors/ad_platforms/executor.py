"""`revloop connect ads`: the circuit breaker's pauses and resumes, carried out on the ad
platforms (docs/connectors.md, "The ad executor").

It reads ``actions.circuit-breaker.v1`` (read_committed) and, for each promoting campaign on a
channel the store has connected, pauses or resumes its ad objects: a Meta campaign's ad sets,
a Google Ads campaign. What a pause or resume changes is decided by the holds
(:mod:`connectors.ad_platforms.holds`), kept in Postgres (``ad_holds``) under a lock per
object, since one campaign may be held by breakers of products in other partitions.

Crash safety: a pause writes its hold *before* calling the platform, and a resume calls the
platform *before* releasing its hold; an action is marked done (``ad_actions``) before its
offset is committed. So a process killed anywhere repeats at most a status call that sets what
is already set, and a redelivered action is skipped. An action that still fails after the
client's retries goes to ``ops.dead-letters.v1`` (the store, the call and why; no token) and
is marked failed; the next actions keep flowing.
"""

from __future__ import annotations

import hashlib
import logging
import signal
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from types import FrameType
from typing import Any, Protocol

import psycopg
import typer
from confluent_kafka import Consumer, KafkaException, Producer

from connectors.ad_platforms.google import GoogleAds, RefreshGrant
from connectors.ad_platforms.holds import Hold, holder_of, on_pause, on_resume
from connectors.ad_platforms.meta import MetaAds
from connectors.dead_letters import dead_letter
from connectors.http import Answer, ApiError, RetryPolicy
from connectors.metrics import ConnectorMetrics
from connectors.multichannel import MultichannelLock, journal_of, other_channels, skus_of
from connectors.notifications import notify
from connectors.store_apis.base import StoreApi
from connectors.store_apis.connect import store_api
from revloop.crypto import CryptoError, SecretBox
from revloop.ids import deterministic_id
from revloop.kafka import consumer_config, producer_config, serde_for
from revloop.metrics import serve_metrics
from revloop.settings import Settings, get_settings
from revloop.stores import Connection, LiveStoreRegistry, Store
from revloop.stores.model import AD_CHANNELS, NOTIFY
from schemas.serde import SerdeError
from schemas.topics import topic

log = logging.getLogger(__name__)

ACTIONS = "actions.circuit-breaker.v1"
CALLS = "ops.connector-calls.v1"
CALL = "dev.revloop.events.ConnectorCall"


class AdChannel(Protocol):
    """What the executor needs of an ad platform."""

    def objects(self, campaign_id: str) -> list[tuple[str, str]]:
        """The campaign's ad objects to pause, with their status now."""
        ...

    def set_running(self, object_id: str, running: bool) -> None: ...

    @property
    def calls(self) -> int: ...

    def take_journal(self) -> list[Answer]:
        """The calls made (each try) since the last take."""
        ...


class MetaChannel:
    """A Meta campaign's ad sets."""

    def __init__(self, api: MetaAds) -> None:
        self.api = api

    def objects(self, campaign_id: str) -> list[tuple[str, str]]:
        return [(a.adset_id, a.status) for a in self.api.adsets(campaign_id)]

    def set_running(self, object_id: str, running: bool) -> None:
        self.api.set_status(object_id, "ACTIVE" if running else "PAUSED")

    @property
    def calls(self) -> int:
        return self.api.client.calls

    def take_journal(self) -> list[Answer]:
        return self.api.client.take_journal()


class GoogleChannel:
    """A Google Ads campaign itself."""

    def __init__(self, api: GoogleAds) -> None:
        self.api = api

    def objects(self, campaign_id: str) -> list[tuple[str, str]]:
        return list(self.api.statuses([campaign_id]).items())

    def set_running(self, object_id: str, running: bool) -> None:
        self.api.set_status(object_id, "ENABLED" if running else "PAUSED")

    @property
    def calls(self) -> int:
        return self.api.client.calls

    def take_journal(self) -> list[Answer]:
        return self.api.client.take_journal()


def channel_for(settings: Settings, store: Store, connection: Connection) -> AdChannel:
    policy = RetryPolicy(
        attempts=settings.connect_retry_attempts, cap_seconds=settings.connect_backoff_cap_seconds
    )
    fields = connection.fields()
    if connection.channel == "meta":
        meta = MetaChannel(
            MetaAds(
                store.store_id,
                fields["token"],
                base_url=settings.meta_api_url,
                window_seconds=settings.meta_usage_window_seconds,
                policy=policy,
            )
        )
        meta.api.client.journal = []
        return meta
    refresh = (
        RefreshGrant(
            fields["refresh_token"],
            fields["client_id"],
            fields["client_secret"],
            oauth_url=settings.google_oauth_url,
        )
        if "refresh_token" in fields and "token" not in fields
        else None
    )
    google = GoogleChannel(
        GoogleAds(
            store.store_id,
            connection.account,
            fields.get("token"),
            fields["developer_token"],
            refresh=refresh,
            base_url=settings.google_ads_api_url,
            login_customer_id=fields.get("login_customer_id"),
            requests_per_second=settings.google_ads_requests_per_second,
            policy=policy,
        )
    )
    google.api.client.journal = []
    return google


@dataclass(frozen=True)
class Outcome:
    text: str
    calls: int
    changes: tuple[str, ...] = ()
    """The status changes made, as ``<channel>:<object> <status>``."""
    failure: ApiError | None = None
    answers: tuple[tuple[str, Answer], ...] = ()
    """Every call made for the action (each try), with its channel: the record of calls."""


class AdExecutor:
    def __init__(self, settings: Settings, stores: LiveStoreRegistry) -> None:
        self.settings, self.stores = settings, stores
        self.conn = psycopg.connect(
            settings.dsn, application_name="revloop-connect-ads", autocommit=True
        )
        self._channels: dict[tuple[str, str, str], AdChannel] = {}
        self._store_apis: dict[tuple[str, str, str], StoreApi] = {}
        self.lock = MultichannelLock(self.conn)

    def close(self) -> None:
        self.conn.close()

    def done(self, action_id: str) -> bool:
        found = self.conn.execute(
            "SELECT 1 FROM ad_actions WHERE action_id = %s", (action_id,)
        ).fetchone()
        return found is not None

    def handle(self, action: dict[str, Any]) -> Outcome:
        """Carry out one CircuitBreakerAction value; what happened."""
        envelope = action["envelope"]
        store_id, pause = envelope["store_id"], action["action"] == "pause"
        holder = holder_of(action)
        self.stores.refresh()
        store = self.stores.get(store_id)
        campaigns = action.get("campaigns") or [
            {"campaign_id": c, "channel": ""} for c in action["campaign_ids"]
        ]
        skipped, calls, changes = [], 0, []
        answers: list[tuple[str, Answer]] = []
        failure: ApiError | None = None
        for campaign in campaigns:
            channel = campaign["channel"]
            connection = store.connection(channel) if store is not None else None
            if store is None or connection is None or channel not in AD_CHANNELS:
                skipped.append(f"{channel or '?'}:{campaign['campaign_id']}")
                continue
            api = self._channel(store, connection)
            before = api.calls
            try:
                step = self._pause if pause else self._resume
                changes += [
                    f"{channel}:{change}"
                    for change in step(api, store_id, channel, campaign["campaign_id"], holder)
                ]
            except ApiError as error:
                failure = error
            calls += api.calls - before
            answers += [(channel, answer) for answer in api.take_journal()]
            if failure is not None:
                break
        lock_note = ""
        if store is not None and failure is None and other_channels(store):
            skus = skus_of(self.conn, store_id, action)
            lock_note = "" if skus else "; multichannel lock: no SKU known"
            for channel in other_channels(store):
                sales = self._store_api(store, channel)
                try:
                    changes += self.lock.apply(store_id, channel, sales, skus, holder, pause)
                except ApiError as error:
                    failure = error
                answers += [(channel, answer) for answer in journal_of(sales)]
                if failure is not None:
                    break
        if failure is not None:
            text = f"failed: {failure}"
        elif skipped:
            text = f"applied; no account connected for {' '.join(skipped)}"
        else:
            text = "applied"
        text += lock_note if failure is None else ""
        target = store.connection(NOTIFY) if store is not None else None
        if target is not None:
            why, tries = notify(self.settings, store_id, target, action, text, changes)
            answers += [(NOTIFY, answer) for answer in tries]
            if why is not None:
                text += f"; notification failed: {why}"
        return Outcome(text, calls, tuple(changes), failure, tuple(answers))

    def record(self, action: dict[str, Any], outcome: Outcome) -> None:
        envelope = action["envelope"]
        holder = holder_of(action)
        with self.conn.transaction():
            self.conn.execute(
                "INSERT INTO ad_actions (action_id, store_id, product_id, holder, action,"
                " outcome, calls, changes, done_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (action_id) DO NOTHING",
                (
                    envelope["event_id"],
                    envelope["store_id"],
                    action["product_id"],
                    holder,
                    action["action"],
                    outcome.text,
                    outcome.calls,
                    list(outcome.changes),
                    datetime.now(UTC),
                ),
            )

    def _channel(self, store: Store, connection: Connection) -> AdChannel:
        key = _client_key(store, connection)
        if key not in self._channels:
            self._channels[key] = channel_for(self.settings, store, connection)
        return self._channels[key]

    def _store_api(self, store: Store, channel: str) -> StoreApi:
        connection = store.connection(channel)
        assert connection is not None, "other_channels names connected channels"
        key = _client_key(store, connection)
        if key not in self._store_apis:
            api = store_api(self.settings, store.store_id, connection)
            client = getattr(api, "client", None)
            if client is not None:
                client.journal = []
            self._store_apis[key] = api
        return self._store_apis[key]

    @contextmanager
    def _object(self, store_id: str, channel: str, object_id: str) -> Iterator[Hold | None]:
        """The object's hold, under its lock, in a transaction the caller's block is part of."""
        with self.conn.transaction():
            self.conn.execute(
                "SELECT pg_advisory_xact_lock(hashtext(%s))",
                (f"ad:{store_id}/{channel}/{object_id}",),
            )
            row = self.conn.execute(
                "SELECT holders, status_before FROM ad_holds"
                " WHERE store_id = %s AND channel = %s AND object_id = %s",
                (store_id, channel, object_id),
            ).fetchone()
            yield Hold(frozenset(row[0]), row[1]) if row else None

    def _write(
        self, store_id: str, channel: str, campaign_id: str, object_id: str, hold: Hold | None
    ) -> None:
        if hold is None:
            self.conn.execute(
                "DELETE FROM ad_holds WHERE store_id = %s AND channel = %s AND object_id = %s",
                (store_id, channel, object_id),
            )
            return
        self.conn.execute(
            "INSERT INTO ad_holds (store_id, channel, object_id, campaign_id, holders,"
            " status_before, updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (store_id, channel, object_id) DO UPDATE SET"
            " holders = EXCLUDED.holders, updated_at = EXCLUDED.updated_at",
            (
                store_id,
                channel,
                object_id,
                campaign_id,
                sorted(hold.holders),
                hold.status_before,
                datetime.now(UTC),
            ),
        )

    def _pause(
        self, api: AdChannel, store_id: str, channel: str, campaign_id: str, holder: str
    ) -> list[str]:
        changed = []
        for object_id, status in api.objects(campaign_id):
            with self._object(store_id, channel, object_id) as hold:
                held, change = on_pause(hold, holder, status)
                self._write(store_id, channel, campaign_id, object_id, held)
            # The hold is committed first: killed after the call, the retry still knows the
            # status before it.
            if change:
                api.set_running(object_id, False)
                changed.append(f"{object_id} paused")
        return changed

    def _resume(
        self, api: AdChannel, store_id: str, channel: str, campaign_id: str, holder: str
    ) -> list[str]:
        changed = []
        held = self.conn.execute(
            "SELECT object_id FROM ad_holds WHERE store_id = %s AND channel = %s"
            " AND campaign_id = %s AND %s = ANY(holders) ORDER BY object_id",
            (store_id, channel, campaign_id, holder),
        ).fetchall()
        for (object_id,) in held:
            with self._object(store_id, channel, object_id) as hold:
                left, run = on_resume(hold, holder)
                # The call comes before the hold is released: killed after it, the retry calls
                # again (setting what is set) rather than forget the object.
                if run:
                    api.set_running(object_id, True)
                    changed.append(f"{object_id} resumed")
                self._write(store_id, channel, campaign_id, object_id, left)
        return changed


def _client_key(store: Store, connection: Connection) -> tuple[str, str, str]:
    """What a cached client is made for: a rotated token is another key (the cached client
    would still send the old one)."""
    digest = hashlib.sha256(connection.credentials.reveal()).hexdigest()
    return store.store_id, connection.channel, connection.account + digest


def call_record(action: dict[str, Any], channel: str, answer: Answer, n: int) -> dict[str, Any]:
    """The ConnectorCall value of the ``n``-th try made for ``action``."""
    envelope = action["envelope"]
    now = datetime.now(UTC)
    return {
        "envelope": {
            "event_id": deterministic_id(f"call/{envelope['event_id']}/{n}/{answer.call}"),
            "store_id": envelope["store_id"],
            "platform": envelope["platform"],
            "occurred_at": now,
            "received_at": now,
            "source": "derived",
            "caused_by": [envelope["event_id"]],
        },
        "action_id": envelope["event_id"],
        "channel": channel,
        "call": answer.call,
        "attempt": answer.attempt,
        "status": answer.status,
        "outcome": answer.outcome,
        "error": answer.error,
        "elapsed_ms": answer.elapsed_ms,
    }


def run(
    settings: Settings,
    stop: threading.Event,
    instance_id: str,
    metrics: ConnectorMetrics | None = None,
) -> None:
    metrics = metrics or ConnectorMetrics("ads")
    serde = serde_for(settings, "connectors.ad_platforms")
    stores = LiveStoreRegistry(settings.stores_file, SecretBox.from_settings(settings))
    executor = AdExecutor(settings, stores)
    # Static membership: a restart (after a SIGKILL too) takes its partitions back at once
    # instead of waiting out the dead member's session.
    consumer = Consumer(
        consumer_config(
            settings,
            settings.ads_group_id,
            **{"group.instance.id": instance_id, "session.timeout.ms": 45_000},
        )
    )
    producer = Producer(producer_config(settings))
    consumer.subscribe([settings.topic_name(topic(ACTIONS))])
    try:
        while not stop.is_set():
            message = consumer.poll(0.5)
            if message is None:
                continue
            if message.error():
                raise KafkaException(message.error())
            try:
                action = serde.decode(message.value() or b"").value
            except SerdeError as exc:
                log.error("offset %d of %s does not decode: %s", message.offset(), ACTIONS, exc)
                consumer.commit(message, asynchronous=False)
                continue
            action_id = action["envelope"]["event_id"]
            if not executor.done(action_id):
                outcome = executor.handle(action)
                calls = topic(CALLS)
                for n, (channel, answer) in enumerate(outcome.answers):
                    record = call_record(action, channel, answer, n)
                    producer.produce(
                        settings.topic_name(calls),
                        key=calls.message_key(record),
                        value=serde.encode(CALL, record),
                    )
                if outcome.failure is not None:
                    name, key, value = dead_letter(
                        settings,
                        serde,
                        message,
                        action["envelope"],
                        stage="connect.ads",
                        error_type="platform_call_failed",
                        why=outcome.text,
                    )
                    producer.produce(name, key=key, value=value)
                    log.warning("action %s: %s", action_id, outcome.text)
                # The record of calls and any dead letter, acknowledged before the action is
                # marked done: killed before, the action is carried out (and recorded) again.
                if producer.flush(settings.kafka_call_timeout_seconds):
                    raise RuntimeError("the record of calls was not acknowledged in time")
                for channel, answer in outcome.answers:
                    metrics.tried(channel, (answer,))
                if outcome.failure is not None:
                    metrics.dead_lettered()
                executor.record(action, outcome)
            consumer.commit(message, asynchronous=False)
    finally:
        consumer.close()
        executor.close()


def connect_ads_command(
    instance_id: str | None = typer.Option(
        None,
        help="Stable id of this instance (default: the host name): its static group membership.",
    ),
) -> None:
    """Carry the circuit breaker's pauses and resumes out to the ad platforms (Meta, Google
    Ads) of each store's connected accounts, until interrupted."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    stop = threading.Event()

    def _stop(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    settings, metrics = get_settings(), ConnectorMetrics("ads")
    serve_metrics(
        metrics.registry, settings.ads_metrics_port, settings.metrics_host, process="connect-ads"
    )
    try:
        run(settings, stop, instance_id or socket.gethostname(), metrics)
    except (KafkaException, psycopg.OperationalError, CryptoError) as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
