"""revloop.stores and `revloop stores`: the store registry and its encrypted secrets."""

from __future__ import annotations

import base64
import hashlib
import json
import multiprocessing
import os
import pty
import re
import select
import signal
import stat
import subprocess
import sys
import tempfile
import termios
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from revloop.cli.stores import stores_app
from revloop.crypto import CryptoError, Secret, SecretBox
from revloop.settings import Settings, get_settings
from revloop.stores import (
    MAX_API_KEYS,
    LiveCurrencies,
    LiveStoreRegistry,
    Platform,
    RegistryError,
    Store,
    StoreRegistry,
    api_key_digest,
    api_key_store_id,
    new_api_key,
    normalize_identity,
    secret_context,
    store_currencies,
)
from tests import ROOT

BOX = SecretBox({"k1": os.urandom(32)}, "k1")
NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
SHOP = re.compile(r"[a-z0-9][a-z0-9_-]*\.myshopify\.com")

secret_texts = st.text("abcdefghijklmnopqrstuvwxyz0123456789_", min_size=12, max_size=40)


def _store(store_id: str = "acme-shopify", *secrets: bytes, **kwargs: object) -> Store:
    values = tuple(Secret(s) for s in secrets or (b"shpss_current",))
    fields: dict[str, object] = {"platform": "shopify", "identity": f"{store_id}.myshopify.com"}
    fields.update(kwargs)
    return Store(store_id, secrets=values, **fields)  # type: ignore[arg-type]


@st.composite
def _mixed_case(draw: st.DrawFn, text: str) -> str:
    flips = draw(st.lists(st.booleans(), min_size=len(text), max_size=len(text)))
    return "".join(c.upper() if flip else c for c, flip in zip(text, flips, strict=True))


# --- identities ---------------------------------------------------------------------------


@given(data=st.data(), name=st.from_regex(r"[a-z0-9][a-z0-9_-]{0,40}", fullmatch=True))
def test_shop_domains_normalize_to_lower_case(data: st.DataObject, name: str) -> None:
    canonical = f"{name}.myshopify.com"
    raw = data.draw(_mixed_case(canonical))
    assert normalize_identity("shopify", raw) == canonical
    assert normalize_identity("shopify", f"  {raw}\t") == canonical


@given(raw=st.text(max_size=60))
def test_anything_but_a_shop_domain_is_refused(raw: str) -> None:
    if SHOP.fullmatch(raw.strip().lower()):
        return
    with pytest.raises(ValueError, match="shop domain"):
        normalize_identity("shopify", raw)


@pytest.mark.parametrize(
    "raw",
    [
        "acme.myshopify.com.evil.com",
        "evil.com",
        "-acme.myshopify.com",
        "https://acme.myshopify.com",
        "acme.myshopify.com/",
        "acme .myshopify.com",
        "acme.myshopify.com\nX-Injected: 1",
        ".myshopify.com",
        "a" * 64 + ".myshopify.com",
        "acme.evil.myshopify.com",
    ],
)
def test_invalid_shop_domains(raw: str) -> None:
    with pytest.raises(ValueError, match="shop domain"):
        normalize_identity("shopify", raw)


_labels = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
_segments = st.lists(st.from_regex(r"[A-Za-z0-9._~-]{1,8}", fullmatch=True), max_size=3)


@given(
    data=st.data(),
    scheme=st.sampled_from(["http", "https"]),
    labels=st.lists(_labels, min_size=1, max_size=4),
    port=st.none() | st.integers(1, 65535),
    segments=_segments,
    slashes=st.integers(0, 3),
)
def test_home_url_variants_are_one_identity(
    data: st.DataObject,
    scheme: str,
    labels: list[str],
    port: int | None,
    segments: list[str],
    slashes: int,
) -> None:
    host, path = ".".join(labels), "".join(f"/{s}" for s in segments)
    default = {"http": 80, "https": 443}[scheme]
    shown_port = "" if port in (None, default) else f":{port}"
    canonical = f"{scheme}://{host}{shown_port}{path}"
    raw = (
        data.draw(_mixed_case(scheme))
        + "://"
        + data.draw(_mixed_case(host))
        + ("" if port is None else f":{port}")
        + path
        + "/" * slashes
    )
    assert normalize_identity("woocommerce", raw) == canonical
    assert normalize_identity("woocommerce", canonical) == canonical


def test_home_url_examples() -> None:
    assert normalize_identity("woocommerce", "https://Shop.Example.com/") == (
        "https://shop.example.com"
    )
    assert normalize_identity("woocommerce", "https://example.com:443/Blog/") == (
        "https://example.com/Blog"
    )
    assert normalize_identity("woocommerce", "http://localhost:8080/") == "http://localhost:8080"
    assert normalize_identity("woocommerce", "https://bücher.example/") == (
        "https://xn--bcher-kva.example"
    )


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "shop.example.com",
        "ftp://shop.example.com/",
        "https://",
        "https:///path",
        "https://shop.example.com/?x=1",
        "https://shop.example.com/#top",
        "https://user:pw@shop.example.com/",
        "https://shop.example.com:99999/",
        "https://shop example.com/",
        "https://sh\nop.example.com/",
        "https://-shop.example.com/",
        "https://[not-ipv6]/",
    ],
)
def test_invalid_home_urls(raw: str) -> None:
    with pytest.raises(ValueError, match="home URL"):
        normalize_identity("woocommerce", raw)


def test_bigcommerce_producer_names_the_store_hash() -> None:
    assert normalize_identity("bigcommerce", "stores/abc123") == "abc123"
    assert normalize_identity("bigcommerce", "abc123") == "abc123"
    for raw in ["stores/", "stores/ABC", "stores/a/b", "store/abc", "abc-123", ""]:
        with pytest.raises(ValueError, match="BigCommerce producer"):
            normalize_identity("bigcommerce", raw)


def test_unknown_platform() -> None:
    with pytest.raises(ValueError, match="unknown platform 'magento'"):
        normalize_identity("magento", "x")


