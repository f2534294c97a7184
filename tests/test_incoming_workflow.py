"""IncomingSyncWorkflow's logic, with stand-in activities under the real activity names, on
the time-skipping test server (timers) or the shared dev server (search attributes)."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from temporalio import activity, workflow
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from mahak_client.errors import MahakTransientError
from mahak_client.models import INCOMING_ORDER
from mahak_sync.errors import ErrorType
from mahak_sync.runtime import INTERCEPTORS
from mahak_sync.temporal import SYNC_KIND, SYNC_PAUSED
from workflows.incoming_sync import WORKFLOW_ID, IncomingSyncWorkflow
from workflows.incoming_types import (
    CONFLICT_PICTURE,
    STOCK_ENTITY,
    CheckConflictsInput,
    ConflictCheckResult,
    DetectConflictsInput,
    EntityCounts,
    EntityProgress,
    EntitySyncResult,
    IncomingSyncState,
    OrderStockConflict,
    RecordFailureInput,
    ResetCursorRequest,
    ResetCursorResult,
    StockShortage,
    SyncConfig,
    SyncEntityInput,
    SyncStatus,
)
from workflows.order_types import InventoryConflictNotice

# The activity names the incoming workflow schedules: a contract with every recorded history
# (tests/test_replay.py fails if the workflow schedules another); the stubs register under them.
SYNC_ENTITY = "incoming.sync_entity"
RECONCILE_ENTITY = "incoming.reconcile_entity"
RECORD_FAILURE = "incoming.record_failure"
CHECK_INVENTORY_CONFLICTS = "incoming.check_inventory_conflicts"
DETECT_INVENTORY_CONFLICTS = "incoming.detect_inventory_conflicts"
RESET_CURSOR = "incoming.reset_cursor"

INTERVAL = 300.0


class StubIncoming:
    """Records what the workflow asked for; behaviour per entity is set by each test."""

    def __init__(self) -> None:
        self.calls: list[SyncEntityInput] = []
        self.failures: list[RecordFailureInput] = []
        self.resets: list[ResetCursorRequest] = []
        self.cursors: dict[str, int] = defaultdict(int)
        self.behaviour: dict[str, Callable[[SyncEntityInput], EntitySyncResult]] = {}
        self.conflicts: list[OrderStockConflict] = []
        self.conflict_checks: list[str] = []
        self.check_cursors: dict[str, int] = {}  # what the check's re-read moved
        self.events: list[str] = []  # entity names and "check", in the order they ran

    @activity.defn(name=SYNC_ENTITY)
    async def sync_entity(self, request: SyncEntityInput) -> EntitySyncResult:
        self.calls.append(request)
        self.events.append(request.entity)
        if request.entity in self.behaviour:
            return self.behaviour[request.entity](request)
        self.cursors[request.entity] += 10
        return EntitySyncResult(
            entity=request.entity,
            counts=EntityCounts(fetched=1, inserted=1),
            cursor=self.cursors[request.entity],
            pages=1,
        )

    @activity.defn(name=RECORD_FAILURE)
    async def record_failure(self, failure: RecordFailureInput) -> None:
        self.failures.append(failure)

    @activity.defn(name=DETECT_INVENTORY_CONFLICTS)
    async def detect_inventory_conflicts(
        self, request: DetectConflictsInput
    ) -> list[OrderStockConflict]:
        self.conflict_checks.append(request.run_id)
        self.events.append("check")
        return self.conflicts

    @activity.defn(name=CHECK_INVENTORY_CONFLICTS)
    async def check_inventory_conflicts(self, request: CheckConflictsInput) -> ConflictCheckResult:
        self.conflict_checks.append(request.run_id)
        self.events.append("check")
        return ConflictCheckResult(
            conflicts=self.conflicts, reread=bool(self.conflicts), cursors=self.check_cursors
        )

    @activity.defn(name=RESET_CURSOR)
    async def reset_cursor(self, request: ResetCursorRequest) -> ResetCursorResult:
        self.resets.append(request)
        for name in request.entities():
            self.cursors[name] = request.row_version
        return ResetCursorResult(cursors={n: request.row_version for n in request.entities()})

    def activities(self) -> list[Any]:
        return [
            self.sync_entity,
            self.record_failure,
            self.detect_inventory_conflicts,
            self.check_inventory_conflicts,
            self.reset_cursor,
        ]

    def cycles_seen(self) -> int:
        return len({c.run_id for c in self.calls})


@workflow.defn(name="OrderSyncWorkflow", sandboxed=False)
class FakeOrderWorkflow:
    """Stands in for the order workflow: collects `inventory_conflict` signals."""

    def __init__(self) -> None:
        self.notices: list[InventoryConflictNotice] = []

    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: False)

    @workflow.signal
    def inventory_conflict(self, notice: InventoryConflictNotice) -> None:
        self.notices.append(notice)

    @workflow.query
    def received(self) -> list[InventoryConflictNotice]:
        return self.notices


def config(**overrides: Any) -> SyncConfig:
    values: dict[str, Any] = {
        "interval_seconds": INTERVAL,
        "entity_timeout_seconds": 60,
        "attempt_timeout_seconds": 20,
        "retry_initial_seconds": 1,
        "retry_max_seconds": 5,
        "publish_search_attributes": False,  # the time-skipping server has none registered
        # One cycle per run (`cycles_done` waits for the new run), as before history-size runs.
        "cycles_per_run": 1,
    }
    values.update(overrides)
    return SyncConfig(**values)


@asynccontextmanager
async def running_sync(
    client: Client,
    stub: StubIncoming,
    *,
    state: IncomingSyncState | None = None,
    extra_workflows: tuple[type, ...] = (),
) -> AsyncIterator[WorkflowHandle[Any, Any]]:
    task_queue = f"incoming-{uuid.uuid4().hex[:8]}"
    workflow_id = f"{WORKFLOW_ID}-{uuid.uuid4().hex[:8]}"
    async with Worker(
        client,
        task_queue=task_queue,
        activities=stub.activities(),
        workflows=[IncomingSyncWorkflow, *extra_workflows],
        interceptors=INTERCEPTORS,
    ):
        handle = await client.start_workflow(
            IncomingSyncWorkflow.run,
            state or IncomingSyncState(config=config()),
            id=workflow_id,
            task_queue=task_queue,
        )
        try:
            yield client.get_workflow_handle(workflow_id)  # follows continue-as-new
        finally:
            await handle.terminate("test over")


async def status(handle: WorkflowHandle[Any, Any]) -> SyncStatus:
    return await handle.query(IncomingSyncWorkflow.status)


async def until(check: Callable[[], Any], timeout: float = 20.0) -> None:
    """Polls a (sync or async) predicate in real time; workflows advance on their own."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


