"""A seeded day of trading at three demo stores, as the HTTP requests their platforms and ad tools
would send to ingest (`revloop demo`, docs/demo.md).

Pure: no clock, no network, no files. Everything follows from ``seed`` and ``now``. BigCommerce's
webhooks carry ids only, so its store also writes each product, customer and order, as they
change, to the back office it is given (the demo's BigCommerce emulator, which the hydrator
reads; ``bigcommerce.py``); without one, the story is the same. The story (which products sell
out, which orders are refunded) depends on the seed alone, and ``now`` places it in time and
makes its ids new, so that repeated runs are not dropped as duplicates of earlier ones.

One store per platform, each with a few products and a stock level per variant:

1. products are created, with their stock; customers register;
2. each store's ad tool links campaigns to products (``POST /events/campaigns``) and reports ad
   clicks, ad views and content views of the customers (``POST /events/touchpoints``);
3. orders draw the stock down, each change followed by the platform's inventory webhook. Every
   store sells at least one variant out, and restocks every sold-out variant later on;
4. a few orders are refunded, and two deliveries are sent twice, as a platform's retry would.

Payloads follow the platforms' documented samples (docs/platform-payloads.md, and the fixtures
under tests/fixtures): Shopify ids as JSON integers (some above 2^53), money as decimal strings,
WooCommerce ``*_gmt`` times without an offset, BigCommerce's thin envelope. Signatures come from
the ``signed_headers`` of ingest's platform modules. :func:`expected_outcome` says what the
pipeline should make of the requests, using the same pure functions as ingest and the normalizer.

Where things live: ``world.py`` (the stores, their catalogues and shoppers, the requests, the
state one day shares), ``story.py`` (the walk through the day), ``shopify.py``,
``woocommerce.py`` and ``bigcommerce.py`` (each platform's ids and webhooks), ``marketing.py``
(the ad tools' feeds) and ``expectation.py``.
"""

from demo.simulation.bigcommerce import BackOffice
from demo.simulation.expectation import Expectation, expected_outcome
from demo.simulation.story import MAX_ORDERS, MIN_ORDERS, Simulation, run_simulation, simulate
from demo.simulation.world import (
    STORE_SPECS,
    DemoRequest,
    DemoStore,
    StockMoment,
    StoreSpec,
    demo_registry,
)

__all__ = [
    "MAX_ORDERS",
    "MIN_ORDERS",
    "STORE_SPECS",
    "BackOffice",
    "DemoRequest",
    "DemoStore",
    "Expectation",
    "Simulation",
    "StockMoment",
    "StoreSpec",
    "demo_registry",
    "expected_outcome",
    "run_simulation",
    "simulate",
]
