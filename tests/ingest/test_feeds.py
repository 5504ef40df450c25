"""ingest.feeds: API-key authentication, batch validation and the Avro records it makes (pure)."""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from ingest import feeds
from ingest.feeds import InvalidBatch
from platforms.webhooks import Rejected
from revloop.crypto import Secret
from revloop.ids import EVENT_ID_NAMESPACE
from revloop.privacy import customer_key, customer_key_for_id
from revloop.stores import Store, StoreRegistry, api_key_digest, api_key_store_id, new_api_key
from schemas.registry import CommittedCatalogue
from schemas.serde import AvroSerde
from tests.ingest_support import API_KEYS, CUSTOMER_SALT, make_feed_registry

SERDE = AvroSerde(CommittedCatalogue.load())
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
STORE = Store(
    "acme-shopify",
    "shopify",
    "acme.myshopify.com",
    (Secret(b"s"),),
    api_key_hashes=(api_key_digest(API_KEYS["acme-shopify"]),),
)
KINDS = ("ad_click", "ad_view", "engaged_view", "content_view")
CK = "ck_" + "0123456789" * 4


_DROP = object()
"""An override that removes the field."""


def touchpoint(**overrides: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "touchpoint_id": "tp-1",
        "kind": "ad_click",
        "channel": "meta",
        "occurred_at": "2026-11-20T09:30:00Z",
        "customer_key": CK,
    }
    item.update(overrides)
    return {k: v for k, v in item.items() if v is not _DROP}


def body(key: str, *items: Any) -> bytes:
    return json.dumps({key: list(items)}).encode()


def refusal(call: Any) -> InvalidBatch:
    with pytest.raises(InvalidBatch) as caught:
        call()
    return caught.value


def tp_refusal(*items: Any) -> InvalidBatch:
    return refusal(lambda: feeds.parse_touchpoints(body("touchpoints", *items), NOW))


def errors_of(invalid: InvalidBatch) -> set[tuple[int | None, str]]:
    return {(e.index, e.field) for e in invalid.errors}


# --- strategies ---------------------------------------------------------------------------

_ids = st.text(st.characters(codec="utf-8", exclude_characters="@"), min_size=1, max_size=40)
_moments = st.datetimes(
    min_value=datetime(1990, 1, 1), max_value=datetime(2026, 11, 24), timezones=st.just(UTC)
)
_offsets = st.integers(-14 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m)))
_money = st.fixed_dictionaries(
    {
        "amount_minor": st.integers(0, 2**63 - 1),
        "currency": st.from_regex(r"[A-Z]{3}", fullmatch=True),
    }
)


@st.composite
def _timestamps(draw: st.DrawFn) -> str:
    return draw(_moments).astimezone(draw(_offsets)).isoformat()


@st.composite
def _customers(draw: st.DrawFn) -> dict[str, str]:
    which = draw(st.sampled_from(["email", "customer_key", "customer_id"]))
    if which == "email":
        return {"email": draw(st.emails())}
    if which == "customer_key":
        return {"customer_key": draw(st.from_regex(r"ck_[0-9a-f]{40}", fullmatch=True))}
    return {"customer_id": draw(_ids)}