async def cycles_done(handle: WorkflowHandle[Any, Any], n: int) -> None:
    """Waits until cycle `n` is over and its run has continued as new.

    Every test here runs one cycle per run, so that is when the current run was started
    with `cycles_done >= n`. Waiting for the new run (not just the count) keeps a signal
    sent next from racing the continue-as-new, which the time-skipping server can drop.
    """

    async def check() -> bool:
        history = await handle.fetch_history()  # the current run
        started = history.events[0].workflow_execution_started_event_attributes
        [state] = await pydantic_data_converter.decode(started.input.payloads, [IncomingSyncState])
        return state.cycles_done >= n

    await until(check)


# --- timer, sync_now, continue-as-new ----------------------------------------------------------


async def test_cycles_follow_the_interval_and_sync_now_wakes_early(
    skipping_env: WorkflowEnvironment,
) -> None:
    stub = StubIncoming()
    async with running_sync(skipping_env.client, stub) as handle:
        await cycles_done(handle, 1)
        first = await status(handle)
        assert [c.entity for c in stub.calls] == list(INCOMING_ORDER)
        assert first.last_cycle is not None and first.last_cycle.ok
        assert first.last_cycle.trigger == "timer"
        assert first.next_run_at == first.last_cycle.finished_at + timedelta(seconds=INTERVAL)

        await skipping_env.sleep(INTERVAL * 0.8)
        assert (await status(handle)).cycles_done == 1, "ran before the interval was over"
        await skipping_env.sleep(INTERVAL * 0.3)
        await cycles_done(handle, 2)

        await handle.signal(IncomingSyncWorkflow.sync_now)
        await cycles_done(handle, 3)
        third = await status(handle)
        assert third.last_cycle is not None and third.last_cycle.trigger == "sync_now"
        # Cursors returned by the activity are carried from run to run.
        assert third.cursors == {entity: 30 for entity in INCOMING_ORDER}