# --- stores -------------------------------------------------------------------------------


def test_store_normalizes_and_validates() -> None:
    store = _store("acme", identity="ACME.myshopify.com")
    assert store.identity == "acme.myshopify.com"
    assert store.platform == "shopify"
    assert type(store.platform) is str
    bc = Store("bc", Platform.BIGCOMMERCE, "stores/abc123", (Secret(b"s"),))
    assert (bc.platform, bc.identity) == ("bigcommerce", "abc123")


@given(store_id=st.text(max_size=70))
def test_store_ids_are_slugs(store_id: str) -> None:
    if re.fullmatch(r"[a-z0-9][a-z0-9-]{0,62}", store_id):
        assert _store(store_id, identity="acme.myshopify.com").store_id == store_id
    else:
        with pytest.raises(ValueError, match="slug"):
            _store(store_id, identity="acme.myshopify.com")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"secrets": ()}, "non-empty Secret"),
        ({"secrets": (Secret(b""),)}, "non-empty Secret"),
        ({"secrets": [Secret(b"x")]}, "tuple"),
        ({"secrets": (b"raw",)}, "Secret"),
        ({"secrets": (Secret(b"a"), Secret(b"b"))}, "go together"),
        ({"previous_secret_expires_at": NOW}, "go together"),
        (
            {
                "secrets": (Secret(b"a"), Secret(b"b")),
                "previous_secret_expires_at": datetime(2025, 1, 1),
            },
            "zone",
        ),
    ],
)
def test_store_refuses_inconsistent_secrets(kwargs: dict[str, object], message: str) -> None:
    fields: dict[str, object] = {
        "store_id": "acme",
        "platform": "shopify",
        "identity": "acme.myshopify.com",
        "secrets": (Secret(b"x"),),
    }
    fields.update(kwargs)
    with pytest.raises(ValueError, match=message):
        Store(**fields)  # type: ignore[arg-type]


@given(offset=st.integers(-(10**6), 10**6))
def test_previous_secret_is_accepted_only_before_it_expires(offset: int) -> None:
    store = _store("acme", b"new", b"old", previous_secret_expires_at=NOW)
    keys = store.verification_keys(NOW + timedelta(seconds=offset))
    assert keys == ((b"new", b"old") if offset < 0 else (b"new",))


def test_verification_keys_need_an_aware_now() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        _store().verification_keys(datetime(2025, 1, 1))


def test_rotated_moves_the_current_secret_to_previous() -> None:
    store = _store("acme", b"one")
    two = store.rotated(Secret(b"two"), now=NOW, window=timedelta(hours=1))
    assert [s.reveal() for s in two.secrets] == [b"two", b"one"]
    assert two.previous_secret_expires_at == NOW + timedelta(hours=1)
    assert two.verification_keys(NOW + timedelta(minutes=59)) == (b"two", b"one")
    assert two.verification_keys(NOW + timedelta(hours=1)) == (b"two",)
    # A second rotation keeps only the one before it, with a fresh window.
    three = two.rotated(Secret(b"three"), now=NOW, window=timedelta(hours=2))
    assert [s.reveal() for s in three.secrets] == [b"three", b"two"]
    assert three.previous_secret_expires_at == NOW + timedelta(hours=2)
    # Re-adding the current secret changes nothing; a zero window drops the old one at once.
    assert two.rotated(Secret(b"two"), now=NOW, window=timedelta(hours=5)) is two
    zero = two.rotated(Secret(b"four"), now=NOW, window=timedelta(0))
    assert (zero.secrets, zero.previous_secret_expires_at) == ((Secret(b"four"),), None)


@given(current=secret_texts, previous=secret_texts)
def test_secrets_never_appear_in_reprs(current: str, previous: str) -> None:
    store = _store(
        "acme",
        current.encode(),
        previous.encode(),
        previous_secret_expires_at=NOW,
    )
    registry = StoreRegistry([store])
    shown = " ".join(
        [repr(store), str(store), repr(registry), str(registry), f"{store.secrets}", repr(BOX)]
    )
    assert current not in shown
    assert previous not in shown


# --- the registry -------------------------------------------------------------------------


def _sample_registry() -> StoreRegistry:
    return StoreRegistry(
        [
            _store("acme-shopify", b"shpss_acme"),
            Store("acme-woo", "woocommerce", "https://acme.example/", (Secret(b"wc_acme"),)),
            Store(
                "globex-bc",
                "bigcommerce",
                "stores/g1obex",
                (Secret(b"bc_new"), Secret(b"bc_old")),
                NOW,
            ),
        ]
    )


def test_lookup_get_and_stores_for() -> None:
    registry = _sample_registry()
    assert len(registry) == 3
    woo = registry.lookup("woocommerce", normalize_identity("woocommerce", "https://ACME.example/"))
    assert woo is not None
    assert woo.store_id == "acme-woo"
    assert registry.lookup(Platform.BIGCOMMERCE, "g1obex") == registry.get("globex-bc")
    assert registry.lookup("shopify", "https://acme.example") is None
    assert registry.get("nope") is None
    assert [s.store_id for s in registry.stores_for("shopify")] == ["acme-shopify"]
    assert registry.stores_for(Platform.WOOCOMMERCE) == (woo,)
    assert [s.store_id for s in registry] == ["acme-shopify", "acme-woo", "globex-bc"]


def test_duplicates_are_refused() -> None:
    with pytest.raises(RegistryError, match="'acme' appears twice"):
        StoreRegistry([_store("acme"), _store("acme", identity="other.myshopify.com")])
    with pytest.raises(RegistryError, match=r"'a' and 'b' both claim shopify identity"):
        StoreRegistry(
            [_store("a", identity="x.myshopify.com"), _store("b", identity="X.myshopify.com")]
        )


