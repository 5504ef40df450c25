"""The marketing feeds: touchpoints, campaign→product links and campaign spend that a store's own
tools post.

Pure: an ``Authorization`` header, JSON bytes and the registry in; the authenticated store and
Avro-ready records out, or the reasons to refuse. The HTTP wiring (body cap, content type, the
durable publish) is in ingest/app.py; docs/ingest.md ("Marketing feeds") describes the API.

Emails are accepted only in a touchpoint's ``email`` field, which becomes a ``customer_key``
(revloop/privacy.py) and goes no further: it is never published, and no error message, metric or
repr carries it. Any other field holding something that looks like an email is refused.
"""

from __future__ import annotations

import json
import re
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Final, Literal, Protocol, TypeVar
from urllib.parse import unquote_plus

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from platforms.webhooks import Rejected
from revloop.ids import deterministic_id
from revloop.privacy import customer_key, customer_key_for_id, normalize_email
from revloop.stores import Store, api_key_store_id
from revloop.text import invalid_text_at
from schemas.topics import Topic, topic_for_record

__all__ = [
    "CAMPAIGN_LINK",
    "CAMPAIGN_LINK_TOPIC",
    "CAMPAIGN_SPEND",
    "CAMPAIGN_SPEND_TOPIC",
    "MAX_BATCH",
    "TOUCHPOINT",
    "TOUCHPOINT_TOPIC",
    "CampaignLinkIn",
    "CampaignSpendIn",
    "FeedStores",
    "InvalidBatch",
    "ItemError",
    "Money",
    "TouchpointIn",
    "authenticate",
    "campaign_link_event_id",
    "campaign_link_records",
    "campaign_spend_event_id",
    "campaign_spend_records",
    "parse_campaign_links",
    "parse_campaign_spend",
    "parse_touchpoints",
    "touchpoint_event_id",
    "touchpoint_records",
]

TOUCHPOINT: Final = "dev.revloop.events.Touchpoint"
CAMPAIGN_LINK: Final = "dev.revloop.events.CampaignProductLink"
TOUCHPOINT_TOPIC: Final[Topic] = topic_for_record(TOUCHPOINT)
CAMPAIGN_LINK_TOPIC: Final[Topic] = topic_for_record(CAMPAIGN_LINK)
CAMPAIGN_SPEND: Final = "dev.revloop.events.CampaignSpend"
CAMPAIGN_SPEND_TOPIC: Final[Topic] = topic_for_record(CAMPAIGN_SPEND)

MAX_BATCH: Final = 1000
MAX_PRODUCT_IDS: Final = 100
MAX_ERRORS_SHOWN: Final = 100
FUTURE_SKEW: Final = timedelta(days=1)
"""How far past the time of receipt an ``occurred_at`` may lie (client clocks drift; a year
2099 timestamp is a bug that would sort after every real event)."""