async def test_continue_as_new_keeps_each_run_small(skipping_env: WorkflowEnvironment) -> None:
    # Runs started with `cycles_per_run` (all before it became optional) keep that rule.
    stub = StubIncoming()
    cycles = 8
    async with running_sync(skipping_env.client, stub) as handle:
        for n in range(1, cycles + 1):
            await cycles_done(handle, n)
            if n < cycles:
                await skipping_env.sleep(INTERVAL + 1)
        final = await status(handle)
        run_lengths = await _history_lengths_of_finished_runs(skipping_env.client, handle)

    assert final.cycles_done == cycles
    assert stub.cycles_seen() == cycles
    assert final.cursors == {entity: 10 * cycles for entity in INCOMING_ORDER}
    # One cycle per run: every run's history holds one cycle's events (per entity 3
    # activity events and a workflow task's 3, a conflict check), the 8th as small as the 1st.
    # (Written for 10 entities as `< 100`; issue 18 made them 21.)
    assert len(run_lengths) == cycles
    assert max(run_lengths) < 7 * len(INCOMING_ORDER) + 30, run_lengths
    assert max(run_lengths) - min(run_lengths) <= 10, run_lengths


async def test_by_default_a_run_continues_as_new_by_history_size_not_per_cycle(
    skipping_env: WorkflowEnvironment,
) -> None:
    # Issue 15: one run per cycle crowded the Web UI's list; a run now lasts until its
    # history reaches `history_events_per_run` events (or Temporal suggests a new run).
    stub = StubIncoming()
    cycles = 8
    # A limit of about two cycles' events (written for 10 entities as 150; issue 18 made them 21).
    limit = 15 * len(INCOMING_ORDER)
    state = IncomingSyncState(config=config(cycles_per_run=None, history_events_per_run=limit))
    async with running_sync(skipping_env.client, stub, state=state) as handle:
        for n in range(1, cycles + 1):
            await until(lambda n=n: _cycles_at_least(handle, n))
            if n < cycles:
                await skipping_env.sleep(INTERVAL + 1)
        final = await status(handle)
        run_lengths = await _history_lengths_of_finished_runs(skipping_env.client, handle)

    assert final.cycles_done == cycles and stub.cycles_seen() == cycles
    assert final.cursors == {entity: 10 * cycles for entity in INCOMING_ORDER}
    # 4-7 events per entity a cycle: a few cycles per run, each ended within a cycle past
    # the limit.
    assert 1 <= len(run_lengths) < cycles - 2, run_lengths
    assert all(limit <= n < limit + 8 * len(INCOMING_ORDER) for n in run_lengths), run_lengths


async def _cycles_at_least(handle: WorkflowHandle[Any, Any], n: int) -> bool:
    try:
        return (await status(handle)).cycles_done >= n
    except RPCError:  # queried while the run hands over to the next one
        return False


async def _history_lengths_of_finished_runs(
    client: Client, handle: WorkflowHandle[Any, Any]
) -> list[int]:
    """Event counts of the runs before the current one, oldest first."""
    lengths: list[int] = []
    history = await handle.fetch_history()
    while previous := history.events[
        0
    ].workflow_execution_started_event_attributes.continued_execution_run_id:
        history = await client.get_workflow_handle(handle.id, run_id=previous).fetch_history()
        lengths.insert(0, len(history.events))
    return lengths


# --- pause / resume / run_cycle ---------------------------------------------------------------


async def test_pause_stops_cycles_and_resume_restarts_them(
    skipping_env: WorkflowEnvironment,
) -> None:
    stub = StubIncoming()
    async with running_sync(skipping_env.client, stub) as handle:
        await cycles_done(handle, 1)
        await handle.signal(IncomingSyncWorkflow.pause)
        await until(lambda: _paused(handle))
        paused = await status(handle)
        assert paused.next_run_at is None

        await skipping_env.sleep(INTERVAL * 3)
        await handle.signal(IncomingSyncWorkflow.sync_now)  # ignored while paused
        with pytest.raises(WorkflowUpdateFailedError) as rejected:
            await handle.execute_update(IncomingSyncWorkflow.run_cycle)
        assert "paused" in str(rejected.value.cause)
        assert (await status(handle)).cycles_done == 1
        assert stub.cycles_seen() == 1

        await handle.signal(IncomingSyncWorkflow.resume)
        await cycles_done(handle, 2)  # overdue, so it runs at once
        resumed = await status(handle)
        assert not resumed.paused and resumed.next_run_at is not None


