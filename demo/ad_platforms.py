"""The demo's ad platforms: Meta and Google Ads emulators on loopback, every demo store's ad
accounts connected to them, and what `revloop connect ads` did there for the run's pauses and
resumes (docs/demo.md, "Ads").

Each Meta campaign the demo's ad tools link gets two ad sets: one running, and one the merchant
had paused before the run, which must stay paused whatever the breaker does. Each Google Ads
campaign starts enabled.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final

import psycopg

from connectors.ad_platforms.holds import holder_of
from emulators import GoogleAdsEmulator, MetaEmulator, serve
from revloop.crypto import Secret
from revloop.settings import Settings
from revloop.stores import Connection

# Made anew by each process: the demo writes them into its registry and its emulators alike.
META_TOKEN: Final = secrets.token_urlsafe(16)
GOOGLE_TOKEN: Final = secrets.token_urlsafe(16)
DEVELOPER_TOKEN: Final = secrets.token_urlsafe(16)
GOOGLE_CUSTOMER: Final = "1234567890"
MERCHANT_PAUSED: Final = "-b"
"""The suffix of the ad set the merchant paused before the run."""


def demo_connections(number: int) -> tuple[Connection, ...]:
    """Demo store ``number``'s ad accounts, on the emulators."""
    google = {"token": GOOGLE_TOKEN, "developer_token": DEVELOPER_TOKEN}
    return (
        Connection(
            "meta", f"act_{1000 + number}", Secret(json.dumps({"token": META_TOKEN}).encode())
        ),
        Connection("google", GOOGLE_CUSTOMER, Secret(json.dumps(google).encode())),
    )


@dataclass
class AdPlatforms:
    meta: MetaEmulator
    google: GoogleAdsEmulator
    env: dict[str, str]

    def add_campaigns(self, links: Sequence[dict[str, Any]]) -> None:
        """The campaigns of the run's campaign links, as the ad accounts hold them."""
        for link in links:
            campaign = link["campaign_id"]
            if link["channel"] == "meta" and f"{campaign}-a" not in self.meta.adsets:
                self.meta.add_campaign(
                    campaign, [(f"{campaign}-a", "ACTIVE"), (campaign + MERCHANT_PAUSED, "PAUSED")]
                )
            elif link["channel"] == "google":
                self.google.campaigns.setdefault(campaign, "ENABLED")


@contextmanager
def ad_platforms() -> Iterator[AdPlatforms]:
    meta = MetaEmulator(META_TOKEN, capacity=600, window_seconds=60.0)
    google = GoogleAdsEmulator(GOOGLE_TOKEN, DEVELOPER_TOKEN, requests_per_window=20)
    with serve(meta.app) as m, serve(google.app) as g:
        env = {
            "REVLOOP_META_API_URL": m.base_url,
            "REVLOOP_META_USAGE_WINDOW_SECONDS": "60",
            "REVLOOP_GOOGLE_ADS_API_URL": g.base_url,
            "REVLOOP_GOOGLE_ADS_REQUESTS_PER_SECOND": "10",
        }
        yield AdPlatforms(meta, google, env)


@dataclass(frozen=True)
class AdAction:
    store_id: str
    product_id: str
    variant_id: str | None
    action: str
    at: str
    outcome: str
    calls: int
    changes: list[str]
    """The status changes the executor made for it: ``meta:<ad set> paused``, …"""
    campaigns: list[str]
    """The campaigns promoting the product, as ``<channel>:<campaign>``."""


def ad_outcome(
    settings: Settings,
    platforms: AdPlatforms,
    actions: Sequence[dict[str, Any]],
    check: Callable[[], None],
    timeout: float,
) -> tuple[list[AdAction], list[str]]:
    """Each of the run's breaker actions as the executor carried it out (waiting until it has
    done them all), and what is wrong: an action not done or failed, or a platform whose ads do
    not show what the breakers last said."""
    ids = [a["envelope"]["event_id"] for a in actions]
    deadline = time.monotonic() + timeout
    done: dict[str, tuple[str, int, list[str]]] = {}
    while True:
        check()
        with psycopg.connect(settings.dsn) as conn:
            done = {
                action_id: (outcome, calls, changes)
                for action_id, outcome, calls, changes in conn.execute(
                    "SELECT action_id, outcome, calls, changes FROM ad_actions"
                    " WHERE action_id = ANY(%s)",
                    (ids,),
                )
            }
        if len(done) == len(set(ids)) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    problems = [f"the ad executor did not carry out action {i}" for i in ids if i not in done]
    problems += [
        f"action {i}: {done[i][0]}" for i in ids if i in done and done[i][0].startswith("failed")
    ]
    last: dict[tuple[str, str], dict[str, str]] = {}
    for action in sorted(actions, key=lambda a: a["envelope"]["occurred_at"]):
        holder = holder_of(action)
        for campaign in action.get("campaigns", []):
            key = (campaign["channel"], campaign["campaign_id"])
            last.setdefault(key, {})[holder] = action["action"]
    for (channel, campaign), holders in sorted(last.items()):
        paused = "pause" in holders.values()
        if channel == "meta" and f"{campaign}-a" in platforms.meta.adsets:
            shown = platforms.meta.status(f"{campaign}-a")
            if shown != ("PAUSED" if paused else "ACTIVE"):
                problems.append(f"meta campaign {campaign}: its running ad set is {shown}")
            if platforms.meta.status(campaign + MERCHANT_PAUSED) != "PAUSED":
                problems.append(f"meta campaign {campaign}: the merchant's paused ad set runs")
        elif channel == "google" and campaign in platforms.google.campaigns:
            shown = platforms.google.campaigns[campaign]
            if shown != ("PAUSED" if paused else "ENABLED"):
                problems.append(f"google campaign {campaign} is {shown}")
    if platforms.meta.calls.violations or platforms.google.calls.violations:
        problems.append("the executor went over an ad platform's rate limit")
    rows = []
    for action in sorted(actions, key=lambda a: a["envelope"]["occurred_at"]):
        outcome, calls, changes = done.get(action["envelope"]["event_id"], ("not done", 0, []))
        rows.append(
            AdAction(
                action["envelope"]["store_id"],
                action["product_id"],
                action["variant_id"],
                action["action"],
                action["envelope"]["occurred_at"].isoformat(),
                outcome,
                calls,
                list(changes),
                [f"{c['channel']}:{c['campaign_id']}" for c in action.get("campaigns", [])],
            )
        )
    return rows, problems
