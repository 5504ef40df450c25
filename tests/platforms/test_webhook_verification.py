"""Signature checks of the three platforms, on raw bytes (pure; no broker)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from platforms import bigcommerce, shopify, woocommerce
from platforms.webhooks import (
    Rejected,
    hmac_sha256_b64,
    signed_by_any,
    signing_keys,
    verified_fields,
)
from revloop.crypto import Secret
from revloop.ids import EVENT_ID_NAMESPACE, deterministic_id
from revloop.stores import Store
from tests import FIXTURES
from tests.ingest_support import BC_SECRET, NOW, SHOP_SECRET, WOO_SECRET, make_registry

REGISTRY = make_registry()


def test_shopify_known_answer_matches_openssl() -> None:
    # printf '{"id":1}' | openssl dgst -sha256 -hmac shpss_test_secret -binary | base64
    headers = shopify.signed_headers(
        b'{"id":1}',
        b"shpss_test_secret",
        shop_domain="acme.myshopify.com",
        topic="orders/create",
        webhook_id="w1",
        triggered_at=NOW,
    )
    assert headers["x-shopify-hmac-sha256"] == "K2XDCjoIIQnsCAW9wJNjHt4VwaiFCMoHAkXVA+JPSq0="


def test_bigcommerce_known_answer_matches_openssl() -> None:
    # printf 'msg_1.1795457000.{"id":1}' | openssl dgst -sha256 -hmac bc_client_secret -binary
    #   | base64
    sent_at = datetime.fromtimestamp(1795457000, UTC)
    headers = bigcommerce.signed_headers(
        b'{"id":1}', b"bc_client_secret", webhook_id="msg_1", sent_at=sent_at
    )
    assert headers["webhook-signature"] == "v1,RfPMiNPS+KzE1VAYld4hMn9G/ExzSWFn2SXEHCt40/Q="


def _shopify(body: bytes, secret: bytes = SHOP_SECRET, **overrides: str) -> dict[str, str]:
    headers = shopify.signed_headers(
        body,
        secret,
        shop_domain="acme.myshopify.com",
        topic="orders/create",
        webhook_id="b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
        triggered_at=NOW,
    )
    return {**headers, **overrides}


def test_shopify_accepts_a_genuine_delivery_with_a_deterministic_event_id() -> None:
    body = (FIXTURES / "shopify" / "orders__create.json").read_bytes()
    first = shopify.authenticate(body, _shopify(body), REGISTRY, NOW)
    again = shopify.authenticate(body, _shopify(body), REGISTRY, NOW + timedelta(hours=3))
    assert first.store.store_id == "acme-shopify"
    assert first.topic == "orders/create"
    assert first.event_id == again.event_id
    assert first.occurred_at == NOW
    other = shopify.authenticate(
        body, _shopify(body, **{"x-shopify-webhook-id": "another"}), REGISTRY, NOW
    )
    assert other.event_id != first.event_id


@pytest.mark.parametrize(
    ("headers_change", "reason"),
    [
        ({"x-shopify-hmac-sha256": "AAAA"}, "bad_signature"),
        ({"x-shopify-shop-domain": "evil.myshopify.com"}, "unknown_store"),
        ({"x-shopify-shop-domain": "not a domain"}, "unknown_store"),
    ],
)
def test_shopify_refusals_say_why(headers_change: dict[str, str], reason: str) -> None:
    body = b'{"id":1}'
    with pytest.raises(Rejected) as refused:
        shopify.authenticate(body, _shopify(body, **headers_change), REGISTRY, NOW)
    assert refused.value.status == 401
    assert refused.value.reason == reason


def test_shopify_missing_signature_is_refused() -> None:
    body = b'{"id":1}'
    headers = _shopify(body)
    del headers["x-shopify-hmac-sha256"]
    with pytest.raises(Rejected, match="headers missing"):
        shopify.authenticate(body, headers, REGISTRY, NOW)


def test_shopify_previous_secret_works_only_inside_the_rotation_window() -> None:
    body = b'{"id":2}'
    headers = _shopify(body, secret=b"old-shopify-secret")
    registry = make_registry(
        previous_shop_secret=b"old-shopify-secret", window_ends=NOW + timedelta(hours=1)
    )
    assert shopify.authenticate(body, headers, registry, NOW).store.store_id == "acme-shopify"
    with pytest.raises(Rejected, match="signature"):
        shopify.authenticate(body, headers, registry, NOW + timedelta(hours=2))


def test_woocommerce_event_id_comes_from_resource_and_modification_time() -> None:
    body = (FIXTURES / "woocommerce" / "order__updated.json").read_bytes()
    payload = json.loads(body)

    def headers(delivery_id: str) -> dict[str, str]:
        return woocommerce.signed_headers(
            body,
            WOO_SECRET,
            source="https://Shop.Example.com/",
            topic="order.updated",
            webhook_id="12",
            delivery_id=delivery_id,
        )

    first = woocommerce.authenticate(body, headers("d-1"), REGISTRY, NOW)
    resent = woocommerce.authenticate(body, headers("d-2"), REGISTRY, NOW)
    assert first.store.store_id == "shop-woo"
    assert first.event_id == resent.event_id  # a new delivery id is not a new event
    assert first.occurred_at == datetime.fromisoformat(payload["date_modified_gmt"]).replace(
        tzinfo=UTC
    )


def test_woocommerce_ping_is_recognised_only_unsigned_and_form_encoded() -> None:
    form = {"content-type": "application/x-www-form-urlencoded"}
    assert woocommerce.is_ping(b"webhook_id=42", form)
    assert not woocommerce.is_ping(b"webhook_id=42&x=1", form)
    assert not woocommerce.is_ping(b"webhook_id=42", {"content-type": "application/json"})
    assert not woocommerce.is_ping(b"webhook_id=42", {**form, "x-wc-webhook-signature": "x"})


def _bigcommerce(body: bytes, sent_at: datetime = NOW, secret: bytes = BC_SECRET) -> dict[str, str]:
    return bigcommerce.signed_headers(body, secret, webhook_id="msg_abc", sent_at=sent_at)


def test_bigcommerce_verifies_then_finds_the_store_from_the_producer() -> None:
    body = (FIXTURES / "bigcommerce" / "store__order__created.json").read_bytes()
    payload = json.loads(body)
    delivery = bigcommerce.authenticate(
        body, _bigcommerce(body), make_registry(bc_hash=payload["producer"].split("/")[1]), NOW
    )
    assert delivery.topic == "store/order/created"
    assert delivery.store.platform == "bigcommerce"


def test_bigcommerce_event_id_survives_a_double_fire_but_not_a_later_equal_change() -> None:
    def delivery(created_at: int, webhook_id: str) -> str:
        body = json.dumps(
            {
                "producer": "stores/abc123",
                "scope": "store/sku/inventory/updated",
                "data": {"type": "sku", "id": 461, "inventory": {"method": "absolute", "value": 5}},
                "hash": "56fc24f7eedbcd67657bb1c50b488698f84d8115",  # SHA-1 of data: equal
                "created_at": created_at,
            }
        ).encode()
        headers = bigcommerce.signed_headers(body, BC_SECRET, webhook_id=webhook_id, sent_at=NOW)
        return bigcommerce.authenticate(body, headers, REGISTRY, NOW).event_id

    fired = delivery(1773924764, "msg_1")
    assert delivery(1773924764, "msg_2") == fired  # BigCommerce fired the same event twice
    assert delivery(1773925000, "msg_3") != fired  # back at 5 later: a real change


@pytest.mark.parametrize("skew", [timedelta(minutes=-6), timedelta(minutes=6)])
def test_bigcommerce_refuses_timestamps_outside_the_window(skew: timedelta) -> None:
    body = b'{"producer": "stores/abc123", "scope": "store/order/created", "hash": "h"}'
    with pytest.raises(Rejected) as refused:
        bigcommerce.authenticate(body, _bigcommerce(body, sent_at=NOW + skew), REGISTRY, NOW)
    assert refused.value.reason == "stale_timestamp"


def test_bigcommerce_accepts_any_of_several_signatures_and_checks_custom_headers() -> None:
    body = b'{"producer": "stores/abc123", "scope": "store/order/created", "hash": "h"}'
    headers = _bigcommerce(body)
    headers["webhook-signature"] = "v1,bm90LWl0 " + headers["webhook-signature"]
    assert bigcommerce.authenticate(body, headers, REGISTRY, NOW).store.store_id == "bc-store"
    with pytest.raises(Rejected, match="custom secret header"):
        bigcommerce.authenticate(
            body, headers, REGISTRY, NOW, custom_headers={"x-revloop-key": "k"}
        )
    headers["x-revloop-key"] = "k"
    assert bigcommerce.authenticate(
        body, headers, REGISTRY, NOW, custom_headers={"x-revloop-key": "k"}
    )


# --- properties: nothing but the exact signed bytes verifies ---


def _flip(data: bytes, index: int, bit: int) -> bytes:
    index %= len(data)
    return data[:index] + bytes([data[index] ^ (1 << bit)]) + data[index + 1 :]


@settings(max_examples=200)
@given(
    body=st.binary(min_size=1, max_size=512), index=st.integers(0, 10_000), bit=st.integers(0, 7)
)
def test_any_changed_byte_breaks_every_platform_signature(
    body: bytes, index: int, bit: int
) -> None:
    tampered = _flip(body, index, bit)
    attempts = [
        (shopify.authenticate, _shopify(body)),
        (bigcommerce.authenticate, _bigcommerce(body)),
        (
            woocommerce.authenticate,
            woocommerce.signed_headers(
                body,
                WOO_SECRET,
                source="https://shop.example.com",
                topic="order.created",
                webhook_id="1",
                delivery_id="d",
            ),
        ),
    ]
    for authenticate, headers in attempts:
        with pytest.raises(Rejected) as refused:
            authenticate(tampered, headers, REGISTRY, NOW)
        assert refused.value.status == 401


@settings(max_examples=200)
@given(
    headers=st.dictionaries(
        st.sampled_from(
            [
                "x-shopify-hmac-sha256",
                "x-shopify-shop-domain",
                "x-shopify-topic",
                "x-shopify-webhook-id",
                "x-wc-webhook-source",
                "x-wc-webhook-signature",
                "x-wc-webhook-topic",
                "webhook-id",
                "webhook-timestamp",
                "webhook-signature",
                "content-type",
            ]
        ),
        st.text(max_size=80),
    ),
    body=st.binary(max_size=256),
)
def test_arbitrary_headers_are_refused_with_401_and_never_crash(
    headers: dict[str, str], body: bytes
) -> None:
    for module in (shopify, woocommerce, bigcommerce):
        with pytest.raises(Rejected) as refused:
            module.authenticate(body, headers, REGISTRY, NOW)
        assert refused.value.status == 401


@given(
    st.lists(st.binary(min_size=1, max_size=8), min_size=1, max_size=4, unique=True),
    st.data(),
)
def test_signing_keys_are_exactly_the_keys_behind_some_candidate(
    keys: list[bytes], data: st.DataObject
) -> None:
    message = b"msg_1.1795457000.{}"
    signers = data.draw(st.sets(st.sampled_from(keys)))
    candidates = [hmac_sha256_b64(key, message) for key in signers] + [b"not-a-signature"]
    assert signing_keys(data.draw(st.permutations(candidates)), keys, message) == signers
    assert signed_by_any(candidates, keys, message) == bool(signers)


def test_bigcommerce_one_apps_signature_cannot_speak_for_another_apps_store() -> None:
    other_app = Store("other-bc", "bigcommerce", "zzz999", (Secret(b"other-app-secret"),))
    registry = make_registry().with_store(other_app)
    body = b'{"producer": "stores/abc123", "scope": "store/order/created", "hash": "h"}'
    forged = _bigcommerce(body, secret=b"other-app-secret")
    with pytest.raises(Rejected, match="not the store's app's"):
        bigcommerce.authenticate(body, forged, registry, NOW)
    assert (
        bigcommerce.authenticate(body, _bigcommerce(body), registry, NOW).store.store_id
        == "bc-store"
    )
    bare = b'{"producer": "abc123", "scope": "store/order/created", "hash": "h"}'
    with pytest.raises(Rejected, match="names no store"):
        bigcommerce.authenticate(bare, _bigcommerce(bare), registry, NOW)


@pytest.mark.parametrize("stamp", ["\u00b2", "99999999999999999", "9" * 5000, "-1", " 1"])
def test_bigcommerce_odd_timestamps_are_401_not_500(stamp: str) -> None:
    body = b'{"producer": "stores/abc123"}'
    headers = {**_bigcommerce(body), "webhook-timestamp": stamp}
    with pytest.raises(Rejected) as refused:
        bigcommerce.authenticate(body, headers, REGISTRY, NOW)
    assert refused.value.status == 401


def test_bigcommerce_caps_the_signatures_it_will_check() -> None:
    body = b'{"producer": "stores/abc123", "scope": "store/order/created", "hash": "h"}'
    genuine = _bigcommerce(body)["webhook-signature"]
    padded = {**_bigcommerce(body), "webhook-signature": " ".join(["v1,a"] * 3000 + [genuine])}
    with pytest.raises(Rejected, match="signature"):  # the genuine one is past the cap
        bigcommerce.authenticate(body, padded, REGISTRY, NOW)
    first = {**_bigcommerce(body), "webhook-signature": genuine + " v1,a" * 3000}
    assert bigcommerce.authenticate(body, first, REGISTRY, NOW).store.store_id == "bc-store"


@given(st.text(max_size=300))
def test_deterministic_ids_are_exactly_uuid5_in_the_event_namespace(name: str) -> None:
    # Ids already in Kafka were made with uuid.uuid5; the fast path must never drift from it.
    assert deterministic_id(name) == str(uuid.uuid5(EVENT_ID_NAMESPACE, name))


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(
    JSON_VALUES | st.dictionaries(st.sampled_from(["id", "x"]), JSON_VALUES, max_size=2),
    st.sampled_from(["ascii", "utf-8", "utf-16"]),
)
@example({"id": -(2**63) - 1}, "utf-8")
@example({"id": 2**64}, "utf-8")
@example({"id": 10**30, "x": [1.5]}, "ascii")
def test_verified_fields_are_read_exactly_as_json_reads_them(value: object, encoding: str) -> None:
    # orjson read integers past 64 bits as floats, which CI caught here; repr tells 2**64 from
    # 2.0**64, which == does not.
    text = json.dumps(value, ensure_ascii=encoding == "ascii")
    expected = json.loads(text)
    names = ("id", "x", *(expected if isinstance(expected, dict) else ()))
    fields = verified_fields(text.encode(encoding), *names)
    if isinstance(expected, dict):
        assert repr(fields) == repr({name: expected[name] for name in names if name in expected})
    else:
        assert fields == {}


def _as_json_reads_it(body: bytes, *names: str) -> dict[str, object]:
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        return {}
    return {n: payload[n] for n in names if n in payload} if isinstance(payload, dict) else {}


@given(
    st.dictionaries(st.sampled_from(["id", "x", "date"]), JSON_VALUES, max_size=3),
    st.lists(
        st.tuples(st.integers(min_value=0), st.binary(max_size=3), st.integers(0, 3)), max_size=4
    ),
)
@example({"id": 1, "x": "a"}, [(10, b"\x01", 0)])  # a raw control character inside a string
@example({"id": 1, "x": "a"}, [(10, b"\xff", 0)])  # invalid UTF-8 in a member nobody asked for
@example({"id": 1}, [(0, b"\xef\xbb\xbf", 0)])  # a UTF-8 byte order mark
def test_damaged_bodies_are_read_as_json_reads_them_or_not_at_all(
    value: dict[str, object], edits: list[tuple[int, bytes, int]]
) -> None:
    # Splices bytes into a valid body: whatever the damage, the members found are json's.
    body = bytearray(json.dumps(value, ensure_ascii=False).encode())
    for at, insert, drop in edits:
        at %= len(body) + 1
        body[at : at + drop] = insert
    fields = verified_fields(bytes(body), "id", "x")
    assert repr(fields) == repr(_as_json_reads_it(bytes(body), "id", "x"))


@pytest.mark.parametrize(
    "body", [b"", b"{", b"\xff\xfe{", b"[" * 100_000 + b"]" * 100_000, b'{"a": NaN}']
)
def test_bodies_that_are_no_usable_object_read_as_empty_or_as_json_reads_them(
    body: bytes,
) -> None:
    try:
        expected = json.loads(body)
    except (ValueError, RecursionError):
        expected = {}
    result = verified_fields(body, "a")
    assert result.keys() == (expected.keys() if isinstance(expected, dict) else set())


@pytest.mark.parametrize(
    "body",
    [
        b'{"id": 1, "id": 2}',  # json keeps the last
        b'\xef\xbb\xbf{"id": 1}',  # a UTF-8 byte order mark
        b'{"id": 1e400}',  # json: inf
        b'{"id": NaN}',
        b'{"id": "\\ud800"}',  # a lone surrogate escape
        '{"id": 1}'.encode("utf-16"),
        b'{"id": 1}' + b" " * 3 + b"\n",
        b'{"id": ' + b"[" * 5_000 + b"]" * 5_000 + b"}",  # too deep for json
        b'{"x": ' + b"[" * 5_000 + b"]" * 5_000 + b', "id": 3}',
    ],
)
def test_odd_but_verified_bodies_are_read_as_json_reads_them(body: bytes) -> None:
    assert repr(verified_fields(body, "id")) == repr(_as_json_reads_it(body, "id"))


def test_woocommerce_ids_past_64_bits_keep_every_digit() -> None:
    # Read as floats, these two resources would share an event id, and the second would be
    # dropped as a duplicate.
    first, second = (
        _woo_event_id(json.dumps({"id": n, "date_modified_gmt": "2026-03-14T15:09:26"}).encode())
        for n in (10**20, 10**20 + 1)
    )
    assert first != second


def test_a_lone_surrogate_in_a_verified_id_field_still_yields_a_deterministic_id() -> None:
    body = b'{"id": "\\ud800", "date_modified_gmt": "2026-03-14T15:09:26"}'
    assert _woo_event_id(body) == _woo_event_id(body)


def _woo_event_id(body: bytes) -> str:
    headers = woocommerce.signed_headers(
        body,
        WOO_SECRET,
        source="https://shop.example.com",
        topic="order.updated",
        webhook_id="3",
        delivery_id="d-1",
    )
    return woocommerce.authenticate(body, headers, REGISTRY, NOW).event_id
