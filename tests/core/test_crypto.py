"""revloop.crypto: the AES-256-GCM envelope for credentials at rest."""

from __future__ import annotations

import base64
import os
import re

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from pydantic import SecretStr

from revloop.crypto import CryptoError, Secret, SecretBox, new_master_key
from revloop.settings import Settings

K1, K2 = os.urandom(32), os.urandom(32)
BOX = SecretBox({"k1": K1}, "k1")
ROTATED = SecretBox({"k1": K1, "k2": K2}, "k2")
TOKEN = re.compile(r"v1\.(?P<key_id>[A-Za-z0-9_-]+)\.(?P<body>[A-Za-z0-9_-]+)")

contexts = st.text(min_size=1, max_size=80)
plaintexts = st.binary(max_size=512)


def _body(token: str) -> bytes:
    body = token.rsplit(".", 1)[1]
    return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))


def _with_body(token: str, blob: bytes) -> str:
    head = token.rsplit(".", 1)[0]
    return f"{head}.{base64.urlsafe_b64encode(blob).rstrip(b'=').decode()}"


def _key_spellings(key: bytes) -> list[str]:
    return [
        repr(key),
        key.hex(),
        base64.b64encode(key).decode(),
        base64.urlsafe_b64encode(key).decode().rstrip("="),
    ]


@given(plaintext=plaintexts, context=contexts)
def test_round_trip_for_any_bytes_and_context(plaintext: bytes, context: str) -> None:
    token = BOX.encrypt(plaintext, context=context)
    assert BOX.decrypt(token, context=context) == plaintext


@given(plaintext=plaintexts)
def test_token_format(plaintext: bytes) -> None:
    token = ROTATED.encrypt(plaintext, context="c")
    match = TOKEN.fullmatch(token)
    assert match is not None
    assert match["key_id"] == "k2"
    assert "=" not in token
    assert len(_body(token)) == 12 + len(plaintext) + 16


def test_every_encryption_uses_a_fresh_nonce() -> None:
    tokens = {BOX.encrypt(b"same", context="c") for _ in range(50)}
    assert len(tokens) == 50
    assert len({_body(t)[:12] for t in tokens}) == 50