def test_with_store_replaces_by_id_and_keeps_identities_unique() -> None:
    registry = _sample_registry()
    replaced = registry.with_store(_store("acme-shopify", b"new", identity="acme2.myshopify.com"))
    assert len(replaced) == 3
    assert registry.lookup("shopify", "acme-shopify.myshopify.com") is not None
    assert replaced.lookup("shopify", "acme-shopify.myshopify.com") is None
    with pytest.raises(RegistryError, match="both claim"):
        registry.with_store(_store("intruder", identity="acme-shopify.myshopify.com"))


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "state" / "stores.json"
    registry = _sample_registry()
    registry.save(path, BOX)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["stores.json"]  # no temp file left
    text = path.read_text()
    for plain in ("shpss_acme", "wc_acme", "bc_new", "bc_old"):
        assert plain not in text
    document = json.loads(text)
    entry = document["stores"][2]
    assert entry["previous_secret_expires_at"] == "2025-06-01T12:00:00+00:00"
    assert BOX.decrypt(entry["secrets"][1], context=secret_context("globex-bc")) == b"bc_old"
    loaded = StoreRegistry.load(path, BOX)
    assert list(loaded) == list(registry)


def test_a_store_currency_is_validated_and_survives_save_load_and_rotation(
    tmp_path: Path,
) -> None:
    with pytest.raises(ValueError, match="ISO 4217"):
        Store("acme", "shopify", "acme.myshopify.com", (Secret(b"s"),), currency="usd")
    store = Store("acme", "shopify", "acme.myshopify.com", (Secret(b"s"),), currency="JPY")
    rotated = store.rotated(Secret(b"t"), now=NOW, window=timedelta(hours=1))
    assert rotated.currency == "JPY"
    path = tmp_path / "stores.json"
    StoreRegistry([rotated]).save(path, BOX)
    assert json.loads(path.read_text())["stores"][0]["currency"] == "JPY"
    assert StoreRegistry.load(path, BOX).get("acme") == rotated
    without = Store("plain", "shopify", "plain.myshopify.com", (Secret(b"s"),))
    StoreRegistry([without]).save(path, BOX)
    assert "currency" not in json.loads(path.read_text())["stores"][0]  # old files unchanged


def test_save_replaces_a_readable_file_with_a_private_one(tmp_path: Path) -> None:
    path = tmp_path / "stores.json"
    path.write_text("{}")
    path.chmod(0o644)
    _sample_registry().save(path, BOX)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


_store_ids = st.lists(
    st.from_regex(r"[a-z0-9][a-z0-9-]{0,20}", fullmatch=True), unique=True, max_size=6
)


@settings(max_examples=25)
@given(
    ids=_store_ids,
    platforms=st.lists(st.sampled_from(list(Platform)), min_size=6, max_size=6),
    secrets=st.lists(st.binary(min_size=1, max_size=64), min_size=12, max_size=12),
    expiry=st.none() | st.datetimes(timezones=st.just(UTC)),
)
def test_any_registry_survives_save_and_load(
    ids: list[str],
    platforms: list[Platform],
    secrets: list[bytes],
    expiry: datetime | None,
) -> None:
    identities = {
        Platform.SHOPIFY: lambda i: f"{i}.myshopify.com",
        Platform.WOOCOMMERCE: lambda i: f"https://shops.example/{i}/",
        Platform.BIGCOMMERCE: lambda i: hashlib.sha1(i.encode()).hexdigest()[:10],  # noqa: S324
    }
    stores = [
        Store(
            i,
            p,
            identities[p](i),
            (Secret(secrets[2 * n]),)
            if expiry is None
            else tuple(map(Secret, secrets[2 * n :][:2])),
            expiry,
        )
        for n, (i, p) in enumerate(zip(ids, platforms, strict=False))
    ]
    registry = StoreRegistry(stores)
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "stores.json"
        registry.save(path, BOX)
        assert list(StoreRegistry.load(path, BOX)) == sorted(stores, key=lambda s: s.store_id)


def test_a_secret_copied_to_another_store_does_not_decrypt(tmp_path: Path) -> None:
    path = tmp_path / "stores.json"
    _sample_registry().save(path, BOX)
    document = json.loads(path.read_text())
    document["stores"][1]["secrets"] = document["stores"][0]["secrets"]
    path.write_text(json.dumps(document))
    with pytest.raises(CryptoError, match="'acme-woo': cannot decrypt") as caught:
        StoreRegistry.load(path, BOX)
    assert "shpss_acme" not in str(caught.value)


def test_load_needs_the_key_the_file_was_written_with(tmp_path: Path) -> None:
    path = tmp_path / "stores.json"
    _sample_registry().save(path, BOX)
    with pytest.raises(CryptoError, match="'k1'"):
        StoreRegistry.load(path, SecretBox({"k2": os.urandom(32)}, "k2"))


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("not json", "not valid JSON"),
        ("[]", "expected"),
        ('{"stores": {}}', "expected"),
        ('{"stores": [1]}', "store #1 is not an object"),
        ('{"stores": [{"store_id": "a"}]}', "missing fields"),
        (
            '{"stores": [{"store_id": "a", "platform": "shopify", "identity": "a.myshopify.com",'
            ' "secrets": [], "extra": 1}]}',
            "unknown fields",
        ),
        (
            '{"stores": [{"store_id": "a", "platform": "shopify", "identity": "a.myshopify.com",'
            ' "secrets": [1]}]}',
            "token strings",
        ),
        (
            '{"stores": [{"store_id": "a", "platform": "shopify", "identity": "a.myshopify.com",'
            ' "secrets": []}]}',
            "non-empty Secret",
        ),
    ],
)
def test_load_explains_malformed_files(tmp_path: Path, document: str, message: str) -> None:
    path = tmp_path / "stores.json"
    path.write_text(document)
    with pytest.raises(RegistryError, match=message) as caught:
        StoreRegistry.load(path, BOX)
    assert str(path) in str(caught.value)


