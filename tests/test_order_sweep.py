"""`OrderSweepWorkflow` and its activity against a real Temporal dev server and PostgreSQL.

The order workflows the sweep starts are stand-ins registered as `OrderSyncWorkflow` that
park until terminated, like orders waiting days in dispute: what the sweep sees of them
(running or not, in visibility) is real, and nothing reaches Mahak.
"""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
import pytest_asyncio
from temporalio import workflow
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError
from temporalio.worker import Worker

from activities.order_sweep import OrderSweepActivities
from mahak_sync.config import Settings
from mahak_sync.orders_api import start_order_sync
from mahak_sync.runtime import INTERCEPTORS
from shopdb import orders
from tests.order_helpers import make_order
from workflows.order_sweep import PAGED_SWEEP_PATCH, OrderSweepWorkflow, jittered
from workflows.order_types import order_workflow_id
from workflows.sweep_types import OrderSweepInput, OrderSweepStatus

pytestmark = pytest.mark.slow

BASE = datetime(2024, 1, 1, tzinfo=UTC)


# Not sandboxed: the sandbox would re-import this module's asyncpg (a C extension) per run.
@workflow.defn(name="OrderSyncWorkflow", sandboxed=False)
class ParkedOrderWorkflow:
    """Stands in for an order's sync that waits (in dispute, say) until terminated."""

    @workflow.run
    async def run(self, inp: dict[str, Any]) -> None:
        await workflow.wait_condition(lambda: False)


async def paid_order(pool: asyncpg.Pool, minutes: int | None) -> int:
    """A paid order, `paid_at` = BASE + minutes (None: paid without a timestamp)."""
    order = await make_order(pool, [(1, 1, 1, 1000)])
    await orders.mark_paid(pool, order.id, order.amount, f"PAY-{order.id}")
    await pool.execute(
        "UPDATE shop_orders SET paid_at = $2 WHERE id = $1",
        order.id,
        None if minutes is None else BASE + timedelta(minutes=minutes),
    )
    return order.id


@dataclass
class Sweeps:
    client: Client
    pool: asyncpg.Pool
    settings: Settings
    orders: list[int] = field(default_factory=list)
    sweep: WorkflowHandle[Any, Any] | None = None

    async def paid(self, minutes: int | None) -> int:
        order_id = await paid_order(self.pool, minutes)
        self.orders.append(order_id)
        return order_id

    async def park(self, order_ids: Iterable[int]) -> None:
        """Start (stand-in) syncs of these orders, visible as running before returning."""
        order_ids = list(order_ids)
        for order_id in order_ids:
            await start_order_sync(self.client, order_id, self.settings)
        await self.visible(running=order_ids)

    async def terminate(self, order_ids: Iterable[int]) -> None:
        order_ids = list(order_ids)
        for order_id in order_ids:
            await self.client.get_workflow_handle(order_workflow_id(order_id)).terminate("test")
        await self.visible(stopped=order_ids)

    async def running(self) -> set[int]:
        query = (
            f"TaskQueue = '{self.settings.temporal_task_queue}' AND "
            "WorkflowType = 'OrderSyncWorkflow' AND ExecutionStatus = 'Running'"
        )
        return {int(wf.id.rsplit("-", 1)[1]) async for wf in self.client.list_workflows(query)}

    async def visible(self, *, running: Iterable[int] = (), stopped: Iterable[int] = ()) -> None:
        """Wait until visibility (what the sweep reads) shows these orders so."""
        want_running, want_stopped = set(running), set(stopped)
        for _ in range(200):
            now = await self.running()
            if want_running <= now and not want_stopped & now:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(
            f"visibility never showed {want_running} running, {want_stopped} stopped"
        )

    async def run_id(self, order_id: int) -> str | None:
        try:
            return (
                await self.client.get_workflow_handle(order_workflow_id(order_id)).describe()
            ).run_id
        except RPCError:
            return None

    async def start_sweep(self, limit: int, **kw: Any) -> OrderSweepStatus:
        """Start the sweep (it sweeps at once) and return the status after its first sweep."""
        self.sweep = await self.client.start_workflow(
            OrderSweepWorkflow.run,
            OrderSweepInput(**{"interval": timedelta(hours=1), "batch_limit": limit, **kw}),
            id=f"sweep-{uuid.uuid4().hex[:8]}",
            task_queue=self.settings.temporal_task_queue,
        )
        return await self.after_cycle(1)

    async def run_of_sweep(self) -> str:
        assert self.sweep is not None
        return (await self.client.get_workflow_handle(self.sweep.id).describe()).run_id

    async def status(self, run_id: str) -> OrderSweepStatus:
        """The status of one run of the sweep (a run that continued as new answers too)."""
        assert self.sweep is not None
        return await self.client.get_workflow_handle(self.sweep.id, run_id=run_id).query(
            OrderSweepWorkflow.status
        )

    async def after_cycle(
        self, cycle: int, *, run_id: str | None = None, not_run_id: str | None = None
    ) -> OrderSweepStatus:
        """The status once a run (`run_id`, or the current one, or the first one other than
        `not_run_id`) has swept `cycle` times."""
        for _ in range(300):
            run = run_id or await self.run_of_sweep()
            if run != not_run_id:
                status = await self.status(run)
                if status.cycles >= cycle:
                    return status
            await asyncio.sleep(0.05)
        raise AssertionError(f"sweep {cycle} never ran")

    async def sweep_now(self) -> OrderSweepStatus:
        """One more sweep, woken by the operator's signal; its status."""
        assert self.sweep is not None
        run_id = await self.run_of_sweep()
        cycles = (await self.status(run_id)).cycles
        await self.client.get_workflow_handle(self.sweep.id).signal(OrderSweepWorkflow.sweep_now)
        return await self.after_cycle(cycles + 1, run_id=run_id)

    async def close(self) -> None:
        if self.sweep is not None:
            await self.client.get_workflow_handle(self.sweep.id).terminate("test over")
        for order_id in set(self.orders) & await self.running():
            await self.client.get_workflow_handle(order_workflow_id(order_id)).terminate("over")