# A best-effort net: x@host.tld anywhere in a value (`?e=ann@example.com&x=1` included). An '@'
# right after '/' is a handle in a path (tiktok.com/@some.name), not an email.
_EMAIL_LIKE: Final = re.compile(r"[^\s/@]@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_DAY: Final = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_FIELD_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


class FeedStores(Protocol):
    def get(self, store_id: str) -> Store | None: ...


# --- authentication -----------------------------------------------------------------------


def authenticate(authorization: str | None, stores: FeedStores) -> Store:
    """The store an ``Authorization: Bearer <key>`` header speaks for, or a 401 ``Rejected``
    (reason ``missing_key`` or ``bad_key``). The key itself is never put in a message."""
    scheme, _, credentials = (authorization or "").strip().partition(" ")
    key = credentials.strip()
    if scheme.lower() != "bearer" or not key:
        raise Rejected(401, "missing_key", "send the store's API key as `Authorization: Bearer`")
    store_id = api_key_store_id(key)
    store = stores.get(store_id) if store_id is not None else None
    # Unknown stores and wrong keys read the same: a caller learns nothing about the registry.
    if store is None or not store.accepts_api_key(key):
        raise Rejected(401, "bad_key", "the API key is not valid")
    return store


# --- validation ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ItemError:
    """Why one item (or the batch, when ``index`` is None) was refused. Never holds input."""

    index: int | None
    field: str
    message: str

    def as_json(self) -> dict[str, Any]:
        return {"index": self.index, "field": self.field, "message": self.message}


class InvalidBatch(Exception):
    """The batch is refused whole: 400 when the body is not JSON, 422 when items are invalid."""

    def __init__(self, errors: Sequence[ItemError], status: int = 422) -> None:
        self.errors = tuple(errors)
        self.status = status
        self.reason = "bad_json" if status == 400 else "invalid"
        super().__init__(f"{len(self.errors)} error(s) in the batch")

    def as_json(self) -> dict[str, Any]:
        shown = self.errors[:MAX_ERRORS_SHOWN]
        return {
            "error": "bad JSON" if self.status == 400 else "invalid batch; nothing was accepted",
            "reason": self.reason,
            "error_count": len(self.errors),
            "errors": [e.as_json() for e in shown],
        }


def _no_email(value: str) -> str:
    if _EMAIL_LIKE.search(value) or _EMAIL_LIKE.search(unquote_plus(value)):
        raise PydanticCustomError(
            "email_in_field",
            "must not contain an email address (send it in `email`, which is hashed)",
        )
    return value


def _iso_timestamp(value: object) -> object:
    if not isinstance(value, str):
        raise PydanticCustomError("timestamp_type", "must be an ISO-8601 string with an offset")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise PydanticCustomError(
            "timestamp_format", "must be an ISO-8601 timestamp like 2026-11-23T12:00:00Z"
        ) from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise PydanticCustomError(
            "timestamp_offset", "needs a UTC offset (Z or +hh:mm); local times are ambiguous"
        )
    try:
        # In UTC from here on: the event id and the Avro timestamp both use the instant.
        return parsed.astimezone(UTC)
    except OverflowError:
        raise PydanticCustomError("timestamp_range", "is out of range") from None


def _not_in_the_future(value: datetime, info: ValidationInfo) -> datetime:
    now = info.context.get("now") if isinstance(info.context, dict) else None
    if isinstance(now, datetime) and value > now + FUTURE_SKEW:
        raise PydanticCustomError("timestamp_future", "is more than a day in the future")
    return value


_Id = Annotated[str, StringConstraints(min_length=1, max_length=200), AfterValidator(_no_email)]


def _no_slash(value: str) -> str:
    # Campaign and product ids of a link are joined with '/' into the compacted topic's key, so
    # a '/' inside one would let two different links share a key (and overwrite each other).
    if "/" in value:
        raise PydanticCustomError("slash_in_id", "must not contain '/'")
    return value


_LinkId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=200),
    AfterValidator(_no_slash),
    AfterValidator(_no_email),
]
_Channel = Annotated[
    str, StringConstraints(min_length=1, max_length=100), AfterValidator(_no_email)
]
_ClickId = Annotated[
    str, StringConstraints(min_length=1, max_length=500), AfterValidator(_no_email)
]
_Url = Annotated[str, StringConstraints(min_length=1, max_length=2048), AfterValidator(_no_email)]
_Timestamp = Annotated[
    AwareDatetime, BeforeValidator(_iso_timestamp), AfterValidator(_not_in_the_future)
]


def _iso_day(value: object) -> object:
    if not isinstance(value, str):
        raise PydanticCustomError("day_type", "must be a day as a string like 2026-11-23")
    try:
        # Only YYYY-MM-DD: fromisoformat also takes week dates and compact forms.
        if not _DAY.fullmatch(value):
            raise ValueError(value)
        return date.fromisoformat(value)
    except ValueError:
        raise PydanticCustomError("day_format", "must be a day like 2026-11-23") from None