@st.composite
def touchpoints(draw: st.DrawFn, touchpoint_id: str | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {
        "touchpoint_id": touchpoint_id or draw(_ids),
        "kind": draw(st.sampled_from(KINDS)),
        "channel": draw(st.sampled_from(["meta", "google", "tiktok", "email", "blog"])),
        "occurred_at": draw(_timestamps()),
        **draw(_customers()),
    }
    optional: dict[str, st.SearchStrategy[Any]] = {
        "campaign_id": _ids,
        "ad_id": _ids,
        "content_id": _ids,
        "product_ids": st.lists(_ids, max_size=5),
        "click_id": _ids,
        "landing_url": st.sampled_from(["https://shop.example/p/1?utm_source=meta", "/p/2"]),
        "cost": _money,
    }
    for name, strategy in optional.items():
        if draw(st.booleans()):
            item[name] = draw(strategy)
    return item


@st.composite
def batches(draw: st.DrawFn) -> list[dict[str, Any]]:
    ids = draw(st.lists(_ids, min_size=1, max_size=8, unique=True))
    return [draw(touchpoints(touchpoint_id=i)) for i in ids]


# --- authentication -----------------------------------------------------------------------


def test_a_store_key_authenticates_its_store() -> None:
    registry = make_feed_registry()
    for store_id, key in API_KEYS.items():
        assert feeds.authenticate(f"Bearer {key}", registry).store_id == store_id
        assert feeds.authenticate(f"bearer   {key} ", registry).store_id == store_id


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer   ", "Basic dXNlcjpwdw==", "rlk_x"])
def test_missing_keys(header: str | None) -> None:
    with pytest.raises(Rejected) as caught:
        feeds.authenticate(header, make_feed_registry())
    assert (caught.value.status, caught.value.reason) == (401, "missing_key")


def _other_store(key: str) -> str:
    return key.replace("rlk_acme-shopify_", "rlk_shop-woo_")


@pytest.mark.parametrize(
    "key",
    [
        "nonsense",
        API_KEYS["acme-shopify"][:-1],
        API_KEYS["acme-shopify"][:-1] + "Z",
        API_KEYS["acme-shopify"].upper(),
        _other_store(API_KEYS["acme-shopify"]),  # another store's name on this store's secret
        API_KEYS["acme-shopify"].replace("acme-shopify", "bc-store"),  # a store with no keys
        API_KEYS["acme-shopify"].replace("acme-shopify", "unregistered"),
        "rlk_acme-shopify_" + "x" * 43 + "\u00e9",
    ],
)
def test_bad_keys(key: str) -> None:
    with pytest.raises(Rejected) as caught:
        feeds.authenticate(f"Bearer {key}", make_feed_registry())
    assert (caught.value.status, caught.value.reason) == (401, "bad_key")
    assert key not in str(caught.value)


@given(store_id=st.from_regex(r"[a-z0-9][a-z0-9-]{0,62}", fullmatch=True))
def test_new_keys_name_their_store_and_only_verify_there(store_id: str) -> None:
    key = new_api_key(store_id)
    assert re.fullmatch(rf"rlk_{re.escape(store_id)}_[A-Za-z0-9_-]{{43}}", key)
    assert api_key_store_id(key) == store_id
    mine = Store(
        store_id,
        "shopify",
        "a.myshopify.com",
        (Secret(b"s"),),
        api_key_hashes=(api_key_digest(key),),
    )
    assert mine.accepts_api_key(key)
    assert not mine.accepts_api_key(new_api_key(store_id))
    assert not replace(mine, api_key_hashes=()).accepts_api_key(key)
    other_id = "z" + store_id[:61] + "z"
    assume(other_id != store_id)
    other = Store(other_id, "shopify", "b.myshopify.com", (Secret(b"s"),))
    with pytest.raises(Rejected, match="not valid"):
        feeds.authenticate(f"Bearer {key}", StoreRegistry([other]))
    assert feeds.authenticate(f"Bearer {key}", StoreRegistry([mine, other])) == mine


@given(key=st.text(max_size=120))
def test_anything_else_is_refused_without_echoing_it(key: str) -> None:
    assume(key.strip() not in API_KEYS.values())
    with pytest.raises(Rejected) as caught:
        feeds.authenticate(f"Bearer {key}", make_feed_registry())
    assert caught.value.status == 401
    assert str(caught.value) in {  # fixed wording: nothing of the key comes back
        "send the store's API key as `Authorization: Bearer`",
        "the API key is not valid",
    }


# --- touchpoints: records -----------------------------------------------------------------


@settings(max_examples=60)
@given(items=batches())
def test_valid_batches_become_touchpoints_that_survive_avro(items: list[dict[str, Any]]) -> None:
    parsed = feeds.parse_touchpoints(body("touchpoints", *items), NOW)
    records = feeds.touchpoint_records(STORE, parsed, CUSTOMER_SALT, NOW)
    assert len(records) == len(items)
    for item, record in zip(items, records, strict=True):
        envelope = record["envelope"]
        name = f"api/acme-shopify/touchpoint/{item['touchpoint_id']}"
        assert envelope["event_id"] == str(uuid.uuid5(EVENT_ID_NAMESPACE, name))
        assert envelope["occurred_at"] == datetime.fromisoformat(item["occurred_at"])
        assert (envelope["store_id"], envelope["platform"], envelope["source"]) == (
            "acme-shopify",
            "shopify",
            "api",
        )
        assert (envelope["received_at"], envelope["caused_by"]) == (NOW, [])
        assert record["cost"] == item.get("cost")
        assert record["product_ids"] == item.get("product_ids", [])
        assert re.fullmatch(r"ck_[0-9a-f]{40}", record["customer_key"])
        if "email" in item:
            assert record["customer_key"] == customer_key(CUSTOMER_SALT, item["email"])
        elif "customer_id" in item:
            expected = customer_key_for_id(CUSTOMER_SALT, "acme-shopify", item["customer_id"])
            assert record["customer_key"] == expected
        else:
            assert record["customer_key"] == item["customer_key"]
        encoded = SERDE.encode(feeds.TOUCHPOINT, record)
        assert SERDE.decode(encoded).value == record
        key = feeds.TOUCHPOINT_TOPIC.message_key(record)
        assert key == f"acme-shopify/{record['customer_key']}".encode()
        if "email" in item:
            for form in {item["email"], item["email"].lower()}:
                assert form.encode() not in encoded
                assert form.encode() not in key
    # A retry of the same batch, received later, yields the same event ids.
    again = feeds.touchpoint_records(STORE, parsed, CUSTOMER_SALT, NOW + timedelta(hours=1))
    assert [r["envelope"]["event_id"] for r in again] == [
        r["envelope"]["event_id"] for r in records
    ]


@given(email=st.emails(), spaces=st.sampled_from(["", " ", "\t "]))
def test_an_email_and_its_case_and_padding_variants_share_a_key(email: str, spaces: str) -> None:
    variants = [email, f"{spaces}{email.upper()}{spaces}"]
    parsed = feeds.parse_touchpoints(
        body(
            "touchpoints",
            *(
                touchpoint(touchpoint_id=f"t{n}", customer_key=_DROP, email=e)
                for n, e in enumerate(variants)
            ),
        ),
        NOW,
    )
    first, second = feeds.touchpoint_records(STORE, parsed, CUSTOMER_SALT, NOW)
    assert first["customer_key"] == second["customer_key"]
    assert email not in repr(parsed)


def test_customer_ids_are_scoped_to_their_store() -> None:
    [item] = feeds.parse_touchpoints(
        body("touchpoints", touchpoint(customer_key=_DROP, customer_id="42")), NOW
    )
    woo = Store("shop-woo", "woocommerce", "https://shop.example.com", (Secret(b"s"),))
    [here] = feeds.touchpoint_records(STORE, [item], CUSTOMER_SALT, NOW)
    [there] = feeds.touchpoint_records(woo, [item], CUSTOMER_SALT, NOW)
    assert here["customer_key"] != there["customer_key"]
    assert there["envelope"]["platform"] == "woocommerce"


def test_offsets_are_normalized_to_the_instant() -> None:
    [item] = feeds.parse_touchpoints(
        body("touchpoints", touchpoint(occurred_at="2026-11-20T11:30:00+02:00")), NOW
    )
    assert item.occurred_at == datetime(2026, 11, 20, 9, 30, tzinfo=UTC)
    assert item.occurred_at.tzinfo is UTC


# --- touchpoints: refusals ----------------------------------------------------------------


@given(amount=st.floats(allow_nan=True, allow_infinity=True))
def test_float_money_is_refused_never_rounded(amount: float) -> None:
    invalid = tp_refusal(touchpoint(cost={"amount_minor": amount, "currency": "USD"}))
    assert errors_of(invalid) == {(0, "cost.amount_minor")}
    assert invalid.status == 422
    assert "integer" in invalid.errors[0].message


@pytest.mark.parametrize(
    ("cost", "field"),
    [
        ({"amount_minor": 2**63, "currency": "USD"}, "cost.amount_minor"),
        ({"amount_minor": -1, "currency": "USD"}, "cost.amount_minor"),  # a cost is not negative
        ({"amount_minor": True, "currency": "USD"}, "cost.amount_minor"),
        ({"amount_minor": "100", "currency": "USD"}, "cost.amount_minor"),
        ({"amount_minor": 100, "currency": "usd"}, "cost.currency"),
        ({"amount_minor": 100, "currency": "US"}, "cost.currency"),
        ({"amount_minor": 100}, "cost.currency"),
        ({"amount_minor": 100, "currency": "USD", "rate": 1}, "cost.rate"),
    ],
)
def test_money_must_be_exact(cost: dict[str, Any], field: str) -> None:
    assert errors_of(tp_refusal(touchpoint(cost=cost))) == {(0, field)}


@given(
    field=st.sampled_from(["touchpoint_id", "campaign_id", "ad_id", "content_id", "customer_id"]),
    number=st.integers() | st.floats(allow_nan=False),
)
def test_numeric_ids_are_refused(field: str, number: float) -> None:
    extra = {"customer_key": _DROP} if field == "customer_id" else {}
    invalid = tp_refusal(touchpoint(**{field: number, **extra}))
    assert errors_of(invalid) == {(0, field)}
    assert "string" in invalid.errors[0].message


@given(number=st.integers())
def test_numeric_product_ids_are_refused(number: int) -> None:
    invalid = tp_refusal(touchpoint(product_ids=["ok", number]))
    assert errors_of(invalid) == {(0, "product_ids[1]")}


@given(
    chosen=st.sets(st.sampled_from(["email", "customer_key", "customer_id"])),
    email=st.emails(),
)
def test_exactly_one_customer_identity(chosen: set[str], email: str) -> None:
    values = {"email": email, "customer_key": CK, "customer_id": "c-9"}
    item = touchpoint(**{"customer_key": _DROP, **{k: values[k] for k in chosen}})
    if len(chosen) == 1:
        assert len(feeds.parse_touchpoints(body("touchpoints", item), NOW)) == 1
        return
    invalid = tp_refusal(item)
    assert errors_of(invalid) == {(0, "email/customer_key/customer_id")}
    assert email not in json.dumps(invalid.as_json())


@given(kind=st.text(max_size=20))
def test_unknown_kinds_are_refused(kind: str) -> None:
    assume(kind not in KINDS)
    assert errors_of(tp_refusal(touchpoint(kind=kind))) == {(0, "kind")}


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"touchpoint_id": ""}, "touchpoint_id"),
        ({"touchpoint_id": "x" * 201}, "touchpoint_id"),
        ({"touchpoint_id": _DROP}, "touchpoint_id"),
        ({"channel": _DROP}, "channel"),
        ({"channel": ""}, "channel"),
        ({"occurred_at": _DROP}, "occurred_at"),
        ({"occurred_at": "2026-11-20T09:30:00"}, "occurred_at"),  # no offset
        ({"occurred_at": "2026-11-20"}, "occurred_at"),
        ({"occurred_at": "yesterday"}, "occurred_at"),
        ({"occurred_at": 1_763_631_000}, "occurred_at"),  # epoch seconds: ambiguous units
        ({"occurred_at": "2026-11-25T12:00:01Z"}, "occurred_at"),  # over a day ahead of NOW
        ({"occurred_at": "0001-01-01T00:00:00+05:00"}, "occurred_at"),
        ({"customer_key": "ck_short"}, "customer_key"),
        ({"customer_key": CK.upper()}, "customer_key"),
        ({"customer_key": _DROP, "email": "not-an-email"}, "email"),
        ({"customer_key": _DROP, "email": "a@b@c"}, "email"),
        ({"product_ids": "p1"}, "product_ids"),
        ({"product_ids": ["p"] * 101}, "product_ids"),
        ({"landing_url": "x" * 2049}, "landing_url"),
        ({"cost": 125}, "cost"),
        ({"utm_source": "meta"}, "utm_source"),
    ],
)
def test_invalid_touchpoints_are_named(overrides: dict[str, Any], field: str) -> None:
    invalid = tp_refusal(touchpoint(), touchpoint(**{"touchpoint_id": "tp-2", **overrides}))
    assert errors_of(invalid) == {(1, field)}
    assert invalid.status == 422