async def _paused(handle: WorkflowHandle[Any, Any]) -> bool:
    return (await status(handle)).paused


async def test_run_cycle_update_returns_its_summary(skipping_env: WorkflowEnvironment) -> None:
    stub = StubIncoming()
    async with running_sync(skipping_env.client, stub) as handle:
        await cycles_done(handle, 1)
        summary = await handle.execute_update(IncomingSyncWorkflow.run_cycle)
        assert summary.trigger == "manual"
        assert list(summary.entities) == list(INCOMING_ORDER)
        assert summary.totals().inserted == len(INCOMING_ORDER)
        assert stub.cycles_seen() == 2
        # The manual cycle restarts the interval instead of adding an extra timer cycle.
        after = await status(handle)
        assert summary.finished_at is not None
        assert after.next_run_at == summary.finished_at + timedelta(seconds=INTERVAL)


# --- reset_cursor ------------------------------------------------------------------------------


async def test_reset_cursor_validates_and_resets(skipping_env: WorkflowEnvironment) -> None:
    stub = StubIncoming()
    async with running_sync(skipping_env.client, stub) as handle:
        await cycles_done(handle, 1)
        for bad in (
            ResetCursorRequest(entity="customers", row_version=0),
            ResetCursorRequest(entity="products", row_version=-1),
        ):
            with pytest.raises(WorkflowUpdateFailedError):
                await handle.execute_update(IncomingSyncWorkflow.reset_cursor, bad)
        assert stub.resets == [], "a rejected update must not reach the database"

        one = await handle.execute_update(
            IncomingSyncWorkflow.reset_cursor, ResetCursorRequest(entity="products", row_version=3)
        )
        assert one.cursors == {"products": 3}
        everything = await handle.execute_update(
            IncomingSyncWorkflow.reset_cursor, ResetCursorRequest(entity="*", row_version=0)
        )
        assert everything.cursors == {entity: 0 for entity in INCOMING_ORDER}
        assert (await status(handle)).cursors == {entity: 0 for entity in INCOMING_ORDER}
        assert [r.entity for r in stub.resets] == ["products", "*"]


# --- failures -------------------------------------------------------------------------------


def _permanent(request: SyncEntityInput) -> EntitySyncResult:
    progress = EntityProgress(
        entity=request.entity,
        started_at=datetime.now(UTC),
        pages=2,
        cursor=77,
        counts=EntityCounts(fetched=5, inserted=5),
    )
    raise ApplicationError(
        "GetAllData answered HTML", progress, type="MahakProtocolError", non_retryable=True
    )


async def test_permanent_error_in_one_entity_does_not_stop_the_others(
    skipping_env: WorkflowEnvironment,
) -> None:
    stub = StubIncoming()
    stub.behaviour["products"] = _permanent
    async with running_sync(skipping_env.client, stub) as handle:
        await cycles_done(handle, 1)
        now = await status(handle)

    assert [c.entity for c in stub.calls] == list(INCOMING_ORDER), "every entity was attempted"
    assert sum(c.entity == "products" for c in stub.calls) == 1, "permanent: not retried"
    cycle = now.last_cycle
    assert cycle is not None and not cycle.ok and cycle.skipped == []
    products = cycle.entities["products"]
    assert products.error_type == "MahakProtocolError"
    assert "HTML" in (products.error or "")
    assert products.counts.inserted == 5 and products.cursor == 77  # partial progress kept
    assert all(cycle.entities[e].ok for e in INCOMING_ORDER if e != "products")
    assert now.last_error is not None and now.last_error.startswith("products:")
    assert [(f.entity, f.counts.inserted) for f in stub.failures] == [("products", 5)]


