"""A store's own settings: versions in effect from a time, resolved per event time, kept in the
stores file, followed live by the worker, and set with `revloop stores settings`."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from revloop.cli.stores import stores_app
from revloop.crypto import Secret, SecretBox, new_master_key
from revloop.settings import STORE_SETTINGS, Settings, get_settings
from revloop.stores import (
    LiveStoreSettings,
    RegistryError,
    SettingsVersion,
    Store,
    StoreRegistry,
    StoreSettings,
)
from revloop.stores.store_settings import settings_histories

BOX = SecretBox({"k1": os.urandom(32)}, "k1")
T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
DEFAULTS = Settings(_env_file=None)  # type: ignore[call-arg]


def _store(store_id: str, *versions: SettingsVersion) -> Store:
    return Store(
        store_id,
        "shopify",
        f"{store_id}.myshopify.com",
        (Secret(b"shpss_x"),),
        currency="USD",
        settings=versions,
    )


def test_an_event_gets_the_version_in_effect_at_its_time() -> None:
    histories = {
        "acme": (
            SettingsVersion(T0, {"breaker_dwell_seconds": 600, "attribution_model": "linear"}),
            SettingsVersion(T0 + timedelta(days=1), {"breaker_dwell_seconds": 60}),
        )
    }
    stores = StoreSettings(DEFAULTS, histories)
    before = stores.at("acme", T0 - timedelta(microseconds=1))
    assert before.breaker_dwell_seconds == DEFAULTS.breaker_dwell_seconds == 300
    assert stores.at("acme", T0).breaker_dwell_seconds == 600  # from its instant on
    assert stores.at("acme", T0).attribution_model == "linear"
    later = stores.at("acme", T0 + timedelta(days=2))
    assert later.breaker_dwell_seconds == 60
    assert later.attribution_model == "last_click"  # not in the later version: the default
    assert stores.at("other", T0 + timedelta(days=2)) is DEFAULTS


def test_rules_are_built_once_per_store_and_version() -> None:
    stores = StoreSettings(DEFAULTS, {"acme": (SettingsVersion(T0, {"breaker_restock_at": 5}),)})
    made: list[int] = []

    def make(settings: Settings) -> int:
        made.append(settings.breaker_restock_at)
        return settings.breaker_restock_at

    values = [stores.build("acme", T0 + timedelta(minutes=m), make) for m in range(-2, 3)]
    assert values == [1, 1, 5, 5, 5]
    assert made == [1, 5]


@given(st.lists(st.integers(-1000, 1000), min_size=1, max_size=6, unique=True), st.integers())
def test_resolution_matches_the_latest_version_not_after_the_event(
    offsets: list[int], probe: int
) -> None:
    starts = sorted(T0 + timedelta(minutes=m) for m in offsets)
    versions = tuple(
        SettingsVersion(start, {"breaker_restock_at": n + 2}) for n, start in enumerate(starts)
    )
    at = T0 + timedelta(minutes=probe % 2200 - 1100)
    in_effect = [n for n, start in enumerate(starts) if start <= at]
    expected = in_effect[-1] + 2 if in_effect else DEFAULTS.breaker_restock_at
    assert StoreSettings(DEFAULTS, {"s": versions}).at("s", at).breaker_restock_at == expected


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"kafka_port": 1}, "not settable per store: kafka_port"),
        ({"breaker_restock_at": 0}, "breaker_restock_at must be above breaker_out_of_stock_at"),
        ({"attribution_model": "newest"}, "attribution_model"),
        ({"attribution_holdout_bp": 10_001}, "attribution_holdout_bp"),
    ],
)
def test_invalid_store_settings_are_refused_naming_the_fault(
    values: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        StoreSettings(DEFAULTS, {"acme": (SettingsVersion(T0, values),)})
    assert "postgres_password" not in str(caught.value)  # no dump of every setting


def test_versions_must_take_effect_in_order() -> None:
    later, earlier = SettingsVersion(T0 + timedelta(1)), SettingsVersion(T0)
    with pytest.raises(ValueError, match="increasing time order"):
        _store("acme", later, earlier)
    with pytest.raises(ValueError, match="timezone-aware"):
        SettingsVersion(datetime(2026, 12, 1))


def test_the_file_keeps_versions_and_the_worker_reads_them_without_keys(tmp_path: Path) -> None:
    path = tmp_path / "stores.json"
    versions = (SettingsVersion(T0, {"breaker_low_stock_below": 5, "attribution_view_days": 2.5}),)
    StoreRegistry([_store("acme", *versions), _store("beta")]).save(path, BOX)
    assert StoreRegistry.load(path, BOX).get("acme").settings == versions  # type: ignore[union-attr]
    assert settings_histories(path) == {"acme": versions, "beta": ()}
    assert "settings" not in json.loads(path.read_text())["stores"][1]  # none: no key written
    assert settings_histories(tmp_path / "missing.json") == {}


def test_the_live_view_follows_the_file_and_keeps_the_last_good_settings(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "stores.json"
    StoreRegistry([_store("acme")]).save(path, BOX)
    live = LiveStoreSettings(path, DEFAULTS, check_seconds=0.001)
    assert live.current.at("acme", T0).breaker_out_of_stock_at == 0
    version = SettingsVersion(T0, {"breaker_out_of_stock_at": 2, "breaker_restock_at": 4})
    StoreRegistry([_store("acme", version)]).save(path, BOX)
    _wait_past_check()
    assert live.current.at("acme", T0).breaker_out_of_stock_at == 2
    document = json.loads(path.read_text())
    document["stores"][0]["settings"][0]["values"]["breaker_restock_at"] = 1  # below 2: invalid
    path.write_text(json.dumps(document))
    _wait_past_check()
    assert live.current.at("acme", T0).breaker_restock_at == 4
    assert "previous settings kept" in caplog.text


def _wait_past_check() -> None:
    deadline = datetime.now(UTC) + timedelta(milliseconds=20)
    while datetime.now(UTC) < deadline:
        pass


# --- `revloop stores settings` -------------------------------------------------------------------


ADD = ["add", "--store-id", "acme", "--platform", "shopify", "--identity", "acme.myshopify.com"]
SETTINGS = ["settings", "--store-id", "acme"]


@pytest.fixture
def cli_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    path = tmp_path / "stores.json"
    monkeypatch.setenv("REVLOOP_STORES_FILE", str(path))
    monkeypatch.setenv("REVLOOP_MASTER_KEYS", new_master_key("k1"))
    get_settings.cache_clear()
    result = CliRunner().invoke(
        stores_app,
        [*ADD, "--secret", "shpss_first"],
    )
    assert result.exit_code == 0, result.output
    yield path
    get_settings.cache_clear()


def test_cli_adds_versions_from_a_time_to_come_with_typed_values(cli_store: Path) -> None:
    runner = CliRunner()
    before = datetime.now(UTC)
    result = runner.invoke(
        stores_app,
        [
            *SETTINGS,
            *("--set", "breaker_dwell_seconds=600", "--set", "attribution_model=linear"),
            *("--set", "breaker_low_stock_below=5"),
        ],
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(
        stores_app,
        [
            *SETTINGS,
            *("--unset", "attribution_model", "--set", "breaker_low_stock_below=null"),
            *("--from", "2030-01-01T00:00:00+00:00"),
        ],
    )
    assert result.exit_code == 0, result.output
    first, second = settings_histories(cli_store)["acme"]
    lead = timedelta(seconds=get_settings().stores_settings_lead_seconds)
    assert before + lead <= first.effective_from <= datetime.now(UTC) + lead
    assert first.values == {
        "breaker_dwell_seconds": 600.0,
        "attribution_model": "linear",
        "breaker_low_stock_below": 5,
    }
    # Each version stands alone: the earlier values carried over, unset ones dropped.
    assert second.effective_from == datetime(2030, 1, 1, tzinfo=UTC)
    assert second.values == {"breaker_dwell_seconds": 600.0, "breaker_low_stock_below": None}
    shown = runner.invoke(stores_app, ["settings", "--store-id", "acme"])
    assert shown.exit_code == 0, shown.output
    assert "from 2030-01-01T00:00:00+00:00: breaker_dwell_seconds=600.0" in shown.output
    # A new secret for the store keeps its settings.
    rotated = runner.invoke(
        stores_app,
        [*ADD, "--secret", "shpss_second"],
    )
    assert rotated.exit_code == 0, rotated.output
    assert settings_histories(cli_store)["acme"] == (first, second)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "kafka_port=1"], "not settable per store: kafka_port"),
        (["--set", "breaker_restock_at=0"], "must be above breaker_out_of_stock_at"),
        (["--set", "dwell"], "--set wants NAME=VALUE"),
        (["--set", "breaker_dwell_seconds=1", "--from", "2020-01-01T00:00:00+00:00"], "past"),
        (["--set", "breaker_dwell_seconds=1", "--from", "2031-01-01T00:00:00"], "Invalid value"),
    ],
)
def test_cli_refuses_what_would_break_a_replay_or_the_breaker(
    cli_store: Path, args: list[str], message: str
) -> None:
    result = CliRunner().invoke(stores_app, ["settings", "--store-id", "acme", *args])
    assert result.exit_code != 0
    assert message in " ".join(result.output.split())  # rich wraps long lines
    assert settings_histories(cli_store)["acme"] == ()


def test_cli_names_a_missing_store(cli_store: Path) -> None:
    result = CliRunner().invoke(stores_app, ["settings", "--store-id", "nope"])
    assert result.exit_code == 1
    assert "no store 'nope'" in " ".join(result.output.split())


def test_every_store_setting_is_a_setting() -> None:
    assert set(Settings.model_fields) >= STORE_SETTINGS
    with pytest.raises(RegistryError):
        StoreSettings(DEFAULTS, {"acme": (SettingsVersion(T0), SettingsVersion(T0))})