def test_a_day_of_clock_skew_is_allowed() -> None:
    assert feeds.parse_touchpoints(
        body("touchpoints", touchpoint(occurred_at="2026-11-24T12:00:00Z")), NOW
    )


# The net for emails in other fields is best effort: it knows ordinary addresses.
_plain_emails = st.from_regex(
    r"[a-z0-9][a-z0-9._%+-]{0,20}@[a-z0-9-]{1,20}\.[a-z]{2,6}", fullmatch=True
)


@given(
    email=_plain_emails,
    field=st.sampled_from(["touchpoint_id", "channel", "campaign_id", "click_id", "customer_id"]),
)
def test_emails_outside_the_email_field_are_refused_and_not_echoed(email: str, field: str) -> None:
    extra = {"customer_key": _DROP} if field == "customer_id" else {}
    invalid = tp_refusal(touchpoint(**{field: f"x-{email}", **extra}))
    assert errors_of(invalid) == {(0, field)}
    assert email not in json.dumps(invalid.as_json())


@pytest.mark.parametrize(
    "url",
    [
        "https://shop.example/?email=ann@example.com",
        "https://shop.example/?e=ann%40example.com&x=1",
        "https://shop.example/?e=ann+%3Cann%40example.co.uk%3E",
    ],
)
def test_landing_urls_carrying_an_email_are_refused(url: str) -> None:
    invalid = tp_refusal(touchpoint(landing_url=url))
    assert errors_of(invalid) == {(0, "landing_url")}
    assert "ann" not in json.dumps(invalid.as_json())


