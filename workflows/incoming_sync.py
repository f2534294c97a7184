"""`IncomingSyncWorkflow`: Mahak -> shop, one cycle every interval, forever.

One long-lived workflow (id `mahak-incoming-sync`) replaces the cron loop. A cycle syncs the
entities in dependency order, one activity per entity that fetches and applies page after
page (rows never enter history; only counts and cursors come back). Between cycles it sleeps
on a timer that `sync_now` cuts short, then continues as new so its history stays small.

Failure policy, by the error table's types (`mahak_sync.errors`, `incoming_types.ends_cycle`):
an error that concerns the entity alone (Mahak refused the request, a body that kept coming
back malformed, invalid data) is recorded and the cycle goes on with the other entities; an
entity that keeps failing otherwise until its time budget runs out (Mahak or the database
down, bad credentials) means every later entity would fail too, so the rest of the cycle is
skipped and the next cycle resumes from the stored cursors. The workflow itself never fails
because a dependency is down.

Inventory conflicts are checked once per cycle, after `orders` and `order_details`, and only
when stock, orders and order details all synced to the end without error in that cycle; the
check re-reads them from Mahak before reporting (`incoming.check_inventory_conflicts`). Runs
recorded before that change (no `PATCH_CONFLICTS_AFTER_ORDERS` marker) replay the old check
right after the stock.

Reconciliation (shared/mahak-api.md §10 (a)): a cycle that starts `reconcile_every_seconds`
or more after the last reconciliation (`last_reconciled_at`, carried through continue-as-new;
the clock starts when a run first finds none), or after the `reconcile_now` signal, reads
every entity from RowVersion 0 (`IncomingActivities.reconcile_entity`) instead of from its cursor; its sync-log
rows carry a `reconcile-` run id. A reconciliation cut short by an outage or a pause stays
due. Guarded by `PATCH_RECONCILE` so runs recorded before it replay.
"""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RawValue, RetryPolicy, SearchAttributeUpdate
from temporalio.exceptions import ActivityError, ApplicationError, FailureError, TimeoutError

with workflow.unsafe.imports_passed_through():
    from activities.incoming import IncomingActivities
    from mahak_client.models import INCOMING_ORDER, INCOMING_ORDER_BEFORE_STOREFRONT
    from mahak_sync import metrics
    from mahak_sync.search_attributes import SYNC_KIND, SYNC_PAUSED
    from workflows.incoming_types import (
        RECONCILE_RUN_PREFIX,
        STOCK_ENTITY,
        CheckConflictsInput,
        ConflictCheckResult,
        CycleSummary,
        DetectConflictsInput,
        EntityCounts,
        EntityProgress,
        EntitySyncResult,
        IncomingSyncState,
        OrderStockConflict,
        RecordFailureInput,
        ResetCursorRequest,
        ResetCursorResult,
        SyncEntitiesInput,
        SyncEntityInput,
        SyncStatus,
        Trigger,
        ends_cycle,
    )
    from workflows.order_types import (  # the order workflow's signal
        INCOMING_SYNC_WORKFLOW_ID,
        InventoryConflictNotice,
        order_workflow_id,
    )

WORKFLOW_ID = INCOMING_SYNC_WORKFLOW_ID
SYNC_KIND_VALUE = "incoming"
INVENTORY_CONFLICT_SIGNAL = "inventory_conflict"

# `workflow.patched` id: runs recorded before it check inventory conflicts right after the
# stock entity (`IncomingActivities.detect_inventory_conflicts`), whatever became of it; runs with it check
# after the orders, on a complete picture, re-read from Mahak (`IncomingActivities.check_inventory_conflicts`).
PATCH_CONFLICTS_AFTER_ORDERS = "incoming-conflicts-after-orders"
# `workflow.patched` id of the reconciliation cycles (`IncomingActivities.reconcile_entity`); asked only when a
# reconciliation is due, so runs recorded before it replay as plain cycles.
PATCH_RECONCILE = "incoming-reconcile"
# `workflow.patched` id of the quick path (`IncomingActivities.sync_entities`: the entities of a
# cycle, and its conflict check, in one activity while they are quick); runs recorded before
# it give every entity an activity of its own.
PATCH_QUICK_ENTITIES = "incoming-quick-entities"
# `workflow.patched` id of the storefront entities (issue 18: attributes, price-level names,
# settings, units, person groups and addresses, promotions): runs recorded before it sync
# `INCOMING_ORDER_BEFORE_STOREFRONT`, runs with it `INCOMING_ORDER`.
PATCH_STOREFRONT_ENTITIES = "storefront-entities"