async def test_outage_ends_the_cycle_and_the_next_cycle_retries(
    skipping_env: WorkflowEnvironment,
) -> None:
    stub = StubIncoming()
    down = True

    def flaky(request: SyncEntityInput) -> EntitySyncResult:
        if down:
            raise MahakTransientError("Mahak unreachable", endpoint="GetAllDataV2")
        return EntitySyncResult(entity=request.entity, cursor=99, pages=1)

    stub.behaviour["product_details"] = flaky
    async with running_sync(skipping_env.client, stub) as handle:
        await skipping_env.sleep(70)  # past the entity's 60 s budget of retries
        await cycles_done(handle, 1)
        first = await status(handle)
        attempts = sum(c.entity == "product_details" for c in stub.calls)

        down = False
        await skipping_env.sleep(INTERVAL)
        await cycles_done(handle, 2)
        second = await status(handle)

    cycle = first.last_cycle
    assert cycle is not None
    assert attempts > 2, "transient errors are retried"
    assert "Mahak unreachable" in (cycle.entities["product_details"].error or "")
    after = INCOMING_ORDER[INCOMING_ORDER.index("product_details") + 1 :]
    assert cycle.skipped == list(after), "an outage skips the rest of the cycle"
    assert [f.entity for f in stub.failures] == ["product_details"]
    assert second.last_cycle is not None and second.last_cycle.ok
    assert second.cursors["product_details"] == 99


async def test_a_bad_body_is_retried_then_fails_its_entity_only(
    skipping_env: WorkflowEnvironment,
) -> None:
    """A body that is not the documented envelope is retried with backoff (the error table);
    when it keeps coming back until the entity's budget is spent it concerns that entity
    alone, like a permanent error: the other entities still sync."""
    stub = StubIncoming()

    def malformed(request: SyncEntityInput) -> EntitySyncResult:
        raise ApplicationError("GetAllData answered HTML", type=ErrorType.MAHAK_BAD_RESPONSE)

    stub.behaviour["products"] = malformed
    async with running_sync(skipping_env.client, stub) as handle:
        await skipping_env.sleep(70)  # past the entity's 60 s budget of retries
        await cycles_done(handle, 1)
        now = await status(handle)

    assert sum(c.entity == "products" for c in stub.calls) > 2, "retried with backoff"
    cycle = now.last_cycle
    assert cycle is not None and not cycle.ok and cycle.skipped == []
    products = cycle.entities["products"]
    assert products.error_type == ErrorType.MAHAK_BAD_RESPONSE
    assert "HTML" in (products.error or "")
    assert all(cycle.entities[e].ok for e in INCOMING_ORDER if e != "products")
    assert [f.entity for f in stub.failures] == ["products"]


async def test_bad_credentials_are_retried_then_end_the_cycle(
    skipping_env: WorkflowEnvironment,
) -> None:
    """Bad credentials are retried with backoff (an operator fixes them, the work waits);
    every entity would meet them, so past the budget the rest of the cycle is skipped."""
    stub = StubIncoming()

    def refused(request: SyncEntityInput) -> EntitySyncResult:
        raise ApplicationError("Login refused", type=ErrorType.MAHAK_AUTH)

    stub.behaviour["stores"] = refused
    async with running_sync(skipping_env.client, stub) as handle:
        await skipping_env.sleep(70)
        await cycles_done(handle, 1)
        now = await status(handle)

    assert sum(c.entity == "stores" for c in stub.calls) > 2, "retried with backoff"
    cycle = now.last_cycle
    assert cycle is not None and cycle.skipped == list(INCOMING_ORDER[1:])
    assert cycle.entities["stores"].error_type == ErrorType.MAHAK_AUTH
    assert stub.conflict_checks == []


# --- inventory conflicts ------------------------------------------------------------------


async def test_conflicts_are_checked_after_the_orders_of_the_same_cycle(
    skipping_env: WorkflowEnvironment,
) -> None:
    """The check sees the stock together with the Mahak orders it already counts: it runs
    once per cycle, after `orders` and `order_details`, and the cursors its re-read moved
    are the workflow's too."""
    stub = StubIncoming()
    stub.check_cursors = {STOCK_ENTITY: 4242}
    async with running_sync(skipping_env.client, stub) as handle:
        await cycles_done(handle, 1)
        now = await status(handle)

    assert stub.events == [*INCOMING_ORDER, "check"]
    assert INCOMING_ORDER.index(STOCK_ENTITY) < INCOMING_ORDER.index("orders")
    assert now.cursors[STOCK_ENTITY] == 4242
    assert now.cursors["orders"] == 10


