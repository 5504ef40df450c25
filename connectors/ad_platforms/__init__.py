"""The ad platforms the breaker's pauses and resumes reach: Meta and Google Ads clients, and the
holds that decide what a pause or resume changes (docs/connectors.md)."""

from connectors.ad_platforms.google import GoogleAds
from connectors.ad_platforms.holds import Hold, holder_of, on_pause, on_resume
from connectors.ad_platforms.meta import AdSet, MetaAds

__all__ = ["AdSet", "GoogleAds", "Hold", "MetaAds", "holder_of", "on_pause", "on_resume"]