def _day_not_in_the_future(value: date, info: ValidationInfo) -> date:
    now = info.context.get("now") if isinstance(info.context, dict) else None
    if isinstance(now, datetime) and value > (now + FUTURE_SKEW).date():
        raise PydanticCustomError("day_future", "is more than a day in the future")
    return value


_Day = Annotated[date, BeforeValidator(_iso_day), AfterValidator(_day_not_in_the_future)]
_CustomerKey = Annotated[str, StringConstraints(pattern=r"^ck_[0-9a-f]{40}$")]
_Email = Annotated[str, StringConstraints(max_length=320)]
_Long = Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]


class _Strict(BaseModel):
    # Strict: 1.0 is not an int, 123 is not an id string, "true" is not a bool. Unknown fields
    # are errors (a misspelt optional field would otherwise vanish). Inputs stay out of errors.
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, hide_input_in_errors=True)


class Money(_Strict):
    amount_minor: _Long
    """Integer minor units (cents); a float is refused, never rounded."""
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
    """ISO 4217 alphabetic code, upper case."""


class _Spent(Money):
    @field_validator("amount_minor")
    @classmethod
    def _not_negative(cls, value: int) -> int:
        if value < 0:
            raise PydanticCustomError("negative_spend", "must not be negative")
        return value


class TouchpointIn(_Strict):
    touchpoint_id: _Id
    """The client's stable id for this touch; retries must reuse it (it makes the event id)."""
    kind: Literal["ad_click", "ad_view", "engaged_view", "content_view"]
    channel: _Channel
    occurred_at: _Timestamp
    email: _Email | None = Field(default=None, repr=False)
    customer_key: _CustomerKey | None = None
    customer_id: _Id | None = None
    campaign_id: _Id | None = None
    ad_id: _Id | None = None
    content_id: _Id | None = None
    product_ids: list[_Id] = Field(default_factory=list, max_length=MAX_PRODUCT_IDS)
    click_id: _ClickId | None = None
    landing_url: _Url | None = None
    cost: _Spent | None = None
    """What this touch cost (ROAS plans count it as ad spend)."""

    @field_validator("email")
    @classmethod
    def _an_email(cls, value: str | None) -> str | None:
        if value is not None:
            local, at, domain = normalize_email(value).partition("@")
            if not (local and at and domain) or "@" in domain:
                raise PydanticCustomError("email_format", "is not an email address")
        return value

    @model_validator(mode="after")
    def _one_customer(self) -> TouchpointIn:
        given = [self.email, self.customer_key, self.customer_id]
        if sum(v is not None for v in given) != 1:
            raise PydanticCustomError(
                "customer_identity", "give exactly one of email, customer_key or customer_id"
            )
        return self


class CampaignLinkIn(_Strict):
    campaign_id: _LinkId
    product_id: _LinkId
    channel: _Channel
    active: bool = True
    """False unlinks the product from the campaign."""
    occurred_at: _Timestamp


class CampaignSpendIn(_Strict):
    channel: _LinkId
    campaign_id: _LinkId
    day: _Day
    """The day spent, as the ad account reports days."""
    spend: _Spent
    """The day's whole spend so far (not an increment): a newer report restates it."""
    reported_at: _Timestamp
    """When the figure was read from the ad platform: the newest report of a day wins."""


class _TouchpointBatch(_Strict):
    touchpoints: list[TouchpointIn] = Field(min_length=1, max_length=MAX_BATCH)


class _CampaignLinkBatch(_Strict):
    links: list[CampaignLinkIn] = Field(min_length=1, max_length=MAX_BATCH)


class _CampaignSpendBatch(_Strict):
    spend: list[CampaignSpendIn] = Field(min_length=1, max_length=MAX_BATCH)


