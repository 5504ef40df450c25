"""The multichannel inventory lock, carried out by the ad executor (docs/connectors.md,
"Multichannel lock"): a store that connects other sales channels (another store platform's
API: `revloop stores connect --channel woocommerce ...` on a Shopify store) has a sold-out
product set to 0 there, found by its SKU, and put back on restock, by the rules of
:mod:`connectors.inventory_lock`.

Like the ad holds, a lock is recorded (``inventory_locks``, under a lock per item) *before*
the item is set to 0, and an unlock sets the level back *before* releasing the record, so a
process killed anywhere repeats at most a push of what was pushed. Every push, and every read
of a level, is a call in the action's record of calls (``ops.connector-calls.v1``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import psycopg

from connectors.http import Answer
from connectors.inventory_lock import Lock, on_lock, on_unlock
from connectors.store_apis.base import StockLevel, StoreApi
from revloop.stores import Store
from revloop.stores.model import STORE_CHANNELS


def other_channels(store: Store) -> list[str]:
    """The store's other connected sales channels: the lock is on for it when there are any."""
    return sorted(
        c.channel
        for c in store.connections
        if c.channel in STORE_CHANNELS and c.channel != store.platform
    )


def skus_of(conn: psycopg.Connection[Any], store_id: str, action: Mapping[str, Any]) -> list[str]:
    """The SKUs the action's breaker speaks for, as the pipeline knows the store's catalogue
    (the sink's ``variants``): the variant's, or every variant's of the whole product."""
    rows = conn.execute(
        "SELECT DISTINCT sku FROM variants WHERE store_id = %s AND product_id = %s"
        " AND (%s::text IS NULL OR variant_id = %s) AND sku IS NOT NULL AND sku <> ''"
        " AND removed_at IS NULL ORDER BY sku",
        (store_id, action["product_id"], action["variant_id"], action["variant_id"]),
    ).fetchall()
    return [row[0] for row in rows]


class MultichannelLock:
    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    def apply(
        self,
        store_id: str,
        channel: str,
        api: StoreApi,
        skus: list[str],
        holder: str,
        lock: bool,
    ) -> list[str]:
        """Lock (or unlock) every item with one of ``skus`` on ``channel``; the changes made."""
        changes: list[str] = []
        for sku in skus:
            if lock:
                for level in api.stock_of_sku(sku):
                    changes += self._lock(store_id, channel, api, sku, level, holder)
            else:
                changes += self._unlock(store_id, channel, api, sku, holder)
        return changes

    def _lock(
        self, store_id: str, channel: str, api: StoreApi, sku: str, level: StockLevel, holder: str
    ) -> list[str]:
        if level.available is None:
            return []  # untracked there: it cannot sell out, nothing to hold
        where = level.location_id or ""
        with self._item(store_id, channel, level.item_id, where) as held:
            after, zero = on_lock(held, holder, level.available)
            self._write(store_id, channel, level.item_id, where, sku, after)
        if not zero:
            return []
        api.set_inventory(level.item_id, level.location_id, 0)
        return [f"{channel}:{sku} {level.item_id}@{where or '-'} {after.level_before}→0"]

    def _unlock(
        self, store_id: str, channel: str, api: StoreApi, sku: str, holder: str
    ) -> list[str]:
        held = self.conn.execute(
            "SELECT item_id, location_id FROM inventory_locks WHERE store_id = %s"
            " AND channel = %s AND sku = %s AND %s = ANY(holders) ORDER BY item_id, location_id",
            (store_id, channel, sku, holder),
        ).fetchall()
        if not held:
            return []
        now = {(s.item_id, s.location_id or ""): s.available for s in api.stock_of_sku(sku)}
        changes = []
        for item_id, where in held:
            with self._item(store_id, channel, item_id, where) as lock:
                current = now.get((item_id, where))
                left, restore = on_unlock(lock, holder, current if current is not None else -1)
                # The push comes before the record is released: killed after it, the retry
                # pushes again rather than forget the item.
                if restore is not None:
                    api.set_inventory(item_id, where or None, restore)
                    changes.append(f"{channel}:{sku} {item_id}@{where or '-'} 0→{restore}")
                self._write(store_id, channel, item_id, where, sku, left)
        return changes

    @contextmanager
    def _item(self, store_id: str, channel: str, item_id: str, where: str) -> Iterator[Lock | None]:
        with self.conn.transaction():
            self.conn.execute(
                "SELECT pg_advisory_xact_lock(hashtext(%s))",
                (f"lock:{store_id}/{channel}/{item_id}/{where}",),
            )
            row = self.conn.execute(
                "SELECT holders, level_before FROM inventory_locks WHERE store_id = %s"
                " AND channel = %s AND item_id = %s AND location_id = %s",
                (store_id, channel, item_id, where),
            ).fetchone()
            yield Lock(frozenset(row[0]), int(row[1])) if row else None

    def _write(
        self, store_id: str, channel: str, item_id: str, where: str, sku: str, lock: Lock | None
    ) -> None:
        if lock is None:
            self.conn.execute(
                "DELETE FROM inventory_locks WHERE store_id = %s AND channel = %s"
                " AND item_id = %s AND location_id = %s",
                (store_id, channel, item_id, where),
            )
            return
        self.conn.execute(
            "INSERT INTO inventory_locks (store_id, channel, item_id, location_id, sku, holders,"
            " level_before, updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (store_id, channel, item_id, location_id) DO UPDATE SET"
            " holders = EXCLUDED.holders, updated_at = EXCLUDED.updated_at",
            (
                store_id,
                channel,
                item_id,
                where,
                sku,
                sorted(lock.holders),
                lock.level_before,
                datetime.now(UTC),
            ),
        )


def journal_of(api: StoreApi) -> list[Answer]:
    """The calls a store client made since the last take (its ``ApiClient``'s journal)."""
    client = getattr(api, "client", None)
    return client.take_journal() if client is not None else []