@pytest.mark.parametrize(
    "url",
    ["https://www.tiktok.com/@some.creator/video/1", "https://medium.com/@a.b/post-1", "/p/1"],
)
def test_handles_in_landing_urls_are_not_emails(url: str) -> None:
    [item] = feeds.parse_touchpoints(body("touchpoints", touchpoint(landing_url=url)), NOW)
    assert item.landing_url == url


def test_unknown_field_names_are_not_echoed() -> None:
    invalid = tp_refusal(touchpoint(**{"ann@example.com": 1}))
    assert errors_of(invalid) == {(0, "(unrecognized field)")}
    assert "ann@" not in json.dumps(invalid.as_json())


@given(email=st.emails())
def test_no_refusal_ever_carries_the_email(email: str) -> None:
    # Every other field wrong at once: the errors name fields, never values.
    item = {
        "touchpoint_id": 1,
        "kind": "click",
        "channel": None,
        "occurred_at": "now",
        "email": email,
        "customer_key": email,
        "cost": {"amount_minor": 1.5, "currency": email},
        "product_ids": [email, 2],
        email: email,
    }
    invalid = tp_refusal(item, touchpoint(touchpoint_id=email))
    shown = json.dumps(invalid.as_json()) + repr(invalid) + str(invalid)
    assert email not in shown
    assert email.lower() not in shown.lower()