@pytest_asyncio.fixture
async def sweeps(temporal_client, db_pool, task_queue) -> AsyncIterator[Sweeps]:
    settings = Settings(TEMPORAL_TASK_QUEUE=task_queue)
    s = Sweeps(temporal_client, db_pool, settings)
    async with Worker(
        temporal_client,
        task_queue=task_queue,
        interceptors=INTERCEPTORS,
        workflows=[ParkedOrderWorkflow, OrderSweepWorkflow],
        activities=OrderSweepActivities(db_pool, temporal_client, settings).all(),
    ):
        try:
            yield s
        finally:
            await s.close()


# --- (a) fairness -------------------------------------------------------------------------------


async def test_backlog_of_running_orders_does_not_starve_a_lost_callback(sweeps):
    """12 older orders parked in flight, 5 per page: the newer order whose callback was lost
    is started within ceil(12/5)+1 sweeps, and no parked order is started again.
    (Before paging every sweep read the same oldest 5, all in flight, and never reached it.)"""
    limit, backlog = 5, 12
    parked = [await sweeps.paid(i) for i in range(backlog)]
    lost = await sweeps.paid(10_000)
    await sweeps.park(parked)
    runs = {o: await sweeps.run_id(o) for o in parked}

    bound = math.ceil(backlog / limit) + 1
    status = await sweeps.start_sweep(limit)
    seen = [status]
    while lost not in status.last_started and len(seen) < bound:
        status = await sweeps.sweep_now()
        seen.append(status)
    assert lost in status.last_started, f"not started within {bound} sweeps: {seen}"
    assert await sweeps.run_id(lost) is not None
    # Each sweep examined a full page; all but the lost order were in flight.
    assert [s.examined for s in seen] == [limit] * len(seen)
    assert sum(s.in_flight for s in seen) == limit * len(seen) - 1
    assert all(s.last_started == [] for s in seen[:-1])
    assert {o: await sweeps.run_id(o) for o in parked} == runs


# --- (b) compensation ---------------------------------------------------------------------------


async def test_an_order_whose_compensation_began_is_never_started(sweeps):
    """Orders whose compensation began (workflow terminated halfway, status still 'dispute'
    or 'sending', nothing running) are never examined nor started, by paged or legacy sweeps."""
    compensating = []
    for minutes, status in ((0, "dispute"), (2, "sending")):
        order_id = await sweeps.paid(minutes)
        await sweeps.pool.execute(
            "UPDATE shop_orders SET sync_status = $2, compensation_started_at = now() "
            "WHERE id = $1",
            order_id,
            status,
        )
        compensating.append(order_id)
    lost = await sweeps.paid(1)
    later = await sweeps.paid(3)

    # One order per page: two full passes over what is eligible.
    statuses = [await sweeps.start_sweep(1), await sweeps.sweep_now()]
    await sweeps.visible(running=[lost, later])
    statuses += [await sweeps.sweep_now(), await sweeps.sweep_now()]
    assert [s.last_started for s in statuses] == [[lost], [later], [], []]
    assert [(s.examined, s.in_flight) for s in statuses] == [(1, 0), (1, 0), (1, 1), (1, 1)]
    assert [s.cursor.order_id for s in statuses] == [lost, later, lost, later]
    assert [s.wrapped for s in statuses] == [False, False, True, False]
    # The legacy activity (runs recorded before paging) excludes them too.
    legacy = OrderSweepActivities(sweeps.pool, sweeps.client, sweeps.settings)
    assert await legacy.sweep(10) == []
    for order_id in compensating:
        assert await sweeps.run_id(order_id) is None
    assert await orders.paid_orders_without_sync(sweeps.pool, 10, among=compensating) == []