@given(plaintext=plaintexts, context=contexts, data=st.data())
def test_any_single_bit_flip_in_the_body_is_refused(
    plaintext: bytes, context: str, data: st.DataObject
) -> None:
    token = BOX.encrypt(plaintext, context=context)
    blob = bytearray(_body(token))
    bit = data.draw(st.integers(0, len(blob) * 8 - 1))
    blob[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(CryptoError):
        BOX.decrypt(_with_body(token, bytes(blob)), context=context)


@given(plaintext=plaintexts, context=contexts, data=st.data())
def test_any_single_bit_flip_in_the_token_text_is_refused(
    plaintext: bytes, context: str, data: st.DataObject
) -> None:
    token = BOX.encrypt(plaintext, context=context)
    index = data.draw(st.integers(0, len(token) - 1))
    bit = data.draw(st.integers(0, 7))
    flipped = token[:index] + chr(ord(token[index]) ^ (1 << bit)) + token[index + 1 :]
    with pytest.raises(CryptoError):
        ROTATED.decrypt(flipped, context=context)


@given(plaintext=plaintexts, context=contexts, other=contexts)
def test_another_context_is_refused(plaintext: bytes, context: str, other: str) -> None:
    assume(context != other)
    token = BOX.encrypt(plaintext, context=context)
    with pytest.raises(CryptoError, match="failed authentication"):
        BOX.decrypt(token, context=other)


def test_a_token_copied_to_another_store_is_refused() -> None:
    token = BOX.encrypt(b"shpss_acme", context="store:acme:webhook_secret")
    with pytest.raises(CryptoError, match="store:globex:webhook_secret"):
        BOX.decrypt(token, context="store:globex:webhook_secret")


@given(plaintext=plaintexts, context=contexts, key=st.binary(min_size=32, max_size=32))
def test_another_key_under_the_same_id_is_refused(
    plaintext: bytes, context: str, key: bytes
) -> None:
    assume(key != K1)
    token = BOX.encrypt(plaintext, context=context)
    with pytest.raises(CryptoError):
        SecretBox({"k1": key}, "k1").decrypt(token, context=context)


def test_an_unknown_key_id_is_named() -> None:
    token = ROTATED.encrypt(b"x", context="c")
    with pytest.raises(CryptoError, match=r"'k2'.*not in the keyring"):
        BOX.decrypt(token, context="c")


@given(token=st.text(max_size=200) | st.text(max_size=60).map(lambda s: "v1.k1." + s))
def test_garbage_tokens_raise_only_crypto_error(token: str) -> None:
    with pytest.raises(CryptoError):
        BOX.decrypt(token, context="c")


@pytest.mark.parametrize(
    "token",
    ["", "v1.k1", "v1.k1.", "v2.k1.AAAA", "v1..AAAA", "v1.k1.AAAA.x", "v1.k1.AAAA=", "v1.k1.AA"],
)
def test_malformed_tokens(token: str) -> None:
    with pytest.raises(CryptoError, match=r"malformed|unsupported"):
        BOX.decrypt(token, context="c")


@given(plaintext=plaintexts, context=contexts)
def test_key_rotation(plaintext: bytes, context: str) -> None:
    old = BOX.encrypt(plaintext, context=context)
    # A new primary still reads tokens made under the old key...
    assert ROTATED.decrypt(old, context=context) == plaintext
    # ...and rotate() moves them to the new one, which then needs no old key at all.
    new = ROTATED.rotate(old, context)
    match = TOKEN.fullmatch(new)
    assert match is not None
    assert match["key_id"] == "k2"
    assert SecretBox({"k2": K2}, "k2").decrypt(new, context=context) == plaintext


def test_rotate_keeps_the_context_binding() -> None:
    old = BOX.encrypt(b"x", context="a")
    with pytest.raises(CryptoError):
        ROTATED.rotate(old, "b")


@given(plaintext=st.binary(min_size=16, max_size=64), context=contexts)
def test_no_key_or_plaintext_in_reprs_or_errors(plaintext: bytes, context: str) -> None:
    token = BOX.encrypt(plaintext, context=context)
    messages = [repr(BOX), str(BOX), repr(ROTATED)]
    for attempt in (
        lambda: BOX.decrypt(token, context=context + "x"),
        lambda: SecretBox({"k1": K2}, "k1").decrypt(token, context=context),
        lambda: BOX.decrypt(token[:-2], context=context),
        lambda: BOX.decrypt(token.replace("k1", "k9"), context=context),
    ):
        with pytest.raises(CryptoError) as caught:
            attempt()
        messages.append(str(caught.value))
        assert caught.value.__cause__ is None
    leaks = [*_key_spellings(K1), *_key_spellings(K2), plaintext.hex(), repr(plaintext)]
    for message in messages:
        for leak in leaks:
            assert leak not in message


def test_repr_shows_only_key_ids() -> None:
    assert repr(ROTATED) == "SecretBox(primary='k2', key_ids=('k1', 'k2'))"


def test_secret_is_masked() -> None:
    secret = Secret(b"shpss_very_secret")
    assert "very_secret" not in repr(secret)
    assert "very_secret" not in str(secret)
    assert "very_secret" not in f"{secret} {secret!r} {[secret]}"
    assert secret.reveal() == b"shpss_very_secret"
    assert secret == Secret(b"shpss_very_secret")
    assert secret != Secret(b"other")
    assert hash(secret) == hash(Secret(b"shpss_very_secret"))


@pytest.mark.parametrize(
    ("keyring", "primary", "message"),
    [
        ({}, "k1", "empty"),
        ({"k1": b"short"}, "k1", "32 bytes"),
        ({"k1": K1}, "k2", "not in the keyring"),
        ({"bad.id": K1}, "bad.id", "must match"),
    ],
)
def test_keyring_validation(keyring: dict[str, bytes], primary: str, message: str) -> None:
    with pytest.raises(CryptoError, match=message):
        SecretBox(keyring, primary)


def _settings(master_keys: str | None) -> Settings:
    return Settings(master_keys=None if master_keys is None else SecretStr(master_keys))


def test_from_settings_uses_the_first_key_as_primary() -> None:
    entry1, entry2 = new_master_key("new"), new_master_key("old")
    box = SecretBox.from_settings(_settings(f"{entry1}, {entry2}"))
    assert box.primary_key_id == "new"
    assert box.key_ids == ("new", "old")
    old_only = SecretBox.from_settings(_settings(entry2))
    assert box.decrypt(old_only.encrypt(b"x", context="c"), context="c") == b"x"


def test_from_settings_without_keys_explains_keygen() -> None:
    with pytest.raises(CryptoError, match="revloop stores keygen"):
        SecretBox.from_settings(_settings(None))


def test_from_settings_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REVLOOP_MASTER_KEYS", new_master_key("env1"))
    assert SecretBox.from_settings(Settings()).key_ids == ("env1",)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("k1:" + base64.b64encode(b"x" * 16).decode(), "16 bytes"),
        ("k1:" + base64.b64encode(b"x" * 33).decode(), "33 bytes"),
        ("k1:not*base64", "not valid base64"),
        ("k1", "entry #1"),
        (new_master_key("a") + ",", "entry #2"),
        (f"{new_master_key('a')},{new_master_key('a')}", "twice"),
        ("", "entry #1"),
    ],
)
def test_master_key_validation(value: str, message: str) -> None:
    with pytest.raises(CryptoError, match=message):
        SecretBox.from_settings(_settings(value))


def test_a_swapped_entry_does_not_echo_the_key() -> None:
    key = base64.b64encode(os.urandom(32)).decode()
    with pytest.raises(CryptoError) as caught:
        SecretBox.from_settings(_settings(f"{key}:k1"))
    assert key not in str(caught.value)
    assert key[:20] not in str(caught.value)


def test_new_master_key_is_an_id_and_32_random_bytes() -> None:
    key_id, _, encoded = new_master_key("k7").partition(":")
    assert key_id == "k7"
    assert len(base64.b64decode(encoded, validate=True)) == 32
    assert new_master_key("k7") != new_master_key("k7")
    with pytest.raises(CryptoError):
        new_master_key("no:colons")