@pytest.mark.parametrize("failing", CONFLICT_PICTURE)
async def test_no_conflict_check_on_an_incomplete_picture(
    skipping_env: WorkflowEnvironment,
    failing: str,
) -> None:
    """A stock, orders or order_details sync that stopped part-way (here: a permanent error
    after two pages) leaves a picture no order may be cancelled on: no check this cycle."""
    stub = StubIncoming()
    stub.behaviour[failing] = _permanent
    short = StockShortage(product_detail_id=5, store_id=1, held=3, available=1)
    stub.conflicts = [OrderStockConflict(order_id=41, shortages=[short])]
    async with running_sync(skipping_env.client, stub) as handle:
        await cycles_done(handle, 1)
        now = await status(handle)

    assert [c.entity for c in stub.calls] == list(INCOMING_ORDER), "the others still synced"
    assert stub.conflict_checks == [], "checked on a partial picture"
    cycle = now.last_cycle
    assert cycle is not None and cycle.inventory_conflicts == 0
    assert cycle.entities[failing].cursor == 77


async def test_inventory_conflicts_signal_each_order_workflow_once(
    skipping_env: WorkflowEnvironment,
) -> None:
    client = skipping_env.client
    stub = StubIncoming()
    short = StockShortage(product_detail_id=5, store_id=1, held=3, available=1)
    stub.conflicts = [
        OrderStockConflict(order_id=41, shortages=[short]),
        OrderStockConflict(order_id=42, shortages=[short]),  # has no order workflow
    ]
    async with running_sync(client, stub, extra_workflows=(FakeOrderWorkflow,)) as handle:
        order = await client.start_workflow(
            FakeOrderWorkflow.run,
            id="order-sync-41",
            task_queue=(await handle.describe()).task_queue,
        )
        try:
            await cycles_done(handle, 1)
            await skipping_env.sleep(INTERVAL + 1)
            await cycles_done(handle, 2)
            assert len(stub.conflict_checks) == 2
            received = await order.query(FakeOrderWorkflow.received)
            assert len(received) == 1, "an unchanged conflict is signalled once"
            assert (await status(handle)).last_cycle.inventory_conflicts == 2  # type: ignore[union-attr]

            stub.conflicts = [
                OrderStockConflict(
                    order_id=41, shortages=[short.model_copy(update={"available": 0})]
                )
            ]
            await handle.signal(IncomingSyncWorkflow.sync_now)
            await cycles_done(handle, 3)
            received = await order.query(FakeOrderWorkflow.received)
            assert [(n.product_detail_id, n.store_id, n.needed, n.available) for n in received] == [
                (5, 1, 3, 1),
                (5, 1, 3, 0),
            ], "signalled again once the shortage changed"
            assert received[0].reason and "Mahak has 1" in received[0].reason
        finally:
            await order.terminate("test over")


# --- search attributes (need a real server's visibility) -------------------------------------


async def test_search_attributes_follow_pause(temporal_client: Client) -> None:
    stub = StubIncoming()
    async with running_sync(
        temporal_client,
        stub,
        state=IncomingSyncState(
            config=config(interval_seconds=3600, publish_search_attributes=True)
        ),
    ) as handle:
        await cycles_done(handle, 1)
        attrs = (await handle.describe()).typed_search_attributes
        assert attrs.get(SYNC_KIND) == "incoming" and attrs.get(SYNC_PAUSED) is False

        await handle.signal(IncomingSyncWorkflow.pause)
        await until(lambda: _paused(handle))
        attrs = (await handle.describe()).typed_search_attributes
        assert attrs.get(SYNC_PAUSED) is True


# --- reconciliation (issue 12) ------------------------------------------------------------------


class ReconcilingStub(StubIncoming):
    """Also stands in for `RECONCILE_ENTITY`: a full read that finds one missing row and
    leaves the cursor where it was."""

    def __init__(self) -> None:
        super().__init__()
        self.reconciles: list[SyncEntityInput] = []
        self.down_for_reconcile: set[str] = set()

    @activity.defn(name=RECONCILE_ENTITY)
    async def reconcile_entity(self, request: SyncEntityInput) -> EntitySyncResult:
        self.reconciles.append(request)
        self.events.append(f"reconcile {request.entity}")
        if request.entity in self.down_for_reconcile:
            raise MahakTransientError("Mahak unreachable", endpoint="GetAllDataV2")
        return EntitySyncResult(
            entity=request.entity,
            cursor=self.cursors[request.entity],
            counts=EntityCounts(fetched=5, inserted=1, unchanged=4),
            pages=2,
        )

    def activities(self) -> list[Any]:
        return [*super().activities(), self.reconcile_entity]

    def reconcile_cycles(self) -> list[str]:
        return list(dict.fromkeys(r.run_id for r in self.reconciles))