_Batch = TypeVar("_Batch", _TouchpointBatch, _CampaignLinkBatch, _CampaignSpendBatch)
_FIELD_OF_TYPE: Final = {"customer_identity": "email/customer_key/customer_id"}
# Pydantic's wording for wrong JSON types, said the way an API client needs to hear it.
_MESSAGE_OF_TYPE: Final = {
    "int_type": "must be a JSON integer (money is integer minor units, never a float)",
    "string_type": "must be a JSON string (platform ids are strings, not numbers)",
    "bool_type": "must be true or false",
    "list_type": "must be a JSON array",
    "model_type": "must be a JSON object",
    "dict_type": "must be a JSON object",
    "missing": "is required",
    "extra_forbidden": "is not a known field",
}


def parse_touchpoints(body: bytes, now: datetime) -> list[TouchpointIn]:
    """The touchpoints of a ``{"touchpoints": [...]}`` body, or InvalidBatch with every error.
    ``now`` (the time of receipt) bounds how far in the future ``occurred_at`` may be."""
    items = _parse(body, _TouchpointBatch, "touchpoints", now).touchpoints
    _refuse_duplicates([t.touchpoint_id for t in items], "touchpoint_id")
    return items


def parse_campaign_links(body: bytes, now: datetime) -> list[CampaignLinkIn]:
    """The links of a ``{"links": [...]}`` body, or InvalidBatch with every error."""
    items = _parse(body, _CampaignLinkBatch, "links", now).links
    # One link changing twice at the same instant has no order; refuse it rather than guess.
    _refuse_duplicates([(i.campaign_id, i.product_id, i.occurred_at) for i in items], "occurred_at")
    return items


def parse_campaign_spend(body: bytes, now: datetime) -> list[CampaignSpendIn]:
    """The reports of a ``{"spend": [...]}`` body, or InvalidBatch with every error."""
    items = _parse(body, _CampaignSpendBatch, "spend", now).spend
    _refuse_duplicates(
        [(i.channel, i.campaign_id, i.day, i.reported_at) for i in items], "reported_at"
    )
    return items


def _parse(body: bytes, model: type[_Batch], name: str, now: datetime) -> _Batch:
    try:
        document = json.loads(body.decode("utf-8"))  # JSON between systems is UTF-8 (RFC 8259)
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError are both
        raise InvalidBatch([ItemError(None, "(body)", "not valid UTF-8 JSON")], 400) from None
    if not isinstance(document, dict):
        raise InvalidBatch([ItemError(None, "(body)", f'expected {{"{name}": [...]}}')])
    bad_text = invalid_text_at(document)
    if bad_text is not None:  # revloop/text.py: a lone surrogate would fail at encoding, as a 500
        where = bad_text.removeprefix("$").lstrip(".") or "(body)"
        raise InvalidBatch([ItemError(None, where, "text is not valid Unicode (lone surrogate)")])
    try:
        return model.model_validate(document, context={"now": now})
    except ValidationError as exc:
        raise InvalidBatch([_item_error(e) for e in exc.errors(include_input=False)]) from None


def _item_error(error: Any) -> ItemError:
    loc = tuple(error["loc"])
    index = loc[1] if len(loc) > 1 and isinstance(loc[1], int) else None
    path = loc[2:] if index is not None else loc
    if error["type"] == "extra_forbidden" and path and not _FIELD_NAME.fullmatch(str(path[-1])):
        # The caller chose that name; it could be anything, an email included.
        path = (*path[:-1], "(unrecognized field)")
    field = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")
    field = _FIELD_OF_TYPE.get(error["type"], field) or "(item)"
    message = _MESSAGE_OF_TYPE.get(error["type"]) or str(error["msg"])
    return ItemError(index, field, message)


def _refuse_duplicates(keys: Sequence[Hashable], field: str) -> None:
    """Items that would get the same event id are refused: downstream would keep only one."""
    first: dict[Hashable, int] = {}
    errors = []
    for index, key in enumerate(keys):
        if key in first:
            errors.append(ItemError(index, field, f"repeats item {first[key]} of this batch"))
        else:
            first[key] = index
    if errors:
        raise InvalidBatch(errors)


