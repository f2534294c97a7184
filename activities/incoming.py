"""The incoming sync's I/O: Mahak pages into the shop database, cursor and all.

`IncomingSync` does the work with plain async calls, so `mahak-sync sync once` runs a cycle
without Temporal; `IncomingActivities` exposes the same calls as Temporal activities, adding
heartbeats and the mapping of errors onto Temporal's retry policy:

- `MahakTransientError`, lost database connections, anything unexpected: raised as retryable,
  so the workflow's retry policy backs off and tries again (honouring Mahak's Retry-After).
- `MahakPermanentError` (bad credentials, a malformed envelope, a refused request):
  non-retryable `ApplicationError` named after the Mahak error class, carrying the progress
  made, so the workflow records it and goes on with the other entities.

Every page is applied in one transaction together with its cursor (`shopdb.catalog.apply_page`),
and the cursor is read from the database when an entity starts, so a retried or repeated
activity resumes exactly where the last committed page left off.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import asyncpg
from temporalio import activity
from temporalio.exceptions import ApplicationError

from mahak_client.client import MahakClient
from mahak_client.errors import MahakPermanentError, MahakTransientError
from mahak_client.models import INCOMING_ORDER, EntityBatch
from mahak_client.pager import iter_pages
from mahak_sync.logging import get_logger
from shopdb import catalog, orders, synclog
from shopdb.models import ApplyCounts, SyncLogEntry
from shopdb.pool import transaction

from .heartbeat import Heartbeat
from .incoming_types import (
    DETECT_INVENTORY_CONFLICTS,
    RECORD_FAILURE,
    RESET_CURSOR,
    STOCK_ENTITY,
    SYNC_ENTITY,
    CycleSummary,
    DetectConflictsInput,
    EntityCounts,
    EntityProgress,
    EntitySyncResult,
    OrderStockConflict,
    RecordFailureInput,
    ResetCursorRequest,
    ResetCursorResult,
    StockShortage,
    SyncEntityInput,
    Trigger,
)

log = get_logger(__name__)

# The sync-log "entity" under which a cycle's inventory conflicts are recorded.
CONFLICTS_LOG_ENTITY = "inventory_conflicts"
_MAX_ERROR_TEXT = 2000

ProgressCallback = Callable[[EntityProgress], None]


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _counts(batch: EntityBatch, applied: ApplyCounts) -> EntityCounts:
    return EntityCounts(fetched=len(batch.rows) + len(batch.rejected), **applied.model_dump())


class IncomingSync:
    """Fetch-and-apply for each entity, sync-log rows, conflict detection, cursor resets."""

    def __init__(self, pool: asyncpg.Pool, mahak: MahakClient) -> None:
        self.pool = pool
        self.mahak = mahak

    async def sync_entity(
        self,
        request: SyncEntityInput,
        *,
        resume: EntityProgress | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> EntitySyncResult:
        """Drain one entity from its stored cursor, page by page, until Mahak has no more.

        `resume` (the last heartbeat of a failed attempt) only carries the counts and start
        time forward for the sync log; where to continue always comes from the database.
        """
        entity = request.entity
        progress = (resume.model_copy(deep=True) if resume and resume.entity == entity
                    else EntityProgress(entity=entity, started_at=_now()))
        bound = log.bind(entity=entity, run_id=request.run_id)
        cursor = await catalog.get_cursor(self.pool, entity)
        progress.cursor = cursor
        if on_progress:
            on_progress(progress)
        async for batch in iter_pages(self.mahak, entity, cursor, request.page_size):
            cursor = max(cursor, batch.max_row_version or cursor)
            applied = await catalog.apply_page(self.pool, batch, new_cursor=cursor,
                                               run_id=request.run_id)
            progress.pages += 1
            progress.cursor = cursor
            progress.counts = progress.counts + _counts(batch, applied)
            if on_progress:
                on_progress(progress)
            # Live progress for operators; the same row is completed below.
            await self._log_row(request.run_id, progress)
            bound.debug("incoming.page_applied", page=progress.pages, cursor=cursor,
                        **applied.model_dump())
        await self._log_row(request.run_id, progress, finished_at=_now())
        if progress.counts.fetched:
            bound.info("incoming.entity_synced", pages=progress.pages, cursor=cursor,
                       **progress.counts.model_dump())
        return EntitySyncResult(entity=entity, counts=progress.counts, cursor=cursor,
                                pages=progress.pages)

    async def _log_row(self, run_id: str, progress: EntityProgress, *,
                       finished_at: datetime | None = None, error: str | None = None) -> None:
        await synclog.record(self.pool, SyncLogEntry(
            run_id=run_id, entity=progress.entity, started_at=progress.started_at,
            finished_at=finished_at, error=error, **progress.counts.model_dump(),
        ))

    async def record_failure(self, failure: RecordFailureInput) -> None:
        progress = EntityProgress(entity=failure.entity, started_at=failure.started_at,
                                  counts=failure.counts)
        await self._log_row(failure.run_id, progress, finished_at=_now(),
                            error=failure.error[:_MAX_ERROR_TEXT])

    async def detect_inventory_conflicts(self, run_id: str) -> list[OrderStockConflict]:
        """Paid, unsent web orders that Mahak's (just synced) stock no longer covers, per
        order; recorded in the sync log when there are any.

        The stock goes to the orders in the order they were paid: only those it cannot cover
        are in conflict (and get cancelled), not every order holding the product."""
        shortages_by_order: dict[int, list[StockShortage]] = defaultdict(list)
        shortages: dict[tuple[int, int], tuple[StockShortage, list[int]]] = {}
        for holding in await orders.uncovered_holdings(self.pool):
            key = (holding.product_detail_id, holding.store_id)
            if key not in shortages:
                shortages[key] = (StockShortage(
                    product_detail_id=holding.product_detail_id, store_id=holding.store_id,
                    held=float(holding.held), available=float(holding.mahak_count1),
                ), [])
            shortage, order_ids = shortages[key]
            order_ids.append(holding.order_id)
            shortages_by_order[holding.order_id].append(shortage)
        lines = [f"{shortage.describe()} (orders {', '.join(map(str, ids))})"
                 for shortage, ids in shortages.values()]
        found = [OrderStockConflict(order_id=order_id, shortages=short)
                 for order_id, short in sorted(shortages_by_order.items())]
        if found:
            now = _now()
            await synclog.record(self.pool, SyncLogEntry(
                run_id=run_id, entity=CONFLICTS_LOG_ENTITY, started_at=now, finished_at=now,
                fetched=len(found), error=f"stock short: {'; '.join(lines)}"[:_MAX_ERROR_TEXT],
            ))
            log.warning("incoming.inventory_conflicts", run_id=run_id, orders=len(found),
                        shortages=len(shortages))
        return found

    async def reset_cursor(self, request: ResetCursorRequest) -> ResetCursorResult:
        request.validate_request()
        names = request.entities()
        async with transaction(self.pool) as conn:
            for name in names:
                await catalog.set_cursor(conn, name, request.row_version)
        log.warning("incoming.cursor_reset", entities=names, row_version=request.row_version)
        return ResetCursorResult(cursors={name: request.row_version for name in names})

    async def run_cycle(self, *, page_size: int, run_id: str,
                        trigger: Trigger = "cli") -> CycleSummary:
        """One whole cycle in-process, with the workflow's failure policy but no retries:
        a permanent error skips its entity, anything else ends the cycle."""
        summary = CycleSummary(run_id=run_id, trigger=trigger, started_at=_now())
        for index, entity in enumerate(INCOMING_ORDER):
            started_at = _now()
            try:
                result = await self.sync_entity(
                    SyncEntityInput(entity=entity, page_size=page_size, run_id=run_id))
            except Exception as exc:  # noqa: BLE001 - recorded, reported, and decides the exit code
                permanent = isinstance(exc, MahakPermanentError)
                result = EntitySyncResult(entity=entity, error=str(exc)[:_MAX_ERROR_TEXT],
                                          error_type=type(exc).__name__)
                summary.entities[entity] = result
                await self._record_quietly(RecordFailureInput(
                    run_id=run_id, entity=entity, started_at=started_at,
                    error=result.error or type(exc).__name__))
                if not permanent:
                    summary.skipped = list(INCOMING_ORDER[index + 1:])
                    break
                continue
            summary.entities[entity] = result
            if entity == STOCK_ENTITY:
                summary.inventory_conflicts = len(await self.detect_inventory_conflicts(run_id))
        summary.finished_at = _now()
        return summary

    async def _record_quietly(self, failure: RecordFailureInput) -> None:
        try:
            await self.record_failure(failure)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("incoming.failure_not_recorded", entity=failure.entity, error=str(exc))


class IncomingActivities:
    """Temporal activities of the incoming sync; clients are injected by the worker."""

    def __init__(self, pool: asyncpg.Pool, mahak: MahakClient) -> None:
        self.sync = IncomingSync(pool, mahak)

    @activity.defn(name=SYNC_ENTITY)
    async def sync_entity(self, request: SyncEntityInput) -> EntitySyncResult:
        # Progress a failed earlier attempt of this activity reported, if any.
        resume = EntityProgress.from_details(activity.info().heartbeat_details)
        async with Heartbeat(*([resume] if resume else [])) as beat:
            try:
                return await self.sync.sync_entity(
                    request, resume=resume,
                    on_progress=lambda progress: beat.report(progress.model_copy(deep=True)))
            except MahakPermanentError as exc:
                raise ApplicationError(str(exc), *beat.details, type=type(exc).__name__,
                                       non_retryable=True) from exc
            except MahakTransientError as exc:
                delay = timedelta(seconds=exc.retry_after) if exc.retry_after else None
                raise ApplicationError(str(exc), *beat.details, type=type(exc).__name__,
                                       next_retry_delay=delay) from exc

    @activity.defn(name=RECORD_FAILURE)
    async def record_failure(self, failure: RecordFailureInput) -> None:
        await self.sync.record_failure(failure)

    @activity.defn(name=DETECT_INVENTORY_CONFLICTS)
    async def detect_inventory_conflicts(
        self, request: DetectConflictsInput
    ) -> list[OrderStockConflict]:
        return await self.sync.detect_inventory_conflicts(request.run_id)

    @activity.defn(name=RESET_CURSOR)
    async def reset_cursor(self, request: ResetCursorRequest) -> ResetCursorResult:
        return await self.sync.reset_cursor(request)

    def all(self) -> list[Any]:
        return [self.sync_entity, self.record_failure, self.detect_inventory_conflicts,
                self.reset_cursor]