async def test_the_page_query_is_served_by_the_unsynced_index(db_pool):
    """Every shape of the page query matches the predicate of `shop_orders_unsynced_idx`
    (with sequential scans off, only a matching partial index is a cheap plan)."""
    ids = [await paid_order(db_pool, minutes) for minutes in (0, 1, None)]

    class Explaining:
        def __init__(self, conn: asyncpg.Connection) -> None:
            self.conn, self.plans = conn, []

        async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
            if "FROM shop_orders o" in sql:
                plan = await self.conn.fetch(f"EXPLAIN {sql}", *args)
                self.plans.append("\n".join(r[0] for r in plan))
            return await self.conn.fetch(sql, *args)

    async with db_pool.acquire() as conn:
        await conn.execute("SET enable_seqscan = off")
        db = Explaining(conn)
        await orders.paid_orders_without_sync(db, 10)
        await orders.paid_orders_without_sync(db, 10, after=(BASE, ids[0]))
        await orders.paid_orders_without_sync(db, 10, after=(None, ids[2]))
        await conn.execute("RESET enable_seqscan")
    # First page; after a cursor (and the NULL-paid_at tail it goes on to); inside the tail.
    assert len(db.plans) == 4
    for plan in db.plans:
        assert "shop_orders_unsynced_idx" in plan, plan


# --- (c) keyset paging and wrap-around ----------------------------------------------------------


async def test_pages_cover_every_order_once_per_pass_in_payment_order(db_pool):
    """The keyset pages of `paid_orders_without_sync`: payment order, ties broken by id,
    orders paid without a timestamp last, no order skipped or repeated."""
    expected = [await paid_order(db_pool, m) for m in (5, 5, 1, None, 9, None, 3)]
    expected = [expected[i] for i in (2, 6, 0, 1, 4, 3, 5)]
    pages, after = [], None
    while True:
        page = await orders.paid_orders_without_sync(db_pool, 2, after=after)
        if not page:
            break
        pages.append([o.id for o in page])
        after = (page[-1].paid_at, page[-1].id)
    assert pages == [expected[0:2], expected[2:4], expected[4:6], expected[6:]]


async def test_wrap_around_reaches_orders_before_the_cursor_again(sweeps):
    """Five orders, two per page: after the cursor passed orders 1 and 2 their syncs stop
    (terminated); the sweep wraps round to them, also across continue-as-new."""
    o1, o2, o3, o4, o5 = [await sweeps.paid(i) for i in range(5)]
    first = await sweeps.start_sweep(2, cycles_per_run=3)
    assert first.last_started == [o1, o2] and first.cursor.order_id == o2
    await sweeps.visible(running=[o1, o2])
    second = await sweeps.sweep_now()
    assert second.last_started == [o3, o4] and second.cursor.order_id == o4
    assert not second.wrapped
    await sweeps.visible(running=[o3, o4])
    await sweeps.terminate([o1, o2])

    run_id = await sweeps.run_of_sweep()
    third = await sweeps.sweep_now()  # the end, then from the oldest: o5, o1
    assert third.last_started == [o5, o1] and third.wrapped
    assert (third.examined, third.in_flight, third.cursor.order_id) == (2, 0, o1)
    # Third cycle of three: continued as new, the cursor carried; the new run sweeps at once.
    fourth = await sweeps.after_cycle(1, not_run_id=run_id)
    assert fourth.last_started == [o2] and fourth.cursor.order_id == o3
    assert (fourth.examined, fourth.in_flight, fourth.wrapped) == (2, 1, False)


# --- (d) jitter ---------------------------------------------------------------------------------


def test_jitter_stays_within_its_bounds() -> None:
    minute = timedelta(minutes=1)
    assert jittered(minute, 0.2, 0.0) == timedelta(seconds=48)
    assert jittered(minute, 0.2, 0.5) == minute
    assert timedelta(seconds=71.99) < jittered(minute, 0.2, 0.99999999) <= timedelta(seconds=72)
    assert jittered(minute, 0.0, 0.9) == minute
    for i in range(1000):
        assert timedelta(seconds=48) <= jittered(minute, 0.2, i / 1000) <= timedelta(seconds=72)


async def test_sweep_waits_are_jittered_within_bounds(sweeps):
    """The timers the workflow really starts: within interval ± 20 %, and not all equal."""
    interval = timedelta(milliseconds=300)
    await sweeps.start_sweep(1, interval=interval, jitter=0.2)
    await sweeps.after_cycle(5)  # the dev server fires timers about once a second
    history = await sweeps.sweep.fetch_history()
    waits = [
        e.timer_started_event_attributes.start_to_fire_timeout.ToTimedelta()
        for e in history.events
        if e.HasField("timer_started_event_attributes")
    ]
    assert len(waits) >= 5
    assert all(interval * 0.8 <= w <= interval * 1.2 for w in waits), waits
    assert len(set(waits)) > 1, waits
    markers = [
        e.marker_recorded_event_attributes
        for e in history.events
        if e.HasField("marker_recorded_event_attributes")
    ]
    assert [m.marker_name for m in markers] == ["core_patch"]
    assert PAGED_SWEEP_PATCH.encode() in markers[0].details["patch-data"].payloads[0].data
