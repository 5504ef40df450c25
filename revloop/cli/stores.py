"""`revloop stores ...`: master keys and the store registry. Never prints a webhook secret; an
API key is printed once, when it is made, and only its digest is stored."""

from __future__ import annotations

import json
import secrets
import sys
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import wraps
from pathlib import Path
from typing import Final, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from revloop.cli.db import baseline_app
from revloop.crypto import CryptoError, Secret, SecretBox, new_master_key
from revloop.settings import STORE_SETTINGS, Settings, get_settings
from revloop.stores import (
    Connection,
    Platform,
    RegistryError,
    SettingsVersion,
    Store,
    StoreRegistry,
    StoreSettings,
    api_key_digest,
    new_api_key,
)

stores_app = typer.Typer(
    help="Stores, their webhook secrets (encrypted at rest) and the master keys.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals may hold a secret
)
stores_app.add_typer(baseline_app, name="baseline")

_STDIN: Final = "-"
P = ParamSpec("P")
R = TypeVar("R")


def _err() -> Console:
    return Console(stderr=True, highlight=False)


def _registry_errors(command: Callable[P, R]) -> Callable[P, R]:
    @wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except (CryptoError, RegistryError, ValueError, OSError) as exc:
            _err().print(f"error: {exc}", style="red", markup=False)
            raise typer.Exit(1) from None

    return wrapper


def _location() -> tuple[Path, SecretBox]:
    settings = get_settings()
    return settings.stores_file, SecretBox.from_settings(settings)


def _open() -> tuple[Path, SecretBox, StoreRegistry]:
    path, box = _location()
    registry = StoreRegistry.load(path, box) if path.exists() else StoreRegistry()
    return path, box, registry


def default_key_id() -> str:
    """``k<YYYYMMDD>-<6 hex>``: the date says how old a key is, the random part keeps two keys
    made the same day apart (ids name keys in tokens, so they must never collide). Any id
    matching the keyring's pattern still loads, the older ``k<YYYYMMDD>`` ones included."""
    return f"k{datetime.now(UTC):%Y%m%d}-{secrets.token_hex(3)}"


@stores_app.command()
@_registry_errors
def keygen(
    key_id: str | None = typer.Option(
        None,
        "--key-id",
        help="Id for the new key (default: k<YYYYMMDD>-<6 random hex digits>).",
        show_default=False,
    ),
) -> None:
    """Print a new master key entry for REVLOOP_MASTER_KEYS."""
    entry = new_master_key(key_id or default_key_id())
    typer.echo(entry)
    new_id = entry.partition(":")[0]
    _err().print(
        "Keep this value secret. First key: set REVLOOP_MASTER_KEYS to it. Rotation: put it "
        "first, the old entries after it (comma-separated), run `revloop stores rotate-keys`, "
        f"and drop the old entries once every process runs with {new_id!r} as primary.",
        style="dim",
        markup=False,
    )


@stores_app.command()
@_registry_errors
def add(
    store_id: str = typer.Option(..., "--store-id", help="Slug, e.g. acme-shopify."),
    platform: Platform = typer.Option(..., "--platform", case_sensitive=False),  # noqa: B008
    identity: str = typer.Option(
        ...,
        "--identity",
        help="Shopify shop domain, WooCommerce home URL, or BigCommerce store hash.",
    ),
    secret: str = typer.Option(
        ...,
        "--secret",
        prompt="Webhook secret",
        hide_input=True,
        help="The webhook signing secret; '-' reads it from stdin (keeps it out of shell "
        "history), or prompts without echo when stdin is a terminal. Prompted for when omitted.",
    ),
    rotation_window_hours: float = typer.Option(
        1.0,
        "--rotation-window-hours",
        min=0.0,
        max=720.0,
        help="When the store exists, how long its old secret stays accepted (0 to 720).",
    ),
    currency: str | None = typer.Option(
        None,
        "--currency",
        help="The shop currency (ISO 4217, e.g. USD); product prices need it. Kept when omitted.",
    ),
) -> None:
    """Add a store, or give an existing one a new webhook secret."""
    value = _secret_from_stdin() if secret == _STDIN else secret
    if not value:
        raise ValueError("the webhook secret is empty")
    path, box = _location()
    new = Secret(value.encode("utf-8"))
    window = timedelta(hours=rotation_window_hours)
    messages: list[str] = []

    def change(registry: StoreRegistry) -> StoreRegistry:
        store, message = _added_or_rotated(
            registry.get(store_id), store_id, platform.value, identity, new, currency, window
        )
        messages.append(message)
        return registry.with_store(store)

    StoreRegistry.update(path, box, change)
    typer.echo(f"{messages[0]} (in {path})")