def test_whole_batch_shape() -> None:
    empty = refusal(lambda: feeds.parse_touchpoints(b'{"touchpoints": []}', NOW))
    assert errors_of(empty) == {(None, "touchpoints")}
    too_many = [touchpoint(touchpoint_id=f"t{n}") for n in range(feeds.MAX_BATCH + 1)]
    assert errors_of(tp_refusal(*too_many)) == {(None, "touchpoints")}
    full = too_many[: feeds.MAX_BATCH]
    assert len(feeds.parse_touchpoints(body("touchpoints", *full), NOW)) == feeds.MAX_BATCH
    for document, field in [
        (b"[]", "(body)"),
        (b'"touchpoints"', "(body)"),
        (b"{}", "touchpoints"),
        (b'{"touchpoints": {}}', "touchpoints"),
        (b'{"links": []}', "touchpoints"),
    ]:
        invalid = refusal(lambda d=document: feeds.parse_touchpoints(d, NOW))
        assert invalid.status == 422
        assert field in {e.field for e in invalid.errors}
    assert errors_of(tp_refusal(touchpoint(), "tp")) == {(1, "(item)")}


@pytest.mark.parametrize(
    "document",
    [b"", b"{", b'{"touchpoints": [}', b"\xff\xfe{\x00}\x00", b"\xef\xbb\xbf{}", b"[" * 100_000],
)
def test_bad_json_is_400(document: bytes) -> None:
    invalid = refusal(lambda: feeds.parse_touchpoints(document, NOW))
    assert (invalid.status, invalid.reason) == (400, "bad_json")


