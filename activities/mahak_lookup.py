"""What Mahak holds for one web order: its order row, lines and receipt, found by client id.

Mahak has no look-up by client id, so this reads: rows newer than the incoming sync's cursors
(fresh from Mahak), then the mirrored tables for what the sync already holds. Receipts are
not mirrored; they are read from the oldest RowVersion of the order's rows (the send saves
the receipt after the order and its lines, and RowVersion is one counter for all entities).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg

from activities.order_request import MahakHolding
from mahak_client.client import MahakClient
from mahak_client.lean import LeanWhenUncapped, parse_lean
from mahak_client.models import EntityBatch, Order, OrderDetail, Receipt, SyncedRow
from mahak_client.pager import iter_pages
from mahak_sync.config import DEFAULT_MAHAK_PAGE_SIZE
from shopdb.catalog import get_cursor
from shopdb.models import ShopOrder

# Mirror column -> model field, for the columns the comparison reads.
_ORDER_COLUMNS = {
    "id": "order_id",
    "client_id": "order_client_id",
    "deleted": "deleted",
    "row_version": "row_version",
    "person_id": "person_id",
    "order_type": "order_type",
    "discount": "discount",
    "send_cost": "send_cost",
    "settlement_type": "settlement_type",
}
_LINE_COLUMNS = {
    "id": "order_detail_id",
    "client_id": "order_detail_client_id",
    "order_id": "order_id",
    "order_client_id": "order_client_id",
    "product_detail_id": "product_detail_id",
    "store_id": "store_id",
    "price": "price",
    "count1": "count1",
    "discount": "discount",
    "deleted": "deleted",
    "row_version": "row_version",
}


def _from_row(row: asyncpg.Record, columns: dict[str, str]) -> dict[str, Any]:
    return {
        field: (float(row[col]) if hasattr(row[col], "as_tuple") else row[col])
        for col, field in columns.items()
    }


def _newer(held: SyncedRow | None, row: Any) -> Any:
    """The later version of one record (the mirror and a fresh read may both hold it)."""
    return row if held is None or row.row_version >= held.row_version else held


class MahakOrderLookup:
    def __init__(self, pool: asyncpg.Pool, mahak: MahakClient, page_size: int | None) -> None:
        self._pool = pool
        self._mahak = mahak
        self._page_size = page_size

    async def holding(self, order: ShopOrder) -> MahakHolding:
        client_id = order.order_client_id
        ours = [ln.order_detail_client_id for ln in order.lines]
        # Cursors first: the incoming sync stores a page and its cursor in one transaction, so
        # a mirror read after them holds at least everything up to them, and the fresh read
        # from them covers the rest. Read the other way round, rows the sync commits in
        # between (a line's deletion, say) would fall between the two reads.
        order_cursor = await get_cursor(self._pool, "orders")
        line_cursor = await get_cursor(self._pool, "order_details")
        held = MahakHolding(order=await self._mirrored_order(client_id))
        async for batch in self._pages("orders", order_cursor):
            for row in batch.rows:
                if row.order_client_id == client_id:
                    held.order = _newer(held.order, row)
        mahak_order_id = held.order.order_id if held.order is not None else None
        for d in await self._mirrored_lines(mahak_order_id, ours):
            held.hold_line(d, _newer)
        async for batch in self._pages("order_details", line_cursor):
            for d in batch.rows:
                if (
                    d.order_detail_client_id in ours
                    or d.order_client_id == client_id
                    or (mahak_order_id is not None and d.order_id == mahak_order_id)
                ):
                    held.hold_line(d, _newer)
        held.receipt = await self._receipt(client_id, held)
        return held

    async def _receipt(self, client_id: int, held: MahakHolding) -> Receipt | None:
        """Receipts are not mirrored. The send saves the receipt after the order and its
        lines, so it is usually found from their oldest RowVersion; but the desktop's import
        re-stamps the order, and refused lines leave none to go by: when not found there, all
        receipts are read (a rare path: a resend, a probe or a reversal)."""
        versions = [
            r.row_version
            for r in (held.order, *held.lines.values(), *held.foreign_lines.values())
            if r is not None
        ]
        starts = [min(versions), 0] if versions and min(versions) > 0 else [0]
        for since in starts:
            found: Receipt | None = None
            async for batch in self._pages("receipts", since):
                for r in batch.rows:
                    if r.receipt_client_id == client_id:
                        found = _newer(found, r)
            if found is not None:
                return found
        return None

    async def _pages(self, entity: str, since: int) -> AsyncIterator[EntityBatch]:
        """`entity`'s rows from `since`, parsed a part at a time: without a page size an
        answer may hold all of the entity (receipts from 0), read leanly."""
        async for batch in iter_pages(
            LeanWhenUncapped(self._mahak), entity, since, self._page_size
        ):
            items = [*batch.rows, *batch.rejected]
            for start in range(0, len(items), DEFAULT_MAHAK_PAGE_SIZE):
                yield parse_lean(entity, items[start : start + DEFAULT_MAHAK_PAGE_SIZE])

    async def _mirrored_order(self, client_id: int) -> Order | None:
        row = await self._pool.fetchrow(
            f"SELECT {', '.join(_ORDER_COLUMNS)} FROM mahak_orders WHERE client_id = $1 "
            "ORDER BY deleted, row_version DESC LIMIT 1",
            client_id,
        )
        return None if row is None else Order(**_from_row(row, _ORDER_COLUMNS))

    async def _mirrored_lines(
        self, mahak_order_id: int | None, client_ids: list[int]
    ) -> list[OrderDetail]:
        rows = await self._pool.fetch(
            f"SELECT {', '.join(_LINE_COLUMNS)} FROM mahak_order_details "
            "WHERE order_id = $1 OR client_id = ANY($2::bigint[])",
            mahak_order_id,
            client_ids,
        )
        return [OrderDetail(**_from_row(r, _LINE_COLUMNS)) for r in rows]