def _secret_from_stdin(what: str = "Webhook secret") -> str:
    # Read from a terminal, the secret would be echoed as it is typed: prompt without echo there.
    if sys.stdin.isatty():
        return str(typer.prompt(what, hide_input=True))
    return sys.stdin.read().rstrip("\r\n")


def _added_or_rotated(
    existing: Store | None,
    store_id: str,
    platform: str,
    identity: str,
    new: Secret,
    currency: str | None,
    window: timedelta,
) -> tuple[Store, str]:
    now = datetime.now(UTC)
    if existing is None:
        store = Store(store_id, platform, identity, (new,), currency=currency and currency.upper())
        return store, f"added {store.store_id} ({store.platform} {store.identity})"
    if existing.platform != platform:
        raise RegistryError(f"store {store_id!r} is a {existing.platform} store, not {platform}")
    store = Store(
        store_id,
        existing.platform,
        identity,
        existing.secrets,
        existing.previous_secret_expires_at,
        existing.api_key_hashes,
        (currency and currency.upper()) or existing.currency,
        existing.settings,
    ).rotated(new, now=now, window=window)
    if store.secrets == existing.secrets:
        return store, f"updated {store_id}; its webhook secret is unchanged"
    if store.previous_secret_expires_at is None:
        return (
            store,
            f"replaced the webhook secret of {store_id}; the old one is no longer accepted",
        )
    return store, (
        f"new webhook secret for {store_id}; the previous one is accepted until "
        f"{store.previous_secret_expires_at:%Y-%m-%d %H:%M:%S %Z}"
    )


@stores_app.command("list")
@_registry_errors
def list_stores() -> None:
    """The registered stores (secrets are never shown)."""
    path, _, registry = _open()
    if not len(registry):
        typer.echo(f"no stores in {path}")
        return
    now = datetime.now(UTC)
    table = Table(
        "store",
        "platform",
        "identity",
        "currency",
        "previous secret",
        "api keys",
        "ad accounts",
        title=str(path),
    )
    for store in registry:
        expires = store.previous_secret_expires_at
        if expires is None:
            previous = "-"
        else:
            state = "accepted until" if now < expires else "expired"
            previous = f"{state} {expires:%Y-%m-%d %H:%M:%S %Z}"
        table.add_row(
            store.store_id,
            store.platform,
            store.identity,
            store.currency or "-",
            previous,
            str(len(store.api_key_hashes)),
            " ".join(f"{c.channel}:{c.account}" for c in store.connections) or "-",
        )
    Console(highlight=False).print(table)


@stores_app.command("api-key")
@_registry_errors
def api_key(
    store_id: str = typer.Option(..., "--store-id", help="The store the key speaks for."),
    revoke_all: bool = typer.Option(
        False,
        "--revoke-all",
        help="Revoke every API key of the store instead of making a new one.",
    ),
) -> None:
    """Make an API key for the marketing feeds (POST /events/...) and print it once; only its
    SHA-256 is stored. With --revoke-all, revoke the store's keys instead."""
    path, box = _location()
    key = new_api_key(store_id)
    counts: list[int] = []

    def change(registry: StoreRegistry) -> StoreRegistry:
        store = _known(registry, store_id, path)
        counts.append(len(store.api_key_hashes))
        if revoke_all:
            return registry.with_store(store.without_api_keys())
        return registry.with_store(store.with_api_key_hash(api_key_digest(key)))

    StoreRegistry.update(path, box, change)
    if revoke_all:
        typer.echo(f"revoked {counts[0]} API key(s) of {store_id} (in {path})")
        return
    typer.echo(key)
    _err().print(
        f"API key for {store_id}: send it as `Authorization: Bearer <key>`. It is shown only "
        f"this once (the registry keeps its SHA-256); the store now has "
        f"{counts[0] + 1} key(s). Revoke with "
        f"`revloop stores api-key --store-id {store_id} --revoke-all`.",
        style="dim",
        markup=False,
    )