# Bookkeeping activities (sync-log rows, conflict detection, cursor resets) are small DB
# calls: short attempts, and a budget after which the cycle moves on without them.
_SMALL_START_TO_CLOSE = timedelta(seconds=30)
_SMALL_SCHEDULE_TO_CLOSE = timedelta(minutes=2)


@workflow.defn(name="IncomingSyncWorkflow")
class IncomingSyncWorkflow:
    @workflow.init
    def __init__(self, state: IncomingSyncState) -> None:
        self._state = state
        # A `run_cycle` update and the timer-driven loop must never sync at the same time,
        # nor a cursor reset race a cycle that is advancing that cursor.
        self._lock = asyncio.Lock()
        self._current_entity: str | None = None
        self._running = False
        self._last_refused: str | None = None  # the last signal that did not apply
        self._cycles_this_run = 0
        self._wake = False  # set by anything that changes when the next cycle is due

    # --- main loop -------------------------------------------------------------------------

    @workflow.run
    async def run(self, state: IncomingSyncState) -> None:
        self._publish_search_attributes()
        if self._state.last_reconciled_at is None:
            # No reconciliation yet: the first one comes `reconcile_every_seconds` from now.
            self._state.last_reconciled_at = workflow.now()
        while await self._wait_until_due():
            async with self._lock:
                trigger = self._due_trigger()  # a manual cycle may have run while we queued
                if trigger is not None:
                    await self._run_cycle(trigger)
        # Let a running update (run_cycle, reset_cursor) finish before handing state over.
        await workflow.wait_condition(workflow.all_handlers_finished)
        workflow.continue_as_new(self._state)

    def _should_continue_as_new(self) -> bool:
        config, info = self._state.config, workflow.info()
        return (
            (config.cycles_per_run is not None and self._cycles_this_run >= config.cycles_per_run)
            or info.get_current_history_length() >= config.history_events_per_run
            or info.is_continue_as_new_suggested()
        )

    def _due_trigger(self) -> Trigger | None:
        state = self._state
        if state.paused:
            return None
        if state.sync_now_pending:
            return "sync_now"
        if state.next_run_at is None or state.next_run_at <= workflow.now():
            return "timer"
        return None

    async def _wait_until_due(self) -> bool:
        """Sleep until a cycle is due; False when this run should continue as new instead."""
        while not self._should_continue_as_new():
            if self._due_trigger() is not None:
                return True
            self._wake = False
            timeout = None
            if not self._state.paused and self._state.next_run_at is not None:
                timeout = self._state.next_run_at - workflow.now()
            try:
                await workflow.wait_condition(
                    lambda: self._wake or self._should_continue_as_new(),
                    timeout=timeout,
                    timeout_summary="next incoming sync cycle",
                )
            except builtins.TimeoutError:
                pass
        return False

    # --- one cycle -------------------------------------------------------------------------

    def _reconcile_due(self) -> bool:
        state = self._state
        if state.reconcile_pending:
            return True
        every = state.config.reconcile_every_seconds
        return (
            every > 0
            and state.last_reconciled_at is not None
            and workflow.now() - state.last_reconciled_at >= timedelta(seconds=every)
        )

    async def _run_cycle(self, trigger: Trigger) -> CycleSummary:
        state = self._state
        state.sync_now_pending = False
        # Asked only when due, so cycles of runs recorded before it replay unchanged.
        reconcile = self._reconcile_due() and workflow.patched(PATCH_RECONCILE)
        entities = (
            INCOMING_ORDER
            if workflow.patched(PATCH_STOREFRONT_ENTITIES)
            else INCOMING_ORDER_BEFORE_STOREFRONT
        )
        run_id = str(workflow.uuid4())
        summary = CycleSummary(
            run_id=f"{RECONCILE_RUN_PREFIX}{run_id}" if reconcile else run_id,
            trigger=trigger,
            started_at=workflow.now(),
            reconcile=reconcile,
        )
        workflow.logger.info(
            "incoming sync cycle %s started (%s%s)",
            summary.run_id,
            trigger,
            ", reconciliation" if reconcile else "",
        )
        self._running = True
        quick: dict[str, EntitySyncResult] = {}
        checked: ConflictCheckResult | None = None
        try:
            if not reconcile and workflow.patched(PATCH_QUICK_ENTITIES):
                quick, checked = await self._sync_quick_entities(summary.run_id, entities)
            for index, entity in enumerate(entities):
                if entity in quick:
                    result, outage = quick[entity], False
                elif state.paused:
                    summary.skipped = list(entities[index:])
                    break
                else:
                    self._current_entity = entity
                    result, outage = await self._sync_entity(
                        entity, summary.run_id, reconcile=reconcile
                    )
                summary.entities[entity] = result
                if result.cursor is not None:
                    state.cursors[entity] = result.cursor
                if result.error is not None:
                    state.last_error = f"{entity}: {result.error}"
                    state.last_error_at = workflow.now()
                if outage:
                    summary.skipped = list(entities[index + 1 :])
                    break
                if entity == STOCK_ENTITY and not workflow.patched(PATCH_CONFLICTS_AFTER_ORDERS):
                    # A run recorded before the check moved after the orders: replay it here.
                    summary.conflicts_checked = True
                    summary.inventory_conflicts = await self._signal_inventory_conflicts(
                        summary.run_id
                    )
            # Only on a complete picture of this cycle: stock, and the Mahak orders that its
            # counts already include, all synced to the end. Nothing is judged while paused.
            if (
                not state.paused
                and summary.conflict_picture_complete()
                and workflow.patched(PATCH_CONFLICTS_AFTER_ORDERS)
            ):
                self._current_entity = None
                summary.conflicts_checked = True
                if checked is not None:
                    summary.inventory_conflicts = await self._conflicts_checked(checked)
                else:
                    summary.inventory_conflicts = await self._check_inventory_conflicts(
                        summary.run_id
                    )
        finally:
            self._current_entity = None
            self._running = False
        summary.finished_at = workflow.now()
        metrics.observe_seconds(
            "mahak_sync_incoming_cycle_seconds",
            (summary.finished_at - summary.started_at).total_seconds(),
            kind="reconcile" if reconcile else "delta",
        )
        if reconcile and not summary.skipped:
            # Cut short (outage, pause): it stays due and runs again next cycle.
            state.reconcile_pending = False
            state.last_reconciled_at = summary.finished_at
        state.cycles_done += 1
        state.last_summary = summary
        state.next_run_at = summary.finished_at + timedelta(seconds=state.config.interval_seconds)
        self._cycles_this_run += 1
        self._wake = True
        workflow.logger.info(
            "incoming sync cycle %s finished: ok=%s skipped=%s",
            summary.run_id,
            summary.ok,
            summary.skipped,
        )
        return summary

    async def _sync_entity(
        self, entity: str, run_id: str, *, reconcile: bool = False
    ) -> tuple[EntitySyncResult, bool]:
        """Returns the entity's result and whether the failure looks like an outage."""
        config = self._state.config
        started_at = workflow.now()
        try:
            result = await workflow.execute_activity_method(
                IncomingActivities.reconcile_entity
                if reconcile
                else IncomingActivities.sync_entity,
                SyncEntityInput(entity=entity, page_size=config.page_size, run_id=run_id),
                schedule_to_close_timeout=timedelta(seconds=config.entity_timeout_seconds),
                start_to_close_timeout=timedelta(seconds=config.attempt_timeout_seconds),
                heartbeat_timeout=timedelta(seconds=config.heartbeat_timeout_seconds),
                retry_policy=RetryPolicy(
                    initial_interval=timedelta(seconds=config.retry_initial_seconds),
                    backoff_coefficient=2.0,
                    maximum_interval=timedelta(seconds=config.retry_max_seconds),
                ),
                summary=f"{'reconcile' if reconcile else 'sync'} {entity}",
            )
            return result, False
        except ActivityError as err:
            cause = err.cause
            # The error itself, or the last one behind retries that ran out of time.
            last = _last_application_error(cause)
            progress = _progress_from(cause)
            counts = progress.counts if progress else EntityCounts()
            result = EntitySyncResult(
                entity=entity,
                counts=counts,
                cursor=progress.cursor if progress else None,
                pages=progress.pages if progress else 0,
                error=_describe(cause),
                error_type=last.type if last is not None else "Timeout",
            )
            workflow.logger.warning("incoming sync of %s failed: %s", entity, result.error)
            await self._record_failure(
                RecordFailureInput(
                    run_id=run_id,
                    entity=entity,
                    started_at=started_at,
                    error=result.error or "failed",
                    counts=counts,
                )
            )
            outage = ends_cycle(
                last.type if last is not None else None,
                non_retryable=last is not None and last.non_retryable,
            )
            return result, outage

    async def _sync_quick_entities(
        self, run_id: str, entities: Sequence[str]
    ) -> tuple[dict[str, EntitySyncResult], ConflictCheckResult | None]:
        """The entities, in order, in one activity while they are quick (a cycle with little
        to do costs one activity instead of one per entity, ~11 round trips through the
        server); what it did not finish goes through `_sync_entity`, one activity each, with
        the usual retries and failure policy. Not retried itself: a failure only means the
        slow path runs for every entity (the cursors are stored, so nothing is lost)."""
        config = self._state.config
        self._current_entity = entities[0]
        try:
            batch = await workflow.execute_activity_method(
                IncomingActivities.sync_entities,
                SyncEntitiesInput(
                    entities=list(entities), page_size=config.page_size, run_id=run_id
                ),
                start_to_close_timeout=timedelta(seconds=config.attempt_timeout_seconds),
                heartbeat_timeout=timedelta(seconds=config.heartbeat_timeout_seconds),
                retry_policy=RetryPolicy(maximum_attempts=1),
                summary="sync entities",
            )
        except ActivityError as err:
            workflow.logger.info("quick sync of the entities failed: %s", _describe(err.cause))
            return {}, None
        finally:
            self._current_entity = None
        return {r.entity: r for r in batch.results}, batch.conflicts

    async def _record_failure(self, failure: RecordFailureInput) -> None:
        try:
            await workflow.execute_activity_method(
                IncomingActivities.record_failure,
                failure,
                summary=f"record {failure.entity} failure",
                start_to_close_timeout=_SMALL_START_TO_CLOSE,
                schedule_to_close_timeout=_SMALL_SCHEDULE_TO_CLOSE,
            )
        except ActivityError as err:
            # The database is down too; the workflow's own state still shows the error.
            workflow.logger.warning("could not record sync failure: %s", _describe(err.cause))

    async def _check_inventory_conflicts(self, run_id: str) -> int:
        """Check on this cycle's complete picture, re-read from Mahak, and signal the orders
        still short. If the check cannot finish (Mahak or the database down), nothing is
        signalled: no order is cancelled on a picture that could not be confirmed."""
        config = self._state.config
        try:
            result = await workflow.execute_activity_method(
                IncomingActivities.check_inventory_conflicts,
                CheckConflictsInput(run_id=run_id, page_size=config.page_size),
                # It may read from Mahak: the budget and retries of an entity's sync.
                schedule_to_close_timeout=timedelta(seconds=config.entity_timeout_seconds),
                start_to_close_timeout=timedelta(seconds=config.attempt_timeout_seconds),
                retry_policy=RetryPolicy(
                    initial_interval=timedelta(seconds=config.retry_initial_seconds),
                    backoff_coefficient=2.0,
                    maximum_interval=timedelta(seconds=config.retry_max_seconds),
                ),
                summary="check inventory conflicts",
            )
        except ActivityError as err:
            workflow.logger.warning("inventory conflict check failed: %s", _describe(err.cause))
            return 0
        return await self._conflicts_checked(result)

    async def _conflicts_checked(self, result: ConflictCheckResult) -> int:
        self._state.cursors.update(result.cursors)  # the re-read moved them
        return await self._signal_conflicts(result.conflicts)

    async def _signal_inventory_conflicts(self, run_id: str) -> int:
        """The check of runs recorded before `PATCH_CONFLICTS_AFTER_ORDERS`, kept as it was
        so they replay: right after the stock entity."""
        try:
            conflicts = await workflow.execute_activity_method(
                IncomingActivities.detect_inventory_conflicts,
                DetectConflictsInput(run_id=run_id),
                summary="detect inventory conflicts",
                start_to_close_timeout=_SMALL_START_TO_CLOSE,
                schedule_to_close_timeout=_SMALL_SCHEDULE_TO_CLOSE,
            )
        except ActivityError as err:
            workflow.logger.warning("inventory conflict check failed: %s", _describe(err.cause))
            return 0
        return await self._signal_conflicts(conflicts)

    async def _signal_conflicts(self, conflicts: list[OrderStockConflict]) -> int:
        """Tell each order workflow whose paid order Mahak's stock no longer covers.

        A conflict is signalled once; it is signalled again only if its shortage changes.
        """
        signalled: dict[str, str] = {}
        for conflict in conflicts:
            key, fingerprint = str(conflict.order_id), conflict.fingerprint()
            if self._state.signalled_conflicts.get(key) != fingerprint:
                worst = conflict.worst()
                notice = InventoryConflictNotice(
                    product_detail_id=worst.product_detail_id,
                    store_id=worst.store_id,
                    needed=worst.held,
                    available=worst.available,
                    reason=conflict.describe(),
                )
                handle = workflow.get_external_workflow_handle(order_workflow_id(conflict.order_id))
                try:
                    await handle.signal(INVENTORY_CONFLICT_SIGNAL, notice)
                except FailureError as err:
                    # No order workflow (yet): the conflict is in the sync log and is
                    # signalled again next cycle.
                    workflow.logger.info("order %s not signalled: %s", key, err)
                    continue
            signalled[key] = fingerprint
        # Conflicts that are gone are forgotten, so this map stays as small as the shortage.
        self._state.signalled_conflicts = signalled
        return len(conflicts)

    # --- operator surface --------------------------------------------------------------------

    @workflow.signal
    def sync_now(self) -> None:
        if self._state.paused:
            workflow.logger.info("sync_now ignored: incoming sync is paused")
            return
        self._state.sync_now_pending = True
        self._wake = True

    @workflow.signal
    def reconcile_now(self) -> None:
        """Run a reconciliation (every entity read from RowVersion 0) as the next cycle, now."""
        if self._state.paused:
            workflow.logger.info("reconcile_now ignored: incoming sync is paused")
            return
        self._state.reconcile_pending = True
        self._state.sync_now_pending = True
        self._wake = True

    @workflow.signal
    def pause(self) -> None:
        self._state.paused = True
        self._state.sync_now_pending = False
        self._publish_search_attributes()
        self._wake = True

    @workflow.signal
    def resume(self) -> None:
        self._state.paused = False
        self._publish_search_attributes()
        self._wake = True

    @workflow.query
    def status(self) -> SyncStatus:
        state = self._state
        return SyncStatus(
            paused=state.paused,
            running=self._running,
            current_entity=self._current_entity,
            cycles_done=state.cycles_done,
            next_run_at=None if state.paused else state.next_run_at,
            cursors=dict(state.cursors),
            last_cycle=state.last_summary,
            last_error=state.last_error,
            last_error_at=state.last_error_at,
            config=state.config,
            last_refused=self._last_refused,
        )

    @workflow.update
    async def run_cycle(self) -> CycleSummary:
        async with self._lock:
            if self._state.paused:  # paused while this update waited for the lock
                raise ApplicationError("incoming sync is paused", type="SyncPaused")
            return await self._run_cycle("manual")

    @run_cycle.validator
    def _validate_run_cycle(self) -> None:
        # Refusals are not retryable: the same request would be refused again.
        if self._state.paused:
            raise ApplicationError(
                "incoming sync is paused; send `resume` first",
                type="SyncPaused",
                non_retryable=True,
            )

    @workflow.update
    async def reset_cursor(self, request: ResetCursorRequest) -> ResetCursorResult:
        async with self._lock:
            result = await workflow.execute_activity_method(
                IncomingActivities.reset_cursor,
                request,
                summary=f"reset cursor {request.entity} to {request.row_version}",
                start_to_close_timeout=_SMALL_START_TO_CLOSE,
                schedule_to_close_timeout=_SMALL_SCHEDULE_TO_CLOSE,
            )
        self._state.cursors.update(result.cursors)
        return result

    @reset_cursor.validator
    def _validate_reset_cursor(self, request: ResetCursorRequest) -> None:
        try:
            request.validate_request()
        except ValueError as exc:
            raise ApplicationError(str(exc), type="InvalidRequest", non_retryable=True) from None

    @workflow.signal(dynamic=True)
    def unknown_signal(self, name: str, args: Sequence[RawValue]) -> None:
        # A signal cannot be refused: one without a handler is kept in `status` and logged.
        self._last_refused = (
            f"signal {name!r} is not one this workflow handles "
            "(sync_now, reconcile_now, pause, resume)"
        )
        workflow.logger.warning("refused: %s", self._last_refused)

    # --- helpers -----------------------------------------------------------------------------

    def _publish_search_attributes(self) -> None:
        """Keep the Web UI's filters true; only changed values cost a history event."""
        if not self._state.config.publish_search_attributes:
            return
        current = workflow.info().typed_search_attributes
        updates: list[SearchAttributeUpdate[Any]] = []
        if current.get(SYNC_KIND) != SYNC_KIND_VALUE:
            updates.append(SYNC_KIND.value_set(SYNC_KIND_VALUE))
        if current.get(SYNC_PAUSED) != self._state.paused:
            updates.append(SYNC_PAUSED.value_set(self._state.paused))
        if updates:
            workflow.upsert_search_attributes(updates)


def _last_application_error(failure: BaseException | None) -> ApplicationError | None:
    """The activity's own error: the failure itself, or the last attempt's error behind a
    timeout (retries that ran out of budget)."""
    if isinstance(failure, TimeoutError):
        failure = failure.cause
    return failure if isinstance(failure, ApplicationError) else None


def _progress_from(failure: BaseException | None) -> EntityProgress | None:
    """Partial progress of a failed `sync_entity`: from a permanent error's details, or the
    last heartbeat of an attempt that timed out."""
    details: Any = ()
    if isinstance(failure, ApplicationError):
        details = failure.details
    elif isinstance(failure, TimeoutError):
        details = failure.last_heartbeat_details
    return EntityProgress.from_details(details)


def _describe(failure: BaseException | None) -> str:
    """`message` of the failure and its causes, e.g. the last Mahak error behind a timeout."""
    parts: list[str] = []
    while failure is not None and len(parts) < 3:
        text = failure.message if isinstance(failure, FailureError) else str(failure)
        if isinstance(failure, TimeoutError):
            text = f"gave up ({text or 'timeout'})"
        if text and text not in parts:
            parts.append(text)
        failure = failure.__cause__ or getattr(failure, "cause", None)
    return ": ".join(parts) or "unknown error"
