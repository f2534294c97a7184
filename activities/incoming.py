"""The incoming sync's I/O: Mahak pages into the shop database, cursor and all.

`IncomingSync` does the work with plain async calls, so `mahak-sync sync once` runs a cycle
without Temporal; `IncomingActivities` exposes the same calls as Temporal activities, adding
heartbeats. Errors become `ApplicationError`s by the one table of `mahak_sync.errors`
(`classify`), the failed entity's progress attached: Mahak unavailable, bad credentials, a
malformed body and database trouble are retried with backoff (honouring Mahak's
Retry-After); a refused request or invalid data are not. The workflow then decides by the
error's type (`incoming_types.ends_cycle`) whether the rest of the cycle can still run.

Inventory conflicts are checked after stock, orders and order details all synced to the end
in the cycle (`CONFLICT_PICTURE`); when the mirror shows any, those three are read again from
Mahak (from their cursors, through the same store-then-advance path) and only the orders
still short afterwards are reported.

A reconciliation (`reconcile_entity`, shared/mahak-api.md §10 (a)) reads an entity from
RowVersion 0 through the same pager and newer-only store: rows missing or older in the shop
are applied (the difference, counted `inserted`/`updated`/`deleted` in a sync-log row whose
run id starts with `reconcile-`), the cursor only ever moves forwards, and live shop rows the
full read no longer lists are reported in that row's `error` text and at WARNING, not deleted.

Every page is applied in one transaction together with its cursor (`shopdb.catalog.apply_page`),
and the cursor is read from the database when an entity starts, so a retried or repeated
activity resumes exactly where the last committed page left off.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator
from contextlib import aclosing
from datetime import UTC, datetime
from operator import attrgetter
from typing import Any, TypeVar

import asyncpg
from temporalio import activity

from mahak_client.client import MahakClient
from mahak_client.lean import LeanRow, LeanWhenUncapped, parse_lean
from mahak_client.models import INCOMING_ORDER, EntityBatch, RowStamp
from mahak_client.pager import PagerStats, PagingEvidence, iter_pages
from mahak_sync import metrics
from mahak_sync.config import (
    DEFAULT_LOOKBACK_ROWVERSIONS,
    DEFAULT_MAHAK_PAGE_SIZE,
    DEFAULT_SHOP_PRICE_LEVEL,
    Settings,
)
from mahak_sync.errors import classify
from mahak_sync.logging import get_logger
from shopdb import catalog, orders, synclog
from shopdb.mirror import mirror
from shopdb.models import ApplyCounts, SyncLogEntry
from shopdb.pool import transaction
from workflows.incoming_types import (
    CONFLICT_PICTURE,
    CheckConflictsInput,
    ConflictCheckResult,
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
    SyncEntitiesInput,
    SyncEntitiesResult,
    SyncEntityInput,
    Trigger,
    ends_cycle,
)

from .heartbeat import Heartbeat

log = get_logger(__name__)

# The sync-log "entity" under which a cycle's inventory conflicts are recorded.
CONFLICTS_LOG_ENTITY = "inventory_conflicts"
_MAX_ERROR_TEXT = 2000
_ABSENT_SAMPLE = 20  # ids named in the sync log's note of rows Mahak no longer lists
_LIVE_LOG_SECONDS = 1.0  # an entity's sync-log row is updated this often while it drains
# Rows of an uncapped answer parsed and stored at a time (memory: one part of models at once).
PART_ROWS = DEFAULT_MAHAK_PAGE_SIZE

ProgressCallback = Callable[[EntityProgress], None]
T = TypeVar("T")


def _now() -> datetime:
    return datetime.now(UTC)


async def prefetched(items: AsyncGenerator[T, None]) -> AsyncGenerator[T, None]:
    """`items`, with the next one fetched while the caller works on the current one (one
    ahead at most, so memory stays bounded by two pages): a drain then takes as long as the
    slower of fetching and applying, not their sum.

    An error fetching the next item is raised where the caller asks for it, i.e. after the
    current item was handled (its page stored with its cursor). Whatever ends the loop (the
    end, an error on either side, cancellation, the caller breaking off) cancels and awaits
    the fetch in flight and closes `items`, so no task outlives the drain."""
    ahead: asyncio.Future[T] | None = asyncio.ensure_future(anext(items))
    try:
        while ahead is not None:
            try:
                item = await ahead
            except StopAsyncIteration:
                ahead = None
                return
            ahead = asyncio.ensure_future(anext(items))
            yield item
    finally:
        if ahead is not None and not ahead.done():
            ahead.cancel()
            # Let the cancelled fetch unwind before `items` is closed (a generator still
            # running cannot be closed).
            await asyncio.gather(ahead, return_exceptions=True)
        elif ahead is not None and not ahead.cancelled():
            ahead.exception()  # an error nobody will ask for any more: retrieved, not logged
        await items.aclose()


def _window_start(cursor: int, lookback: int) -> int:
    """Where a delta read of an entity at `cursor` starts (§10 (f): a look-back window)."""
    return max(0, cursor - lookback) if lookback > 0 else cursor


def _parsed_parts(page: EntityBatch, cursor: int) -> Iterator[tuple[EntityBatch, int]]:
    """`page` as parsed batches, each with the cursor that may be stored with it.

    A page of parsed rows is one batch. A lean page (an uncapped answer, `mahak_client.lean`)
    is parsed and stored `PART_ROWS` rows at a time in RowVersion order, a part never ending
    inside a run of equal RowVersions: every row of the page at or below a part's highest
    RowVersion is then in that part or an earlier one, so that RowVersion is a safe cursor
    (the page's own, `max_row_version`, is the pager's promise)."""
    if not any(isinstance(row, LeanRow) for row in page.rows):
        yield page, max(cursor, page.max_row_version or cursor)
        return
    items = [*page.rows, *page.rejected]
    unversioned = [item for item in items if item.row_version is None]
    ordered = sorted(
        (item for item in items if item.row_version is not None), key=attrgetter("row_version")
    )
    start = 0
    while True:
        end = min(start + PART_ROWS, len(ordered))
        while 0 < end < len(ordered) and ordered[end].row_version == ordered[end - 1].row_version:
            end += 1
        batch = parse_lean(page.entity, [*(unversioned if start == 0 else ()), *ordered[start:end]])
        cursor = max(cursor, batch.max_row_version or cursor)
        yield batch, cursor
        if end >= len(ordered):
            return
        start = end


def _counts(batch: EntityBatch, applied: ApplyCounts) -> EntityCounts:
    return EntityCounts(fetched=len(batch.rows) + len(batch.rejected), **applied.model_dump())


class IncomingSync:
    """Fetch-and-apply for each entity, sync-log rows, conflict detection, cursor resets."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        mahak: MahakClient,
        *,
        lookback: int = DEFAULT_LOOKBACK_ROWVERSIONS,
        price_level: int = DEFAULT_SHOP_PRICE_LEVEL,
    ) -> None:
        self.pool = pool
        self.mahak = mahak
        # Late commits (shared/mahak-api.md §10 (f)): each read starts this many RowVersions
        # below the cursor; the newer-only upsert makes re-reading safe and cheap.
        self.lookback = lookback
        self.price_level = price_level
        # What Mahak has shown about its paging, kept across entities and cycles.
        self.paging = PagingEvidence()

    @classmethod
    def from_settings(
        cls, pool: asyncpg.Pool, mahak: MahakClient, settings: Settings
    ) -> IncomingSync:
        return cls(
            pool,
            mahak,
            lookback=settings.incoming_lookback_rowversions,
            price_level=settings.shop_price_level,
        )

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
        progress = (
            resume.model_copy(deep=True)
            if resume and resume.entity == entity
            else EntityProgress(entity=entity, started_at=_now())
        )
        bound = log.bind(entity=entity, run_id=request.run_id)
        stored = await catalog.get_cursor(self.pool, entity)
        cursor = progress.cursor = stored
        if on_progress:
            on_progress(progress)
        log_due = time.monotonic() + _LIVE_LOG_SECONDS
        async with aclosing(
            self._apply_pages(
                entity, stored, request.page_size, request.run_id, lookback=self.lookback
            )
        ) as pages:
            async for cursor, applied in pages:
                progress.page_stored(cursor, applied)
                if on_progress:
                    on_progress(progress)
                if time.monotonic() >= log_due:
                    # Live progress for operators, once a second at most (a quiet entity's
                    # one page costs no extra write); the same row is completed below.
                    await self._log_row(request.run_id, progress)
                    log_due = time.monotonic() + _LIVE_LOG_SECONDS
                bound.debug(
                    "incoming.page_applied",
                    page=progress.pages,
                    cursor=cursor,
                    **applied.model_dump(),
                )
        await self._log_row(request.run_id, progress, finished_at=_now())
        if progress.counts.fetched:
            bound.info(
                "incoming.entity_synced",
                pages=progress.pages,
                cursor=cursor,
                **progress.counts.model_dump(),
            )
        return EntitySyncResult(
            entity=entity, counts=progress.counts, cursor=cursor, pages=progress.pages
        )

    async def sync_entities(
        self, request: SyncEntitiesInput, *, on_progress: ProgressCallback | None = None
    ) -> SyncEntitiesResult:
        """`sync_entity` for each of `request.entities` in order while the budget lasts,
        then, when all of them synced, the inventory check. An entity that fails ends it,
        unrecorded: the workflow gives that entity and the rest one activity each, with their
        retries and failure policy, so nothing here decides what an error means."""
        out = SyncEntitiesResult()
        started = time.monotonic()
        quiet = await self._quiet_entities(request)
        for entity in request.entities:
            if entity in quiet:
                result = quiet[entity]
                out.results.append(result)
                if on_progress:
                    on_progress(
                        EntityProgress(
                            entity=entity,
                            started_at=_now(),
                            pages=result.pages,
                            cursor=result.cursor or 0,
                            counts=result.counts,
                        )
                    )
                continue
            if out.results and time.monotonic() - started >= request.budget_seconds:
                return out
            try:
                out.results.append(
                    await self.sync_entity(
                        SyncEntityInput(
                            entity=entity, page_size=request.page_size, run_id=request.run_id
                        ),
                        on_progress=on_progress,
                    )
                )
            except Exception as exc:  # noqa: BLE001 - left to the entity's own activity
                log.info(
                    "incoming.entity_left_to_own_activity",
                    entity=entity,
                    run_id=request.run_id,
                    error=classify(exc).message[:300],
                )
                return out
        if request.check_conflicts:
            try:
                out.conflicts = await self.check_inventory_conflicts(
                    request.run_id, page_size=request.page_size
                )
            except Exception as exc:  # noqa: BLE001 - the workflow's own check runs instead
                log.info(
                    "incoming.conflicts_left_to_own_activity",
                    run_id=request.run_id,
                    error=classify(exc).message[:300],
                )
        return out

    async def _quiet_entities(self, request: SyncEntitiesInput) -> dict[str, EntitySyncResult]:
        """The entities of `request` that one GetAllData of all their look-back windows shows
        unchanged, recorded as `sync_entity` would record them (a sync-log row each, the
        cursor kept, `last_synced_at` for those with rows), in one transaction.

        Only each row's id and RowVersion is read. An entity is unchanged when its list cannot
        have been cut (shorter than `pageSize` and than the longest list the server has sent:
        `PagingEvidence`), is ascending from the window's start, holds nothing above the
        cursor, and the shop holds every row at that RowVersion or newer: then the newer-only
        store would find every row unchanged. Anything else, and any error here, leaves the
        entity to `sync_entity`, which reads, checks and stores it in full."""
        try:
            cursors = await catalog.get_cursors(self.pool)
            cursors = {entity: cursors.get(entity, 0) for entity in request.entities}
            starts = {
                entity: _window_start(cursor, self.lookback) for entity, cursor in cursors.items()
            }
            stamps = await self.mahak.get_row_stamps(starts, page_size=request.page_size)
            windows = {
                entity: versions
                for entity, rows in stamps.items()
                if (
                    versions := self._window_versions(
                        rows, starts[entity], cursors[entity], request.page_size
                    )
                )
                is not None
            }
            stored = await catalog.stored_versions(
                self.pool, {entity: list(versions) for entity, versions in windows.items()}
            )
            quiet: dict[str, EntitySyncResult] = {}
            for entity, versions in windows.items():
                held = stored[entity]
                if all(held.get(i, -1) >= version for i, version in versions.items()):
                    fetched = len(stamps[entity])
                    quiet[entity] = EntitySyncResult(
                        entity=entity,
                        counts=EntityCounts(fetched=fetched, unchanged=fetched),
                        cursor=cursors[entity],
                        pages=1 if fetched else 0,
                    )
            await self._record_unchanged(request.run_id, list(quiet.values()))
        except Exception as exc:  # noqa: BLE001 - every entity is then read in full
            log.info(
                "incoming.quiet_check_skipped",
                run_id=request.run_id,
                error=classify(exc).message[:300],
            )
            return {}
        for result in quiet.values():
            self._page_metrics(result.entity, result.counts, result.cursor or 0)
        log.info(
            "incoming.quiet_check",
            run_id=request.run_id,
            unchanged=len(quiet),
            entities=len(request.entities),
            rows=sum(result.counts.fetched for result in quiet.values()),
        )
        return quiet

    def _window_versions(
        self, rows: list[RowStamp], start: int, cursor: int, page_size: int | None
    ) -> dict[int, int] | None:
        """The highest RowVersion of each id in a window's list, or None when the list cannot
        show an unchanged entity (see `_quiet_entities`)."""
        if page_size is not None and len(rows) >= page_size:
            return None
        if rows and len(rows) >= self.paging.most_rows:
            return None  # a silent cap (at least this long) may have cut it
        versions: dict[int, int] = {}
        below = start if start > 0 else None
        for mahak_id, version in rows:
            if mahak_id is None or version is None or version > cursor:
                return None
            if below is not None and version < below:
                return None  # below the window's start, or out of RowVersion order
            below = version
            versions[mahak_id] = max(version, versions.get(mahak_id, version))
        return versions

    async def _record_unchanged(self, run_id: str, results: list[EntitySyncResult]) -> None:
        if not results:
            return
        now = _now()
        async with transaction(self.pool) as conn:
            await synclog.record_many(
                conn,
                [
                    SyncLogEntry(
                        run_id=run_id,
                        entity=result.entity,
                        started_at=now,
                        finished_at=now,
                        **result.counts.model_dump(exclude={"reread", "dropped"}),
                    )
                    for result in results
                ],
            )
            await catalog.touch_cursors(conn, [r.entity for r in results if r.pages])

    @staticmethod
    def _page_metrics(entity: str, counts: EntityCounts, cursor: int) -> None:
        for result in ("inserted", "updated", "unchanged", "deleted", "dead_lettered"):
            metrics.count("mahak_sync_rows", getattr(counts, result), entity=entity, result=result)
        metrics.gauge("mahak_sync_cursor", cursor, entity=entity)

    async def reconcile_entity(
        self,
        request: SyncEntityInput,
        *,
        resume: EntityProgress | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> EntitySyncResult:
        """Read one entity from RowVersion 0, page by page, through the same newer-only store
        (shared/mahak-api.md §10 (a)): what the shop lacks or holds in an older version is
        applied, and counted (`inserted`, `updated`, `deleted`: the difference found). The
        cursor is never moved backwards (it advances if the read passes it). Live shop rows
        whose ids the read did not list are counted and reported, never deleted.

        A retried attempt reads from 0 again (the ids seen cannot be resumed); the difference
        an earlier attempt applied (`resume`) is kept, the rest is counted afresh."""
        entity = request.entity
        progress = EntityProgress(entity=entity, started_at=_now())
        if resume and resume.entity == entity:
            progress.started_at = resume.started_at
            progress.counts = EntityCounts(
                inserted=resume.counts.inserted,
                updated=resume.counts.updated,
                deleted=resume.counts.deleted,
            )
        bound = log.bind(entity=entity, run_id=request.run_id)
        stored = await catalog.get_cursor(self.pool, entity)
        cursor = progress.cursor = stored
        if on_progress:
            on_progress(progress)
        seen: set[int] = set()
        # Never with `pageSize`: this read is what catches a page size trusted wrongly.
        async with aclosing(
            self._apply_pages(entity, stored, None, request.run_id, start=0, seen=seen)
        ) as pages:
            async for cursor, applied in pages:
                progress.page_stored(cursor, applied)
                if on_progress:
                    on_progress(progress)
                await self._log_row(request.run_id, progress)
        absent = await self._absent_ids(entity, seen)
        counts = progress.counts
        note = None
        if absent:
            sample = ", ".join(map(str, absent[:_ABSENT_SAMPLE]))
            extra = len(absent) - _ABSENT_SAMPLE
            more = f" and {extra} more" if extra > 0 else ""
            note = (
                f"reconciliation: {len(absent)} row(s) held by the shop are not listed by "
                f"Mahak any more (not deleted): ids {sample}{more}"
            )[:_MAX_ERROR_TEXT]
            bound.warning(
                "incoming.reconcile_absent", absent=len(absent), ids=absent[:_ABSENT_SAMPLE]
            )
        await self._log_row(request.run_id, progress, finished_at=_now(), error=note)
        difference = counts.inserted + counts.updated + counts.deleted
        (bound.warning if difference else bound.info)(
            "incoming.reconciled",
            pages=progress.pages,
            cursor=cursor,
            difference=difference,
            absent=len(absent),
            **counts.model_dump(),
        )
        return EntitySyncResult(
            entity=entity,
            counts=counts,
            cursor=cursor,
            pages=progress.pages,
            absent_in_mahak=len(absent),
        )

    async def _absent_ids(self, entity: str, seen: set[int]) -> list[int]:
        """Ids of live (not deleted) shop rows of `entity` that are not in `seen`."""
        table = mirror(entity).table
        rows = await self.pool.fetch(f"SELECT id FROM {table} WHERE NOT deleted ORDER BY id")
        return [row["id"] for row in rows if row["id"] not in seen]

    async def _apply_pages(
        self,
        entity: str,
        cursor: int,
        page_size: int | None,
        run_id: str,
        *,
        lookback: int = 0,
        start: int | None = None,
        seen: set[int] | None = None,
    ) -> AsyncGenerator[tuple[int, EntityCounts], None]:
        """Mahak's rows of `entity` from `cursor - lookback`, page by page, each page stored
        in the transaction that advances the cursor (so it never passes rows not stored);
        yields the cursor and the counts after each page.

        Every row the server sends is offered to the store, also those at or below the
        bound (the newer-only upsert decides, so a late commit is applied, not dropped); rows
        read again because a page failed the pager's checks, and any the pager dropped, are
        counted (`reread`, `dropped`) and logged at WARNING.

        `start` (a reconciliation: 0) reads from there instead; the cursor still only moves
        forwards. `seen` collects the ids of every row received (deleted and rejected ones too).
        """
        if start is None:
            start = _window_start(cursor, lookback)
        id_field = mirror(entity).id_field if seen is not None else ""
        stats = PagerStats()
        counted = PagerStats()

        async def fetched() -> AsyncGenerator[tuple[EntityBatch, int, int], None]:
            # The guards' counts as they stood when the page came: the next page's are
            # being counted while this one is applied.
            async for batch in iter_pages(
                LeanWhenUncapped(self.mahak),
                entity,
                start,
                page_size,
                include_held=True,
                stats=stats,
                evidence=self.paging,
            ):
                yield batch, stats.reread, stats.dropped

        async with aclosing(prefetched(fetched())) as pages:
            async for page, reread, dropped in pages:
                if seen is not None:
                    seen.update(getattr(row, id_field) for row in page.rows)
                    seen.update(r.mahak_id for r in page.rejected if r.mahak_id is not None)
                guards = {"reread": reread - counted.reread, "dropped": dropped - counted.dropped}
                counted.reread, counted.dropped = reread, dropped
                for batch, part_cursor in _parsed_parts(page, cursor):
                    cursor = part_cursor
                    applied = await catalog.apply_page(
                        self.pool,
                        batch,
                        new_cursor=cursor,
                        run_id=run_id,
                        price_level=self.price_level,
                    )
                    counts = _counts(batch, applied).model_copy(update=guards)
                    guards = {}
                    self._page_metrics(entity, counts, cursor)
                    yield cursor, counts
        if stats.reread or stats.dropped or stats.below_bound:
            log.warning(
                "incoming.paging_guard",
                entity=entity,
                run_id=run_id,
                reread=stats.reread,
                dropped=stats.dropped,
                below_bound=stats.below_bound,
                checks_failed=stats.checks_failed,
            )

    async def _log_row(
        self,
        run_id: str,
        progress: EntityProgress,
        *,
        finished_at: datetime | None = None,
        error: str | None = None,
    ) -> None:
        counts = progress.counts.model_dump(exclude={"reread", "dropped"})
        await synclog.record(
            self.pool,
            SyncLogEntry(
                run_id=run_id,
                entity=progress.entity,
                started_at=progress.started_at,
                finished_at=finished_at,
                error=error,
                **counts,
            ),
            reread=progress.counts.reread,
            dropped=progress.counts.dropped,
        )

    async def record_failure(self, failure: RecordFailureInput) -> None:
        progress = EntityProgress(
            entity=failure.entity, started_at=failure.started_at, counts=failure.counts
        )
        await self._log_row(
            failure.run_id, progress, finished_at=_now(), error=failure.error[:_MAX_ERROR_TEXT]
        )

    async def check_inventory_conflicts(
        self, run_id: str, *, page_size: int | None
    ) -> ConflictCheckResult:
        """Paid web orders Mahak's stock cannot cover (`shopdb.orders.uncovered_holdings`),
        per order, recorded in the sync log when there are any.

        Call it only on a complete picture (stock, orders and order details synced to the end
        in this cycle). When the mirror shows conflicts, stock, orders and order details are
        read again from Mahak first (the rows newer than their cursors, stored page by page
        as the sync stores them) and the conflicts computed again: only orders short both
        before and after the re-read are reported, so nothing is cancelled on a picture that
        was stale or caught half-way."""
        found = await self._conflicts()
        if not found:
            return ConflictCheckResult()
        before = {conflict.order_id for conflict in found}
        cursors: dict[str, int] = {}
        reread = EntityCounts()
        for entity in CONFLICT_PICTURE:
            cursors[entity] = await catalog.get_cursor(self.pool, entity)
            async with aclosing(
                self._apply_pages(entity, cursors[entity], page_size, run_id)
            ) as pages:
                async for cursor, applied in pages:
                    cursors[entity] = cursor
                    reread = reread + applied
        after = await self._conflicts()
        still = [conflict for conflict in after if conflict.order_id in before]
        cleared = len(before) - len(still)
        log.info(
            "incoming.inventory_reread",
            run_id=run_id,
            rows=reread.fetched,
            before=len(before),
            still=len(still),
        )
        if still:
            await self._log_conflicts(run_id, still, reread=reread.fetched, cleared=cleared)
        return ConflictCheckResult(conflicts=still, reread=True, cleared=cleared, cursors=cursors)

    async def detect_inventory_conflicts(
        self, run_id: str, *, page_size: int | None = None
    ) -> list[OrderStockConflict]:
        """`check_inventory_conflicts`' conflicts (the activity of runs recorded before the
        check moved after the orders)."""
        return (await self.check_inventory_conflicts(run_id, page_size=page_size)).conflicts

    async def _conflicts(self) -> list[OrderStockConflict]:
        """The shortages of `uncovered_holdings`, grouped by order."""
        shortages: dict[tuple[int, int], StockShortage] = {}
        by_order: dict[int, list[StockShortage]] = defaultdict(list)
        for holding in await orders.uncovered_holdings(self.pool):
            key = (holding.product_detail_id, holding.store_id)
            shortage = shortages.setdefault(
                key,
                StockShortage(
                    product_detail_id=holding.product_detail_id,
                    store_id=holding.store_id,
                    held=float(holding.held),
                    available=float(holding.mahak_count1),
                ),
            )
            by_order[holding.order_id].append(shortage)
        return [
            OrderStockConflict(order_id=order_id, shortages=short)
            for order_id, short in sorted(by_order.items())
        ]

    async def _log_conflicts(
        self, run_id: str, found: list[OrderStockConflict], *, reread: int, cleared: int
    ) -> None:
        order_ids: dict[tuple[int, int], list[int]] = defaultdict(list)
        shortages: dict[tuple[int, int], StockShortage] = {}
        for conflict in found:
            for shortage in conflict.shortages:
                key = (shortage.product_detail_id, shortage.store_id)
                shortages[key] = shortage
                order_ids[key].append(conflict.order_id)
        lines = [
            f"{shortages[key].describe()} (orders {', '.join(map(str, ids))})"
            for key, ids in sorted(order_ids.items())
        ]
        note = f" [after re-reading {reread} rows from Mahak; {cleared} order(s) cleared]"
        now = _now()
        await synclog.record(
            self.pool,
            SyncLogEntry(
                run_id=run_id,
                entity=CONFLICTS_LOG_ENTITY,
                started_at=now,
                finished_at=now,
                fetched=len(found),
                error=f"stock short: {'; '.join(lines)}{note}"[:_MAX_ERROR_TEXT],
            ),
        )
        log.warning(
            "incoming.inventory_conflicts",
            run_id=run_id,
            orders=len(found),
            shortages=len(shortages),
        )

    async def reset_cursor(self, request: ResetCursorRequest) -> ResetCursorResult:
        request.validate_request()
        names = request.entities()
        async with transaction(self.pool) as conn:
            for name in names:
                await catalog.set_cursor(conn, name, request.row_version)
        log.warning("incoming.cursor_reset", entities=names, row_version=request.row_version)
        return ResetCursorResult(cursors={name: request.row_version for name in names})

    async def run_cycle(
        self, *, page_size: int | None, run_id: str, trigger: Trigger = "cli"
    ) -> CycleSummary:
        """One whole cycle in-process, with the workflow's failure policy but no retries: an
        error that concerns its entity alone skips that entity, anything else ends the cycle
        (`ends_cycle`, by the error table); conflicts are checked at the end, on a complete
        picture only."""
        summary = CycleSummary(run_id=run_id, trigger=trigger, started_at=_now())
        for index, entity in enumerate(INCOMING_ORDER):
            started_at = _now()
            try:
                result = await self.sync_entity(
                    SyncEntityInput(entity=entity, page_size=page_size, run_id=run_id)
                )
            except Exception as exc:  # noqa: BLE001 - recorded, reported, and decides the exit code
                error = classify(exc)
                result = EntitySyncResult(
                    entity=entity, error=error.message[:_MAX_ERROR_TEXT], error_type=error.type
                )
                summary.entities[entity] = result
                await self._record_quietly(
                    RecordFailureInput(
                        run_id=run_id,
                        entity=entity,
                        started_at=started_at,
                        error=result.error or type(exc).__name__,
                    )
                )
                if ends_cycle(error.type, non_retryable=error.non_retryable):
                    summary.skipped = list(INCOMING_ORDER[index + 1 :])
                    break
                continue
            summary.entities[entity] = result
        if summary.conflict_picture_complete():
            summary.conflicts_checked = True
            summary.inventory_conflicts = len(
                (await self.check_inventory_conflicts(run_id, page_size=page_size)).conflicts
            )
        summary.finished_at = _now()
        return summary

    async def _record_quietly(self, failure: RecordFailureInput) -> None:
        try:
            await self.record_failure(failure)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("incoming.failure_not_recorded", entity=failure.entity, error=str(exc))


class IncomingActivities:
    """Temporal activities of the incoming sync; clients are injected by the worker."""

    def __init__(self, pool: asyncpg.Pool, mahak: MahakClient, settings: Settings) -> None:
        self.sync = IncomingSync.from_settings(pool, mahak, settings)

    @activity.defn(name="incoming.sync_entity")
    async def sync_entity(self, request: SyncEntityInput) -> EntitySyncResult:
        return await self._with_progress(self.sync.sync_entity, request)

    @activity.defn(name="incoming.sync_entities")
    async def sync_entities(self, request: SyncEntitiesInput) -> SyncEntitiesResult:
        # Progress is heartbeated for liveness only: a failed attempt is not retried (the
        # workflow falls back to one activity per entity, which resumes from the cursors).
        async with Heartbeat() as beat:
            return await self.sync.sync_entities(
                request, on_progress=lambda progress: beat.report(progress.model_copy(deep=True))
            )

    @activity.defn(name="incoming.reconcile_entity")
    async def reconcile_entity(self, request: SyncEntityInput) -> EntitySyncResult:
        return await self._with_progress(self.sync.reconcile_entity, request)

    async def _with_progress(
        self, read: Callable[..., Awaitable[EntitySyncResult]], request: SyncEntityInput
    ) -> EntitySyncResult:
        """Run an entity read that resumes from the progress a failed earlier attempt of this
        activity reported, and heartbeats its own."""
        resume = EntityProgress.from_details(activity.info().heartbeat_details)
        async with Heartbeat(*([resume] if resume else [])) as beat:
            try:
                return await read(
                    request,
                    resume=resume,
                    on_progress=lambda progress: beat.report(progress.model_copy(deep=True)),
                )
            except Exception as exc:  # noqa: BLE001 - every error goes through the one table
                # The progress made rides along, so the workflow keeps it whatever happens;
                # `from None`: the original's text must not reach history.
                raise classify(exc, details=beat.details) from None

    @activity.defn(name="incoming.record_failure")
    async def record_failure(self, failure: RecordFailureInput) -> None:
        await self.sync.record_failure(failure)

    @activity.defn(name="incoming.check_inventory_conflicts")
    async def check_inventory_conflicts(self, request: CheckConflictsInput) -> ConflictCheckResult:
        return await self.sync.check_inventory_conflicts(
            request.run_id, page_size=request.page_size
        )

    @activity.defn(name="incoming.detect_inventory_conflicts")
    async def detect_inventory_conflicts(
        self, request: DetectConflictsInput
    ) -> list[OrderStockConflict]:
        return await self.sync.detect_inventory_conflicts(
            request.run_id, page_size=request.page_size
        )

    @activity.defn(name="incoming.reset_cursor")
    async def reset_cursor(self, request: ResetCursorRequest) -> ResetCursorResult:
        return await self.sync.reset_cursor(request)

    def all(self) -> list[Any]:
        return [
            self.sync_entity,
            self.sync_entities,
            self.reconcile_entity,
            self.record_failure,
            self.check_inventory_conflicts,
            self.detect_inventory_conflicts,
            self.reset_cursor,
        ]