async def test_a_reconciliation_runs_after_the_configured_time(
    skipping_env: WorkflowEnvironment,
) -> None:
    stub = ReconcilingStub()
    state = IncomingSyncState(config=config(reconcile_every_seconds=INTERVAL * 3))
    async with running_sync(skipping_env.client, stub, state=state) as handle:
        await cycles_done(handle, 1)
        started = (await status(handle)).last_cycle
        assert started is not None and not started.reconcile and stub.reconciles == []
        for n in range(2, 6):
            await skipping_env.sleep(INTERVAL + 1)
            await cycles_done(handle, n)
            if n == 4:
                fourth = await status(handle)
        fifth = await status(handle)

    # Cycles 1-3 (t = 0, 300, 600) are plain; cycle 4 (t >= 900) reads everything from 0.
    [run_id] = stub.reconcile_cycles()
    assert run_id.startswith("reconcile-")
    assert [r.entity for r in stub.reconciles] == list(INCOMING_ORDER)
    assert stub.cycles_seen() == 4  # plain cycles 1, 2, 3 and 5
    cycle = fourth.last_cycle
    assert cycle is not None and cycle.reconcile and cycle.ok and cycle.run_id == run_id
    assert cycle.totals().inserted == len(INCOMING_ORDER)  # the difference found
    # The reconciliation left every cursor where cycle 3 put it; cycle 5 went on from there.
    assert fourth.cursors == {entity: 30 for entity in INCOMING_ORDER}
    assert fifth.cursors == {entity: 40 for entity in INCOMING_ORDER}
    assert fifth.last_cycle is not None and not fifth.last_cycle.reconcile


async def test_reconcile_now_runs_one_at_once_and_zero_disables_the_timer(
    skipping_env: WorkflowEnvironment,
) -> None:
    stub = ReconcilingStub()
    state = IncomingSyncState(config=config(reconcile_every_seconds=0))
    async with running_sync(skipping_env.client, stub, state=state) as handle:
        await cycles_done(handle, 1)
        for n in (2, 3):
            await skipping_env.sleep(INTERVAL + 1)
            await cycles_done(handle, n)
        assert stub.reconciles == [], "0 disables periodic reconciliation"

        await handle.signal(IncomingSyncWorkflow.reconcile_now)
        await cycles_done(handle, 4)
        asked = await status(handle)
        await handle.signal(IncomingSyncWorkflow.sync_now)
        await cycles_done(handle, 5)
        after = await status(handle)

    assert asked.last_cycle is not None and asked.last_cycle.reconcile
    assert asked.last_cycle.trigger == "sync_now"
    assert len(stub.reconcile_cycles()) == 1
    assert after.last_cycle is not None and not after.last_cycle.reconcile


async def test_a_reconciliation_cut_short_by_an_outage_stays_due(
    skipping_env: WorkflowEnvironment,
) -> None:
    stub = ReconcilingStub()
    stub.down_for_reconcile.add("product_details")
    state = IncomingSyncState(config=config(reconcile_every_seconds=0))
    async with running_sync(skipping_env.client, stub, state=state) as handle:
        await cycles_done(handle, 1)
        await handle.signal(IncomingSyncWorkflow.reconcile_now)
        await skipping_env.sleep(70)  # past the entity's 60 s budget of retries
        await cycles_done(handle, 2)
        cut = await status(handle)
        stub.down_for_reconcile.clear()
        await skipping_env.sleep(INTERVAL + 1)
        await cycles_done(handle, 3)
        done = await status(handle)
        await skipping_env.sleep(INTERVAL + 1)
        await cycles_done(handle, 4)
        plain = await status(handle)

    assert cut.last_cycle is not None and cut.last_cycle.reconcile and cut.last_cycle.skipped
    assert [f.entity for f in stub.failures] == ["product_details"]
    assert stub.failures[0].run_id.startswith("reconcile-")
    assert done.last_cycle is not None and done.last_cycle.reconcile and done.last_cycle.ok
    assert plain.last_cycle is not None and not plain.last_cycle.reconcile
    assert len(stub.reconcile_cycles()) == 2