# --- records ------------------------------------------------------------------------------


def touchpoint_event_id(store_id: str, touchpoint_id: str) -> str:
    """Deterministic: a retried batch yields the same ids, so consumers can dedupe."""
    return deterministic_id(f"api/{store_id}/touchpoint/{touchpoint_id}")


def campaign_link_event_id(
    store_id: str, campaign_id: str, product_id: str, occurred_at: datetime
) -> str:
    when = occurred_at.astimezone(UTC).isoformat()
    name = f"api/{store_id}/campaign-link/{campaign_id}/{product_id}/{when}"
    return deterministic_id(name)


def _envelope(
    store: Store, event_id: str, occurred_at: datetime, received_at: datetime
) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "store_id": store.store_id,
        "platform": store.platform,
        "occurred_at": occurred_at,
        "received_at": received_at,
        "source": "api",
        "caused_by": [],
    }


def _customer_key(store: Store, item: TouchpointIn, salt: bytes) -> str:
    if item.email is not None:
        return customer_key(salt, item.email)
    if item.customer_key is not None:
        return item.customer_key
    if item.customer_id is None:  # the model guarantees exactly one
        raise ValueError("touchpoint has no customer")
    return customer_key_for_id(salt, store.store_id, item.customer_id)


def touchpoint_records(
    store: Store, items: Sequence[TouchpointIn], salt: bytes, received_at: datetime
) -> list[dict[str, Any]]:
    """Touchpoint events (dev.revloop.events.Touchpoint) for validated items, in order."""
    return [
        {
            "envelope": _envelope(
                store,
                touchpoint_event_id(store.store_id, item.touchpoint_id),
                item.occurred_at,
                received_at,
            ),
            "touchpoint_id": item.touchpoint_id,
            "kind": item.kind,
            "channel": item.channel,
            "customer_key": _customer_key(store, item, salt),
            "campaign_id": item.campaign_id,
            "ad_id": item.ad_id,
            "content_id": item.content_id,
            "product_ids": list(item.product_ids),
            "click_id": item.click_id,
            "landing_url": item.landing_url,
            "cost": (
                None
                if item.cost is None
                else {"amount_minor": item.cost.amount_minor, "currency": item.cost.currency}
            ),
        }
        for item in items
    ]


def campaign_link_records(
    store: Store, items: Sequence[CampaignLinkIn], received_at: datetime
) -> list[dict[str, Any]]:
    """CampaignProductLink events for validated items, in order."""
    return [
        {
            "envelope": _envelope(
                store,
                campaign_link_event_id(
                    store.store_id, item.campaign_id, item.product_id, item.occurred_at
                ),
                item.occurred_at,
                received_at,
            ),
            "campaign_id": item.campaign_id,
            "product_id": item.product_id,
            "channel": item.channel,
            "active": item.active,
        }
        for item in items
    ]


def campaign_spend_event_id(
    store_id: str, channel: str, campaign_id: str, day: date, reported_at: datetime
) -> str:
    when = reported_at.astimezone(UTC).isoformat()
    name = f"api/{store_id}/campaign-spend/{channel}/{campaign_id}/{day.isoformat()}/{when}"
    return deterministic_id(name)


def campaign_spend_records(
    store: Store, items: Sequence[CampaignSpendIn], received_at: datetime
) -> list[dict[str, Any]]:
    """CampaignSpend events for validated items, in order."""
    return [
        {
            "envelope": _envelope(
                store,
                campaign_spend_event_id(
                    store.store_id, item.channel, item.campaign_id, item.day, item.reported_at
                ),
                item.reported_at,
                received_at,
            ),
            "channel": item.channel,
            "campaign_id": item.campaign_id,
            "day": item.day,
            "spend": {"amount_minor": item.spend.amount_minor, "currency": item.spend.currency},
        }
        for item in items
    ]