@stores_app.command("connect")
@_registry_errors
def connect(
    store_id: str = typer.Option(..., "--store-id", help="The store."),
    channel: str = typer.Option(
        ..., "--channel", help="meta, google, shopify, woocommerce, bigcommerce or notify."
    ),
    account: str | None = typer.Option(
        None,
        "--account",
        help="Meta's ad account (act_123...), Google's customer id (digits), the myshopify "
        "domain, the WooCommerce site URL (https://...), the BigCommerce store hash, or the "
        "notification URL (https://...).",
    ),
    credentials: str | None = typer.Option(
        None,
        "--credentials",
        help='"-": read the credentials JSON from stdin: {"token"} for Meta, Shopify and '
        'BigCommerce; {"token", "developer_token", "login_customer_id"?} for Google Ads; '
        '{"consumer_key", "consumer_secret"} for WooCommerce; {"secret"} (what notifications '
        "are signed with) for notify. Encrypted in the registry.",
    ),
    remove: bool = typer.Option(False, "--remove", help="Disconnect the channel instead."),
) -> None:
    """Connect a store's ad account (for `revloop connect ads` to pause and resume its
    campaigns) or a store platform's API (for hydration, backfill and reconciliation); or
    disconnect it. The credentials are never printed."""
    path, box = _location()
    if not remove and (account is None or credentials != _STDIN):
        raise ValueError("give --account and --credentials - (the JSON on stdin)")
    secret = None
    if not remove:
        raw = _secret_from_stdin("Credentials JSON")
        secret = Connection(channel, account or "", Secret(raw.encode()))

    def change(registry: StoreRegistry) -> StoreRegistry:
        store = _known(registry, store_id, path)
        kept = tuple(c for c in store.connections if c.channel != channel)
        return registry.with_store(
            replace(store, connections=kept + ((secret,) if secret is not None else ()))
        )

    StoreRegistry.update(path, box, change)
    done = "disconnected" if remove else f"connected {account} on"
    typer.echo(f"{store_id}: {done} {channel} (in {path})")


@stores_app.command("settings")
@_registry_errors
def store_settings(
    store_id: str = typer.Option(..., "--store-id", help="The store whose settings change."),
    assignments: list[str] = typer.Option(  # noqa: B008
        [],
        "--set",
        help="NAME=VALUE, e.g. breaker_dwell_seconds=600 or attribution_model=linear "
        "(VALUE is read as JSON when it parses, so null clears an optional threshold). Repeat "
        "for more.",
        show_default=False,
    ),
    unset: list[str] = typer.Option(  # noqa: B008
        [], "--unset", help="NAME: back to the deployment's value. Repeat for more."
    ),
    effective_from: datetime | None = typer.Option(  # noqa: B008
        None,
        "--from",
        help="When the change takes effect, in event time (ISO 8601, with a zone; not in the "
        "past). Default: now plus REVLOOP_STORES_SETTINGS_LEAD_SECONDS.",
        formats=["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S.%f%z"],
        show_default=False,
    ),
) -> None:
    """Show a store's own settings, or change them from a time still to come. Events keep the
    settings in effect at their time, so replays derive the same pauses and scores. Settable:
    """
    settings = get_settings()
    path, box = _location()
    if not assignments and not unset:
        _, _, registry = _open()
        _show_settings(_known(registry, store_id, path), settings)
        return
    changes = dict(_assignment(a) for a in assignments)
    now = datetime.now(UTC)
    start = effective_from or now + timedelta(seconds=settings.stores_settings_lead_seconds)
    if start.tzinfo is None:
        raise ValueError("--from needs a zone, e.g. 2026-12-24T00:00:00+00:00")
    if start < now:
        raise ValueError("--from is in the past: events already processed would change on replay")
    if start < now + timedelta(seconds=settings.stores_check_seconds * 2):
        raise ValueError(
            "--from is too close: running workers read the file every "
            f"{settings.stores_check_seconds:g} s, and events of that time may come first"
        )
    added: list[SettingsVersion] = []

    def change(registry: StoreRegistry) -> StoreRegistry:
        store = _known(registry, store_id, path)
        values = dict(store.settings[-1].values) if store.settings else {}
        values.update(changes)
        for name in unset:
            values.pop(name, None)
        resolved = settings.for_store(values)  # raises on an unknown name or a bad value
        version = SettingsVersion(start, {name: getattr(resolved, name) for name in values})
        added.append(version)
        return registry.with_store(replace(store, settings=(*store.settings, version)))

    StoreRegistry.update(path, box, change)
    shown = ", ".join(f"{k}={json.dumps(v)}" for k, v in sorted(added[0].values.items()))
    typer.echo(
        f"{store_id}: from {start.isoformat()} its settings are "
        f"{shown or 'the deployment defaults'} (in {path})"
    )