def test_errors_are_capped_but_counted() -> None:
    items = [touchpoint(touchpoint_id=f"t{n}", kind="nope") for n in range(300)]
    shown = tp_refusal(*items).as_json()
    assert shown["error_count"] == 300
    assert len(shown["errors"]) == feeds.MAX_ERRORS_SHOWN


def test_repeated_touchpoint_ids_are_refused() -> None:
    invalid = tp_refusal(
        touchpoint(), touchpoint(touchpoint_id="tp-2"), touchpoint(channel="google")
    )
    assert errors_of(invalid) == {(2, "touchpoint_id")}
    assert "item 0" in invalid.errors[0].message


# --- campaign links -----------------------------------------------------------------------


def link(**overrides: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "campaign_id": "120210000000001",
        "product_id": "7001",
        "channel": "meta",
        "occurred_at": "2026-11-20T09:30:00Z",
    }
    item.update(overrides)
    return {k: v for k, v in item.items() if v is not _DROP}


def link_refusal(*items: Any) -> InvalidBatch:
    return refusal(lambda: feeds.parse_campaign_links(body("links", *items), NOW))


@given(
    campaign_id=_ids.filter(lambda s: "/" not in s),
    product_id=_ids.filter(lambda s: "/" not in s),
    active=st.none() | st.booleans(),
    when=_moments,
    offset=_offsets,
)
def test_links_become_campaign_product_links(
    campaign_id: str, product_id: str, active: bool | None, when: datetime, offset: timezone
) -> None:
    item = link(
        campaign_id=campaign_id,
        product_id=product_id,
        occurred_at=when.astimezone(offset).isoformat(),
        active=_DROP if active is None else active,
    )
    [record] = feeds.campaign_link_records(
        STORE, feeds.parse_campaign_links(body("links", item), NOW), NOW
    )
    name = f"api/acme-shopify/campaign-link/{campaign_id}/{product_id}/{when.isoformat()}"
    assert record["envelope"]["event_id"] == str(uuid.uuid5(EVENT_ID_NAMESPACE, name))
    assert record["envelope"]["occurred_at"] == when
    assert record["active"] is (True if active is None else active)
    assert SERDE.decode(SERDE.encode(feeds.CAMPAIGN_LINK, record)).value == record
    assert feeds.CAMPAIGN_LINK_TOPIC.message_key(record) == (
        f"acme-shopify/{campaign_id}/{product_id}".encode()
    )


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"campaign_id": 120210000000001}, "campaign_id"),
        ({"product_id": 7001}, "product_id"),
        ({"campaign_id": "a/b"}, "campaign_id"),
        ({"product_id": "gid://shopify/Product/1"}, "product_id"),
        ({"channel": _DROP}, "channel"),
        ({"active": "false"}, "active"),
        ({"active": 0}, "active"),
        ({"occurred_at": "2026-11-20 09:30"}, "occurred_at"),
        ({"customer_key": CK}, "customer_key"),
    ],
)
def test_invalid_links_are_named(overrides: dict[str, Any], field: str) -> None:
    assert errors_of(link_refusal(link(product_id="1"), link(**overrides))) == {(1, field)}