def test_load_refuses_duplicates_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "stores.json"
    _sample_registry().save(path, BOX)
    document = json.loads(path.read_text())
    document["stores"].append(document["stores"][0])
    path.write_text(json.dumps(document))
    with pytest.raises(RegistryError, match="appears twice"):
        StoreRegistry.load(path, BOX)


def test_stores_file_defaults_to_the_state_dir(tmp_path: Path) -> None:
    assert Settings(state_dir=tmp_path).stores_file == tmp_path / "stores.json"
    assert Settings(stores_file=tmp_path / "s.json").stores_file == tmp_path / "s.json"


# --- the CLI ------------------------------------------------------------------------------


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    path = tmp_path / "stores.json"
    monkeypatch.setenv("REVLOOP_STORES_FILE", str(path))
    monkeypatch.delenv("REVLOOP_MASTER_KEYS", raising=False)
    get_settings.cache_clear()
    yield path
    get_settings.cache_clear()


def _use_keys(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("REVLOOP_MASTER_KEYS", value)
    get_settings.cache_clear()


def test_cli_keygen_add_list_rotate(cli_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()

    result = runner.invoke(stores_app, ["keygen", "--key-id", "k1"])
    assert result.exit_code == 0, result.output
    first = result.stdout.strip()
    assert re.fullmatch(r"k1:[A-Za-z0-9+/]{43}=", first)
    assert "rotate-keys" in result.stderr
    _use_keys(monkeypatch, first)

    add = ["add", "--store-id", "acme-shopify", "--platform", "shopify"]
    result = runner.invoke(
        stores_app, [*add, "--identity", "ACME.myshopify.com", "--secret", "shpss_first"]
    )
    assert result.exit_code == 0, result.output
    assert "shpss_first" not in result.output
    assert stat.S_IMODE(cli_env.stat().st_mode) == 0o600
    assert "shpss_first" not in cli_env.read_text()

    result = runner.invoke(
        stores_app,
        [
            *("add", "--store-id", "acme-woo", "--platform", "WooCommerce"),
            *("--identity", "https://Acme.example/", "--secret", "-"),
        ],
        input="wc_from_stdin\n",
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(
        stores_app,
        ["add", "--store-id", "globex", "--platform", "bigcommerce", "--identity", "stores/g1"],
        input="bc_prompted\n",
    )
    assert result.exit_code == 0, result.output
    assert "bc_prompted" not in result.output

    # Re-adding with a new secret keeps the old one for the rotation window.
    result = runner.invoke(
        stores_app,
        [
            *add,
            "--identity",
            "acme.myshopify.com",
            "--secret",
            "shpss_second",
            "--rotation-window-hours",
            "2",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "previous one is accepted until" in result.output

    result = runner.invoke(
        stores_app,
        [*add, "--identity", "acme.myshopify.com", "--secret", "-", "--currency", "usd"],
        input="shpss_second\n",
    )
    assert result.exit_code == 0, result.output

    result = runner.invoke(stores_app, ["list"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for shown in ("acme-shopify", "acme.myshopify.com", "https://acme.example", "g1", "USD"):
        assert shown in result.output
    assert "accepted until" in result.output
    for secret in ("shpss_first", "shpss_second", "wc_from_stdin", "bc_prompted"):
        assert secret not in result.output

    registry = StoreRegistry.load(cli_env, SecretBox.from_settings(get_settings()))
    acme = registry.get("acme-shopify")
    assert acme is not None
    now = datetime.now(UTC)
    assert acme.verification_keys(now) == (b"shpss_second", b"shpss_first")
    assert acme.verification_keys(now + timedelta(hours=2, seconds=1)) == (b"shpss_second",)
    woo = registry.lookup("woocommerce", "https://acme.example")
    assert woo is not None
    assert woo.verification_keys(now) == (b"wc_from_stdin",)

    # Master key rotation: new key first, rotate, then the old key can go.
    second = runner.invoke(stores_app, ["keygen", "--key-id", "k2"]).stdout.strip()
    _use_keys(monkeypatch, f"{second},{first}")
    result = runner.invoke(stores_app, ["rotate-keys"])
    assert result.exit_code == 0, result.output
    assert "re-encrypted 4 secret(s) of 3 store(s) under master key 'k2'" in result.stdout
    tokens = [t for s in json.loads(cli_env.read_text())["stores"] for t in s["secrets"]]
    assert len(tokens) == 4
    assert all(t.startswith("v1.k2.") for t in tokens)
    _use_keys(monkeypatch, second)
    assert list(StoreRegistry.load(cli_env, SecretBox.from_settings(get_settings()))) == list(
        registry
    )
    assert runner.invoke(stores_app, ["list"]).exit_code == 0


def test_keygen_ids_are_unique_within_a_day_and_old_date_ids_still_load(
    cli_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = CliRunner()
    entries = []
    for _ in range(2):
        result = runner.invoke(stores_app, ["keygen"])
        assert result.exit_code == 0, result.output
        entries.append(result.stdout.strip())
    ids = [entry.partition(":")[0] for entry in entries]
    assert ids[0] != ids[1]  # the same day, the same second even
    for key_id in ids:
        assert re.fullmatch(r"k\d{8}-[0-9a-f]{6}", key_id), key_id

    # Both new entries and an entry named the old way (k<YYYYMMDD>) make one keyring, and a
    # token under the old id still decrypts.
    legacy_key = os.urandom(32)
    legacy_token = SecretBox({"k20250101": legacy_key}, "k20250101").encrypt(b"old", context="c")
    legacy_entry = f"k20250101:{base64.b64encode(legacy_key).decode()}"
    _use_keys(monkeypatch, ",".join([*entries, legacy_entry]))
    box = SecretBox.from_settings(get_settings())
    assert box.key_ids == (*ids, "k20250101")
    assert box.primary_key_id == ids[0]
    assert box.decrypt(legacy_token, context="c") == b"old"


def _in_a_terminal(
    argv: list[str], env: dict[str, str], cwd: Path, *, prompt: bytes, answer: bytes
) -> tuple[int, bytes]:
    """Run ``argv`` on a new pseudo-terminal (stdin, stdout and stderr, as in a shell), type
    ``answer`` once ``prompt`` is on the screen and the program has turned the terminal's echo
    off, and return the exit status and everything the terminal showed."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: exec at once, nothing else runs after a fork
        try:
            os.chdir(cwd)
            os.execve(argv[0], argv, env)  # noqa: S606 (the test's own argv)
        finally:
            os._exit(127)
    screen = b""
    answered = False
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            # On Linux the master reads the terminal's (the slave's) settings.
            if not answered and prompt in screen and not termios.tcgetattr(fd)[3] & termios.ECHO:
                os.write(fd, answer)
                answered = True
            ready, _, _ = select.select([fd], [], [], 0.2)
            if not ready:
                continue
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            screen += chunk
        else:
            pytest.fail(f"no exit within 60 s (answered: {answered}); the screen: {screen!r}")
        _, status = os.waitpid(pid, 0)
        pid = 0
        return os.waitstatus_to_exitcode(status), screen
    finally:
        os.close(fd)
        if pid:
            os.kill(pid, signal.SIGKILL)  # only the child this test started
            os.waitpid(pid, 0)


_ADD_WOO_SECRET_FROM_STDIN = [
    *(sys.executable, "-m", "revloop", "stores", "add", "--store-id", "acme-woo"),
    *("--platform", "woocommerce", "--identity", "https://acme.example", "--secret", "-"),
]


def _real_cli_env(tmp_path: Path) -> tuple[dict[str, str], SecretBox]:
    """The environment for the real `revloop` in a subprocess: its own stores file and key."""
    key = os.urandom(32)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(ROOT),
        "REVLOOP_STORES_FILE": str(tmp_path / "stores.json"),
        "REVLOOP_MASTER_KEYS": f"k1:{base64.b64encode(key).decode()}",
        "TERM": "dumb",
    }
    return env, SecretBox({"k1": key}, "k1")


def _woo_secrets(tmp_path: Path, box: SecretBox) -> tuple[bytes, ...]:
    woo = StoreRegistry.load(tmp_path / "stores.json", box).get("acme-woo")
    assert woo is not None
    return woo.verification_keys(datetime.now(UTC))


def test_secret_dash_on_a_terminal_prompts_without_echo(tmp_path: Path) -> None:
    env, box = _real_cli_env(tmp_path)
    code, screen = _in_a_terminal(
        _ADD_WOO_SECRET_FROM_STDIN,
        env,
        tmp_path,
        prompt=b"Webhook secret",
        answer=b"wc_typed_on_a_tty\r",
    )
    assert code == 0, screen
    assert b"wc_typed_on_a_tty" not in screen  # typed, but never echoed
    assert b"added acme-woo" in screen
    assert _woo_secrets(tmp_path, box) == (b"wc_typed_on_a_tty",)


def test_secret_dash_reads_a_pipe_without_prompting(tmp_path: Path) -> None:
    env, box = _real_cli_env(tmp_path)
    result = subprocess.run(
        _ADD_WOO_SECRET_FROM_STDIN,
        input=b"wc_from_a_pipe\n",
        env=env,
        cwd=tmp_path,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert b"Webhook secret" not in result.stdout + result.stderr
    assert _woo_secrets(tmp_path, box) == (b"wc_from_a_pipe",)


def test_cli_without_master_keys_explains_keygen(cli_env: Path) -> None:
    result = CliRunner().invoke(stores_app, ["list"])
    assert result.exit_code == 1
    assert "revloop stores keygen" in result.stderr


def test_cli_errors_are_clear_and_leak_nothing(
    cli_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = CliRunner()
    _use_keys(monkeypatch, runner.invoke(stores_app, ["keygen"]).stdout.strip())
    result = runner.invoke(stores_app, ["list"])
    assert result.exit_code == 0
    assert "no stores in" in result.stdout

    add = ["add", "--store-id", "acme", "--secret", "hunter2-secret"]
    result = runner.invoke(stores_app, [*add, "--platform", "shopify", "--identity", "acme.com"])
    assert result.exit_code == 1
    assert "shop domain" in result.stderr
    assert "hunter2" not in result.output

    ok = [*add, "--platform", "shopify", "--identity", "acme.myshopify.com"]
    assert runner.invoke(stores_app, ok).exit_code == 0
    result = runner.invoke(
        stores_app, [*add, "--platform", "bigcommerce", "--identity", "stores/abc"]
    )
    assert result.exit_code == 1
    assert "is a shopify store" in result.stderr
    result = runner.invoke(
        stores_app,
        [
            *("add", "--store-id", "other", "--secret", "s", "--platform", "shopify"),
            *("--identity", "ACME.myshopify.com"),
        ],
    )
    assert result.exit_code == 1
    assert "both claim" in result.stderr
    # The same secret again changes nothing.
    result = runner.invoke(stores_app, ok)
    assert "unchanged" in result.stdout


# --- feed API keys ------------------------------------------------------------------------

_digests = st.lists(
    st.binary(min_size=1, max_size=32).map(lambda b: hashlib.sha256(b).hexdigest()),
    unique=True,
    max_size=MAX_API_KEYS,
)


def test_api_keys_are_kept_as_digests_and_checked_against_them() -> None:
    key = new_api_key("acme")
    assert api_key_store_id(key) == "acme"
    store = _store("acme").with_api_key_hash(api_key_digest(key))
    assert store.api_key_hashes == (hashlib.sha256(key.encode()).hexdigest(),)
    assert store.accepts_api_key(key)
    assert not store.accepts_api_key(key[:-1] + ("A" if key[-1] != "A" else "B"))
    assert not store.accepts_api_key("")
    assert not store.without_api_keys().accepts_api_key(key)
    assert key not in repr(store)
    assert store.api_key_hashes[0] not in repr(store)


@pytest.mark.parametrize(
    ("key", "store_id"),
    [
        ("rlk_acme_" + "a" * 43, "acme"),
        ("rlk_acme-shop_" + "_" * 43, "acme-shop"),  # the token may hold '_' and '-'
        ("rlk_acme_" + "a" * 42, None),
        ("rlk__" + "a" * 43, None),
        ("rlk_Acme_" + "a" * 43, None),
        ("rlk_acme-" + "a" * 43, None),
        ("rlk_acme_" + "a" * 42 + "=", None),
        ("RLK_acme_" + "a" * 43, None),
        ("", None),
    ],
)
def test_api_key_shape(key: str, store_id: str | None) -> None:
    assert api_key_store_id(key) == store_id


@pytest.mark.parametrize(
    ("hashes", "message"),
    [
        (("nothex",), "SHA-256"),
        (("A" * 64,), "SHA-256"),
        (["a" * 64], "SHA-256"),
        (("a" * 64, "a" * 64), "duplicates"),
        (tuple(f"{n:064x}" for n in range(MAX_API_KEYS + 1)), "more than"),
    ],
)
def test_store_refuses_malformed_api_key_hashes(hashes: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _store("acme", api_key_hashes=hashes)


def test_a_store_holds_a_bounded_number_of_api_keys() -> None:
    store = _store("acme")
    for n in range(MAX_API_KEYS):
        store = store.with_api_key_hash(f"{n:064x}")
    with pytest.raises(ValueError, match="--revoke-all"):
        store.with_api_key_hash("f" * 64)


def test_rotating_the_webhook_secret_keeps_the_api_keys() -> None:
    store = _store("acme", b"one", api_key_hashes=("a" * 64,))
    rotated = store.rotated(Secret(b"two"), now=NOW, window=timedelta(hours=1))
    assert rotated.api_key_hashes == ("a" * 64,)
    assert rotated.rotated(Secret(b"three"), now=NOW, window=timedelta(0)).api_key_hashes == (
        "a" * 64,
    )


def test_api_key_hashes_round_trip_and_stay_optional_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "stores.json"
    digest = api_key_digest(new_api_key("acme-woo"))
    registry = _sample_registry()
    woo = registry.get("acme-woo")
    assert woo is not None
    registry = registry.with_store(woo.with_api_key_hash(digest))
    registry.save(path, BOX)
    entries = {e["store_id"]: e for e in json.loads(path.read_text())["stores"]}
    assert entries["acme-woo"]["api_key_hashes"] == [digest]
    assert "api_key_hashes" not in entries["acme-shopify"]  # no keys: the entry is as before
    loaded = StoreRegistry.load(path, BOX)
    assert list(loaded) == list(registry)
    assert loaded.get("acme-shopify").api_key_hashes == ()  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("hashes", "message"),
    [('"abc"', "list of SHA-256"), ("[1]", "list of SHA-256"), ('["abc"]', "SHA-256 hex")],
)
def test_load_explains_malformed_api_key_hashes(tmp_path: Path, hashes: str, message: str) -> None:
    path = tmp_path / "stores.json"
    _sample_registry().save(path, BOX)
    text = path.read_text().replace(
        '"previous_secret_expires_at": null',
        f'"previous_secret_expires_at": null, "api_key_hashes": {hashes}',
        1,
    )
    path.write_text(text)
    with pytest.raises(RegistryError, match=message):
        StoreRegistry.load(path, BOX)


@settings(max_examples=25)
@given(ids=_store_ids, hashes=st.lists(_digests, min_size=6, max_size=6))
def test_any_api_key_hashes_survive_save_and_load(ids: list[str], hashes: list[list[str]]) -> None:
    stores = [_store(i, api_key_hashes=tuple(h)) for i, h in zip(ids, hashes, strict=False)]
    registry = StoreRegistry(stores)
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "stores.json"
        registry.save(path, BOX)
        loaded = StoreRegistry.load(path, BOX)
    assert [s.api_key_hashes for s in loaded] == [
        s.api_key_hashes for s in sorted(stores, key=lambda s: s.store_id)
    ]


def test_cli_api_keys(cli_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    _use_keys(monkeypatch, runner.invoke(stores_app, ["keygen"]).stdout.strip())
    result = runner.invoke(stores_app, ["api-key", "--store-id", "acme"])
    assert result.exit_code == 1
    assert "no store 'acme'" in result.stderr
    add = ["add", "--store-id", "acme", "--platform", "shopify", "--identity", "acme.myshopify.com"]
    assert runner.invoke(stores_app, [*add, "--secret", "shpss_one"]).exit_code == 0

    result = runner.invoke(stores_app, ["api-key", "--store-id", "acme"])
    assert result.exit_code == 0, result.output
    first = result.stdout.strip()
    assert re.fullmatch(r"rlk_acme_[A-Za-z0-9_-]{43}", first)
    assert first not in result.stderr
    assert "Authorization: Bearer" in result.stderr
    assert first not in cli_env.read_text()
    second = runner.invoke(stores_app, ["api-key", "--store-id", "acme"]).stdout.strip()
    assert second != first

    # Rotating the webhook secret keeps the API keys.
    assert runner.invoke(stores_app, [*add, "--secret", "shpss_two"]).exit_code == 0
    store = StoreRegistry.load(cli_env, SecretBox.from_settings(get_settings())).get("acme")
    assert store is not None
    assert store.accepts_api_key(first)
    assert store.accepts_api_key(second)

    listing = runner.invoke(stores_app, ["list"], env={"COLUMNS": "200"})
    assert "api keys" in listing.stdout
    assert first not in listing.output
    assert second not in listing.output

    result = runner.invoke(stores_app, ["api-key", "--store-id", "acme", "--revoke-all"])
    assert result.exit_code == 0, result.output
    assert "revoked 2 API key(s) of acme" in result.stdout
    store = StoreRegistry.load(cli_env, SecretBox.from_settings(get_settings())).get("acme")
    assert store is not None
    assert store.api_key_hashes == ()
    assert "api_key_hashes" not in cli_env.read_text()


def test_cli_refuses_an_eleventh_api_key(cli_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    _use_keys(monkeypatch, runner.invoke(stores_app, ["keygen"]).stdout.strip())
    add = ["add", "--store-id", "acme", "--platform", "shopify", "--identity", "acme.myshopify.com"]
    assert runner.invoke(stores_app, [*add, "--secret", "s"]).exit_code == 0
    for _ in range(MAX_API_KEYS):
        assert runner.invoke(stores_app, ["api-key", "--store-id", "acme"]).exit_code == 0
    result = runner.invoke(stores_app, ["api-key", "--store-id", "acme"])
    assert result.exit_code == 1
    assert "--revoke-all" in result.stderr
    assert result.stdout == ""


@given(st.lists(st.integers(min_value=-3, max_value=8), min_size=1, max_size=12))
def test_a_platforms_keys_follow_every_rotation_window_whatever_order_time_is_asked_in(
    hours: list[int],
) -> None:
    start = datetime(2026, 3, 14, tzinfo=UTC)
    stores = [
        _store("bc-a", b"a-new", platform="bigcommerce", identity="aaaa1111"),
        _store("bc-b", b"b-new", platform="bigcommerce", identity="bbbb2222"),
        _store("bc-c", b"c-only", platform="bigcommerce", identity="cccc3333"),
        _store("shop", b"s-only"),
    ]
    stores[0] = stores[0].rotated(Secret(b"a-newer"), now=start, window=timedelta(hours=2))
    stores[1] = stores[1].rotated(Secret(b"b-newer"), now=start, window=timedelta(hours=5))
    registry = StoreRegistry(stores)
    for hour in hours:  # any order: cached spans must not leak between times
        now = start + timedelta(hours=hour, minutes=30)
        expected = {k for s in stores[:3] for k in s.verification_keys(now)}
        assert registry.verification_keys("bigcommerce", now) == expected
    assert registry.verification_keys("woocommerce", start) == frozenset()


def _add_slowly(path: str, key: bytes, store_id: str, start: Any) -> None:
    # A slow read-modify-write: without the lock, writers overlap and the last one wins.
    box = SecretBox({"k1": key}, "k1")
    store = Store(store_id, "shopify", f"{store_id}.myshopify.com", (Secret(b"s"),))
    start.wait()
    StoreRegistry.update(
        Path(path), box, lambda registry: (time.sleep(0.05), registry.with_store(store))[1]
    )


def test_concurrent_updates_keep_every_writers_change(tmp_path: Path) -> None:
    key = os.urandom(32)
    path = tmp_path / "stores.json"
    context = multiprocessing.get_context("spawn")
    start = context.Event()
    writers = [
        context.Process(target=_add_slowly, args=(str(path), key, f"shop-{n}", start))
        for n in range(4)
    ]
    for writer in writers:
        writer.start()
    start.set()
    for writer in writers:
        writer.join(30)
        assert writer.exitcode == 0
    registry = StoreRegistry.load(path, SecretBox({"k1": key}, "k1"))
    assert sorted(store.store_id for store in registry) == [f"shop-{n}" for n in range(4)]


def test_an_update_that_raises_leaves_the_file_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "stores.json"
    first = Store("shop-a", "shopify", "shop-a.myshopify.com", (Secret(b"s"),))
    StoreRegistry.update(path, BOX, lambda registry: registry.with_store(first))
    before = path.read_bytes()

    def refuse(registry: StoreRegistry) -> StoreRegistry:
        raise RegistryError("no such store")

    with pytest.raises(RegistryError):
        StoreRegistry.update(path, BOX, refuse)
    assert path.read_bytes() == before


def test_currencies_are_read_without_the_master_keys(tmp_path: Path) -> None:
    path = tmp_path / "stores.json"
    assert store_currencies(path) == {}
    stores = [
        Store("shop-a", "shopify", "shop-a.myshopify.com", (Secret(b"s"),), currency="EUR"),
        Store("shop-b", "woocommerce", "https://shop-b.example.com", (Secret(b"s"),)),
    ]
    # Encrypted under a key the reader never sees.
    StoreRegistry(stores).save(path, SecretBox({"other": os.urandom(32)}, "other"))
    assert store_currencies(path) == {"shop-a": "EUR"}
    document = json.loads(path.read_text())
    document["stores"][0]["currency"] = "euro"
    path.write_text(json.dumps(document))
    with pytest.raises(RegistryError, match="ISO 4217"):
        store_currencies(path)


# --- a running service follows the file ---------------------------------------------------


def test_a_live_registry_reads_the_file_again_only_when_it_changed(tmp_path: Path) -> None:
    path = tmp_path / "stores.json"
    StoreRegistry([_store("acme-shopify")]).save(path, BOX)
    live = LiveStoreRegistry(path, BOX)
    assert not live.refresh()
    StoreRegistry.update(path, BOX, lambda r: r.with_store(_store("globex-shopify", b"s2")))
    assert live.lookup("shopify", "globex-shopify.myshopify.com") is None  # until refreshed
    assert live.refresh()
    globex = live.lookup("shopify", "globex-shopify.myshopify.com")
    assert globex is not None and globex.verification_keys(NOW) == (b"s2",)
    assert live.get("acme-shopify") is not None
    assert live.verification_keys("shopify", NOW) == {b"shpss_current", b"s2"}
    assert not live.refresh()
    assert "s2" not in repr(live)


@pytest.mark.parametrize(
    "damage",
    [
        lambda path: path.write_text('{"stores": ['),
        lambda path: path.unlink(),
        lambda path: StoreRegistry([_store("other")]).save(
            path, SecretBox({"k9": os.urandom(32)}, "k9")
        ),
    ],
    ids=["truncated", "deleted", "other-master-key"],
)
def test_a_file_that_no_longer_loads_keeps_the_last_good_stores(
    tmp_path: Path, damage: Any
) -> None:
    path = tmp_path / "stores.json"
    StoreRegistry([_store("acme-shopify")]).save(path, BOX)
    live = LiveStoreRegistry(path, BOX)
    damage(path)
    with pytest.raises((RegistryError, CryptoError, FileNotFoundError)):
        live.refresh()
    assert not live.refresh()  # reported once per change, not on every check
    assert live.lookup("shopify", "acme-shopify.myshopify.com") is not None
    StoreRegistry([_store("acme-shopify"), _store("later")]).save(path, BOX)
    assert live.refresh()
    assert live.get("later") is not None


def test_live_currencies_follow_the_file_and_survive_a_bad_one(tmp_path: Path) -> None:
    path = tmp_path / "stores.json"
    StoreRegistry([_store("acme-shopify", currency="EUR")]).save(path, BOX)
    currencies = LiveCurrencies(path, check_seconds=0)
    assert currencies.get("acme-shopify") == "EUR"
    assert currencies.get("globex-shopify") is None
    StoreRegistry.update(
        path, BOX, lambda r: r.with_store(_store("globex-shopify", currency="JPY"))
    )
    assert currencies.get("globex-shopify") == "JPY"
    path.write_text("not json")
    assert currencies.get("globex-shopify") == "JPY"
    assert dict(currencies) == {"acme-shopify": "EUR", "globex-shopify": "JPY"}


def test_a_stores_file_in_a_new_state_dir_is_private_but_the_dir_stays_traversable(
    tmp_path: Path,
) -> None:
    # The state dir also holds Postgres's data, which the `postgres` OS user must reach; a 0700
    # dir made by `revloop stores add` before `infra up` stopped the stack from starting.
    state_dir = tmp_path / "state"
    path = state_dir / "stores.json"
    first = Store("s1", "shopify", "one.myshopify.com", (Secret(b"k1"),))
    old_umask = os.umask(0o022)
    try:
        StoreRegistry.update(path, BOX, lambda registry: registry.with_store(first))
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(state_dir.stat().st_mode) == 0o755
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_cli_connects_ad_accounts_with_their_credentials_encrypted(
    cli_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = CliRunner()
    _use_keys(monkeypatch, runner.invoke(stores_app, ["keygen"]).stdout.strip())
    add = ["add", "--store-id", "acme", "--platform", "shopify", "--identity", "acme.myshopify.com"]
    assert runner.invoke(stores_app, [*add, "--secret", "shpss_one"]).exit_code == 0
    meta = '{"token": "EAAB-very-secret"}'
    connect = ["connect", "--store-id", "acme", "--channel", "meta", "--account", "act_42"]
    done = runner.invoke(stores_app, [*connect, "--credentials", "-"], input=meta)
    assert done.exit_code == 0, done.output
    google = '{"token": "ya29-secret", "developer_token": "dev-secret"}'
    connect_google = ["connect", "--store-id", "acme", "--channel", "google", "--account", "123"]
    assert (
        runner.invoke(stores_app, [*connect_google, "--credentials", "-"], input=google).exit_code
        == 0
    )
    text = cli_env.read_text()
    assert "EAAB" not in text and "ya29" not in text and "dev-secret" not in text
    store = StoreRegistry.load(cli_env, SecretBox.from_settings(get_settings())).get("acme")
    assert store is not None
    connection = store.connection("meta")
    assert connection is not None and connection.fields() == {"token": "EAAB-very-secret"}
    assert "EAAB" not in repr(store) + repr(connection)
    listing = runner.invoke(stores_app, ["list"], env={"COLUMNS": "200"})
    assert "meta:act_42" in listing.stdout and "google:123" in listing.stdout
    assert "EAAB" not in listing.output

    # Google by refresh token: the three fields it mints with, or refused naming them.
    refresh = '{"refresh_token": "1//r", "client_id": "c", "client_secret": "cs", '
    minted = runner.invoke(
        stores_app,
        [*connect_google, "--credentials", "-"],
        input=refresh + '"developer_token": "dev-secret"}',
    )
    assert minted.exit_code == 0, minted.output
    half = runner.invoke(
        stores_app, [*connect_google, "--credentials", "-"], input='{"refresh_token": "1//r"}'
    )
    assert half.exit_code == 1 and "client_secret" in half.stderr and "1//r" not in half.output
    # Bad input is refused with a reason and without the input.
    bad = runner.invoke(stores_app, [*connect, "--credentials", "-"], input='{"tok": "EAAB-x"}')
    assert bad.exit_code == 1 and "token" in bad.stderr and "EAAB" not in bad.output
    wrong = ["connect", "--store-id", "acme", "--channel", "meta", "--account", "act_4/2"]
    refused = runner.invoke(stores_app, [*wrong, "--credentials", "-"], input=meta)
    assert refused.exit_code == 1 and "not an account id" in refused.stderr
    # Credentials are bound to their store: moved to another entry, they do not decrypt.
    document = json.loads(cli_env.read_text())
    other = {**document["stores"][0], "store_id": "other", "identity": "other.myshopify.com"}
    box = SecretBox.from_settings(get_settings())
    other["secrets"] = [box.encrypt(b"shpss_other", context=secret_context("other"))]
    cli_env.write_text(json.dumps({"stores": [*document["stores"], other]}))
    with pytest.raises(CryptoError, match="store 'other': cannot decrypt its connections"):
        StoreRegistry.load(cli_env, SecretBox.from_settings(get_settings()))
    cli_env.write_text(json.dumps(document))

    removed = runner.invoke(
        stores_app, ["connect", "--store-id", "acme", "--channel", "meta", "--remove"]
    )
    assert removed.exit_code == 0, removed.output
    store = StoreRegistry.load(cli_env, SecretBox.from_settings(get_settings())).get("acme")
    assert store is not None and [c.channel for c in store.connections] == ["google"]