store_settings.__doc__ = (store_settings.__doc__ or "") + ", ".join(sorted(STORE_SETTINGS)) + "."


def _known(registry: StoreRegistry, store_id: str, path: Path) -> Store:
    store = registry.get(store_id)
    if store is None:
        raise RegistryError(f"no store {store_id!r} in {path} (add it with `revloop stores add`)")
    return store


def _assignment(text: str) -> tuple[str, object]:
    name, sep, raw = text.partition("=")
    if not sep or not name:
        raise ValueError(f"--set wants NAME=VALUE, got {text!r}")
    try:
        return name.strip(), json.loads(raw)
    except json.JSONDecodeError:
        return name.strip(), raw


def _show_settings(store: Store, settings: Settings) -> None:
    if not store.settings:
        typer.echo(f"{store.store_id} uses the deployment's settings")
    resolved = StoreSettings(settings, {store.store_id: store.settings})
    table = Table("setting", "deployment", "now", title=f"{store.store_id}")
    current = resolved.at(store.store_id, datetime.now(UTC))
    for name in sorted(STORE_SETTINGS):
        table.add_row(name, json.dumps(getattr(settings, name)), json.dumps(getattr(current, name)))
    Console(highlight=False).print(table)
    for version in store.settings:
        values = ", ".join(f"{k}={json.dumps(v)}" for k, v in sorted(version.values.items()))
        typer.echo(f"from {version.effective_from.isoformat()}: {values or 'defaults'}")


@stores_app.command("rotate-keys")
@_registry_errors
def rotate_keys() -> None:
    """Re-encrypt every stored secret under the primary (first) master key."""
    path, box = _location()
    if not path.exists():
        typer.echo(f"nothing to rotate: {path} does not exist")
        return
    registry = StoreRegistry.update(path, box, lambda current: current)  # save re-encrypts
    count = sum(len(store.secrets) for store in registry)
    typer.echo(
        f"re-encrypted {count} secret(s) of {len(registry)} store(s) under master key "
        f"{box.primary_key_id!r} in {path}"
    )
    others = [key_id for key_id in box.key_ids if key_id != box.primary_key_id]
    if others:
        _err().print(
            f"Keys {', '.join(others)} are no longer needed by this file; remove them from "
            "REVLOOP_MASTER_KEYS once every process has reloaded it.",
            style="dim",
            markup=False,
        )


@stores_app.command("disconnect")
@_registry_errors
def disconnect_command(
    store_id: str = typer.Option(..., "--store-id", help="The store."),
) -> None:
    """Disconnect a store from its platform: delete the webhooks revloop registered there (those
    addressed to REVLOOP_PUBLIC_URL), then forget its token. Its history stays."""
    # Here, not at the top: every `stores` command loads this module, and only this one calls.
    from connectors.http import ApiError
    from connectors.onboarding import disconnect

    path, box = _location()
    try:
        removed = disconnect(get_settings(), box, store_id)
    except LookupError as exc:
        raise ValueError(str(exc)) from None
    except ApiError as exc:
        raise ValueError(f"{exc}; nothing was forgotten, run it again") from None
    typer.echo(
        f"{store_id}: {len(removed)} webhooks deleted, its platform token forgotten ({path})"
    )