def test_one_link_changing_twice_at_one_instant_is_refused() -> None:
    invalid = link_refusal(
        link(active=True), link(active=False, occurred_at="2026-11-20T10:30:00+01:00")
    )
    assert errors_of(invalid) == {(1, "occurred_at")}
    later = link(active=False, occurred_at="2026-11-20T09:30:01Z")
    assert len(feeds.parse_campaign_links(body("links", link(), later), NOW)) == 2


def test_links_need_a_links_list() -> None:
    invalid = refusal(lambda: feeds.parse_campaign_links(b'{"touchpoints": []}', NOW))
    assert {e.field for e in invalid.errors} == {"links", "touchpoints"}


# --- campaign spend ---------------------------------------------------------------------------


def spend(**overrides: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "channel": "meta",
        "campaign_id": "c-1",
        "day": "2026-11-22",
        "spend": {"amount_minor": 12_500, "currency": "USD"},
        "reported_at": "2026-11-23T06:00:00Z",
    }
    item.update(overrides)
    return {k: v for k, v in item.items() if v is not _DROP}


def spend_refusal(*items: Any) -> InvalidBatch:
    return refusal(lambda: feeds.parse_campaign_spend(body("spend", *items), NOW))


def test_spend_reports_become_campaign_spend_events_that_survive_avro() -> None:
    items = feeds.parse_campaign_spend(body("spend", spend(), spend(day="2026-11-21")), NOW)
    records = feeds.campaign_spend_records(STORE, items, NOW)
    assert [r["day"].isoformat() for r in records] == ["2026-11-22", "2026-11-21"]
    record = records[0]
    assert record["spend"] == {"amount_minor": 12_500, "currency": "USD"}
    assert record["envelope"]["occurred_at"] == datetime(2026, 11, 23, 6, tzinfo=UTC)
    assert SERDE.decode(SERDE.encode(feeds.CAMPAIGN_SPEND, record)).value == record
    # A resent report is the same event; a newer report of the day is another.
    again = feeds.campaign_spend_records(STORE, items[:1], NOW + timedelta(hours=1))
    assert again[0]["envelope"]["event_id"] == record["envelope"]["event_id"]
    newer = feeds.parse_campaign_spend(
        body("spend", spend(reported_at="2026-11-23T07:00:00Z")), NOW
    )
    assert (
        feeds.campaign_spend_records(STORE, newer, NOW)[0]["envelope"]["event_id"]
        != record["envelope"]["event_id"]
    )
    assert feeds.CAMPAIGN_SPEND_TOPIC.message_key(record) == b"acme-shopify/meta/c-1"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"day": "2026-11-31"}, "day"),
        ({"day": "20261122"}, "day"),
        ({"day": 20261122}, "day"),
        ({"day": "2026-11-25"}, "day"),  # more than a day ahead of receipt
        ({"spend": {"amount_minor": -1, "currency": "USD"}}, "spend.amount_minor"),
        ({"spend": {"amount_minor": 1.5, "currency": "USD"}}, "spend.amount_minor"),
        ({"campaign_id": "c/1"}, "campaign_id"),
        ({"channel": "me/ta"}, "channel"),
        ({"reported_at": "2026-11-23T06:00:00"}, "reported_at"),
        ({"reported_at": _DROP}, "reported_at"),
    ],
)
def test_invalid_spend_reports_are_named(overrides: dict[str, Any], field: str) -> None:
    assert errors_of(spend_refusal(spend(), spend(**overrides))) == {(1, field)}


def test_one_report_twice_in_a_batch_is_refused() -> None:
    assert errors_of(spend_refusal(spend(), spend())) == {(1, "reported_at")}
