"""The order sweep's hands: which paid orders Mahak lacks (`shopdb.orders`), which of them
have a sync in flight (Temporal visibility), and starting the others (`start_order_sync`).

Idempotent by construction (`start_order_sync` attaches to a running sync and never reruns a
finished one), so visibility lagging behind a just-started workflow costs one extra call.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import asyncpg
from temporalio import activity
from temporalio.client import Client

from mahak_sync.config import Settings
from mahak_sync.logging import get_logger
from mahak_sync.orders_api import start_order_sync
from shopdb import orders
from shopdb.models import ShopOrder
from workflows.order_types import order_workflow_id
from workflows.sweep_types import SweepCursor, SweepPage, SweepPageRequest

log = get_logger(__name__)

# Workflow ids per visibility query: keeps each query string short.
VISIBILITY_CHUNK = 100


class OrderSweepActivities:
    """Examine one page of unsynced paid orders and start the sync of each with none running.

    Orders whose compensation began are never examined (the query excludes them), and each
    candidate is checked again just before its start, so an order that synced or began its
    compensation meanwhile is left alone."""

    def __init__(self, pool: asyncpg.Pool, client: Client, settings: Settings) -> None:
        self._pool = pool
        self._client = client
        self._settings = settings

    @activity.defn(name="order.sweep_page")
    async def sweep_page(self, req: SweepPageRequest) -> SweepPage:
        """The `req.limit` orders after `req.after`, going on from the oldest at the end."""
        page, wrapped = await self._page(req.after, req.limit)
        in_flight = await self._running(o.id for o in page)
        candidates = [o.id for o in page if order_workflow_id(o.id) not in in_flight]
        if candidates:
            still = {
                o.id
                for o in await orders.paid_orders_without_sync(
                    self._pool, len(candidates), among=candidates
                )
            }
            candidates = [i for i in candidates if i in still]
        for order_id in candidates:
            await start_order_sync(self._client, order_id, self._settings)
        last = page[-1] if page else None
        result = SweepPage(
            started=candidates,
            examined=len(page),
            in_flight=len(in_flight),
            wrapped=wrapped,
            cursor=last and SweepCursor(paid_at=last.paid_at, order_id=last.id),
        )
        log.info(
            "order sweep",
            started=result.started,
            examined=result.examined,
            in_flight=result.in_flight,
            wrapped=wrapped,
            cursor=last and last.id,
        )
        return result

    @activity.defn(name="order.sweep")
    async def sweep(self, limit: int) -> list[int]:
        """The activity of runs started before paging, which call it (the oldest page
        every time) until they continue as new."""
        return (await self.sweep_page(SweepPageRequest(limit=limit))).started

    async def _page(self, after: SweepCursor | None, limit: int) -> tuple[list[ShopOrder], bool]:
        """Up to `limit` orders after the cursor, followed (when the newest was reached
        first) by the oldest ones, each order at most once; and whether it wrapped round."""
        if after is None:
            return await orders.paid_orders_without_sync(self._pool, limit), False
        page = await orders.paid_orders_without_sync(
            self._pool, limit, after=(after.paid_at, after.order_id)
        )
        if len(page) == limit:
            return page, False
        # Wrap: the orders up to the cursor come first in payment order, so dropping the
        # ones this page holds already leaves exactly those (all of them when fewer than
        # `limit` orders wait).
        seen = {o.id for o in page}
        head = await orders.paid_orders_without_sync(self._pool, limit - len(page))
        return page + [o for o in head if o.id not in seen], True

    async def _running(self, order_ids: Iterable[int]) -> set[str]:
        """The workflow ids among these orders' whose sync is running: one visibility query
        per `VISIBILITY_CHUNK` orders, never a scan of every running order."""
        ids = [order_workflow_id(i) for i in order_ids]
        running: set[str] = set()
        for start in range(0, len(ids), VISIBILITY_CHUNK):
            chunk = ", ".join(f"'{wid}'" for wid in ids[start : start + VISIBILITY_CHUNK])
            query = (
                "WorkflowType = 'OrderSyncWorkflow' AND ExecutionStatus = 'Running' "
                f"AND WorkflowId IN ({chunk})"
            )
            running.update([wf.id async for wf in self._client.list_workflows(query)])
        return running

    def all(self) -> list[Any]:
        return [self.sweep_page, self.sweep]
