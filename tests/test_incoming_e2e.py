"""The incoming sync end to end: the real worker (`mahak_sync.runtime.build_worker`) and activities on the
dev server, the Mahak simulator over HTTP, and a real PostgreSQL database.

What matters is asserted against the two ends: the database must hold exactly what the
simulator holds, row by row, with every cursor matching its rows.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
import pytest
import pytest_asyncio
from temporalio.client import Client, WorkflowHandle

from activities.incoming import IncomingSync
from activities.order_request import order_request
from mahak_client.client import MahakClient
from mahak_client.models import ENTITIES, INCOMING_ORDER
from mahak_simulator.control import SimControl
from mahak_simulator.server import SimulatorServer
from mahak_sync.cli_sync import current_progress
from mahak_sync.config import Settings
from mahak_sync.launch import start_incoming
from mahak_sync.runtime import build_worker
from mahak_sync.temporal import SYNC_KIND, SYNC_PAUSED
from shopdb import catalog, orders
from shopdb.mirror import DERIVED_COLUMNS, mirror, to_record
from shopdb.models import ShopOrder
from tests.order_helpers import make_order
from workflows.incoming_sync import IncomingSyncWorkflow
from workflows.incoming_types import (
    CycleSummary,
    EntityCounts,
    ResetCursorRequest,
    SyncConfig,
    SyncEntitiesResult,
    SyncStatus,
)

pytestmark = pytest.mark.slow

PAGE_SIZE = 4  # small, so every entity of a seeded catalog takes several pages


def fast_config(**overrides: Any) -> SyncConfig:
    values: dict[str, Any] = {
        # Cycles come from the test (start, sync_now, run_cycle), never from the timer.
        "interval_seconds": 3600,
        "page_size": PAGE_SIZE,
        # Retry timers of a dev server fire at about 1 s granularity, whatever the interval.
        "entity_timeout_seconds": 10,
        "attempt_timeout_seconds": 5,
        "heartbeat_timeout_seconds": 3,
        "retry_initial_seconds": 0.1,
        "retry_max_seconds": 0.3,
    }
    values.update(overrides)
    return SyncConfig(**values)


@dataclass
class Sync:
    client: Client
    handle: WorkflowHandle[Any, Any]
    pool: asyncpg.Pool
    sim: SimControl

    async def status(self) -> SyncStatus:
        return await self.handle.query(IncomingSyncWorkflow.status)

    async def cycles(self, n: int, timeout: float = 30) -> SyncStatus:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            status = await self.status()
            if status.cycles_done >= n:
                return status
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"cycle {n} not done in {timeout}s: {status}")
            await asyncio.sleep(0.1)

    async def run_cycle(self) -> CycleSummary:
        return await self.handle.execute_update(IncomingSyncWorkflow.run_cycle)


@pytest_asyncio.fixture
async def start_sync(
    temporal_client: Client,
    task_queue: str,
    db_pool: asyncpg.Pool,
    sim: SimControl,
    simulator: SimulatorServer,
) -> AsyncIterator[Any]:
    """Runs the real worker; the returned coroutine function starts the workflow."""
    settings = Settings(
        TEMPORAL_TASK_QUEUE=task_queue,
        MAHAK_BASE_URL=simulator.base_url,
        MAHAK_USERNAME="shop",
        MAHAK_PASSWORD="secret",
    )
    workflow_id = f"mahak-incoming-sync-{uuid.uuid4().hex[:8]}"
    async with MahakClient.from_settings(settings) as mahak, httpx.AsyncClient() as gateway:
        async with build_worker(
            temporal_client, settings, pool=db_pool, mahak=mahak, gateway=gateway
        ):

            async def start(config: SyncConfig | None = None, *, paused: bool = False) -> Sync:
                handle, started = await start_incoming(
                    temporal_client,
                    settings,
                    config=config or fast_config(),
                    paused=paused,
                    workflow_id=workflow_id,
                )
                assert started
                again, started_again = await start_incoming(
                    temporal_client, settings, config=config, workflow_id=workflow_id
                )
                assert not started_again and again.run_id == handle.run_id, "starting attaches"
                return Sync(
                    temporal_client, temporal_client.get_workflow_handle(workflow_id), db_pool, sim
                )

            try:
                yield start
            finally:
                await temporal_client.get_workflow_handle(workflow_id).terminate("test over")


# --- the database must mirror the simulator ---------------------------------------------------


def _plain(value: Any) -> Any:
    return float(value) if isinstance(value, Decimal) else value


async def assert_mirrors_simulator(pool: asyncpg.Pool, sim: SimControl) -> dict[str, int]:
    """Every entity's table holds exactly the simulator's rows (same ids, versions, delete
    flags and column values) and its cursor is its newest RowVersion. Returns row counts."""
    sizes = {}
    for name in INCOMING_ORDER:
        spec, table = ENTITIES[name], mirror(name)
        raw = await sim.entities(name)
        expected = {}
        for row in raw:
            model = spec.model.model_validate(row)
            record, problem = to_record(table, model, 1)
            assert record is not None, f"{name}: simulator row not storable: {problem}"
            expected[record[0]] = dict(zip(table.columns, map(_plain, record)))
        stored = {
            r["id"]: {k: _plain(v) for k, v in dict(r).items()}
            for r in await pool.fetch(f"SELECT {', '.join(table.columns)} FROM {table.table}")
        }
        # Decoded against other tables as the page is stored (issue 18): checked by
        # tests/test_storefront*.py, not derivable from the row alone.
        for values in (*expected.values(), *stored.values()):
            for derived in DERIVED_COLUMNS:
                values.pop(derived, None)
        assert stored.keys() == expected.keys(), f"{name}: ids differ"
        for row_id, want in expected.items():
            assert stored[row_id] == want, f"{name} {row_id}: {stored[row_id]} != {want}"
        # Independent of the mapping: versions and delete flags straight from the wire.
        wire = {r[_id_key(spec)]: r for r in raw}
        for row_id, row in wire.items():
            assert stored[row_id]["row_version"] == row["RowVersion"]
            assert stored[row_id]["deleted"] == row["Deleted"]
        cursor = await catalog.get_cursor(pool, name)
        assert cursor == max((r["RowVersion"] for r in raw), default=0), f"{name} cursor"
        sizes[name] = len(raw)
    return sizes


def _id_key(spec: Any) -> str:
    """`product_detail_store_asset_id` -> `ProductDetailStoreAssetId`."""
    return "".join(part.capitalize() for part in spec.id_field.split("_"))


# --- tests ----------------------------------------------------------------------------------


async def test_initial_sync_mirrors_the_catalog_and_a_second_cycle_fetches_nothing(
    start_sync: Any,
    sim: SimControl,
    db_pool: asyncpg.Pool,
) -> None:
    await sim.seed(9, stores=2, categories=2, details_per_product=2, pictures_per_product=1)
    await sim.sale(*(await _a_detail_and_store(sim)), count=1)  # a Mahak-side order + line
    sync = await start_sync()

    first = (await sync.cycles(1)).last_cycle
    assert first is not None and first.ok, first
    sizes = await assert_mirrors_simulator(db_pool, sim)
    assert sizes["product_details"] == 18 and sizes["orders"] == 1
    assert first.entities["product_details"].pages >= 18 // PAGE_SIZE
    for name in INCOMING_ORDER:
        assert first.entities[name].counts.inserted == sizes[name], name
    log = await db_pool.fetch(
        "SELECT entity, fetched, inserted, finished_at, error FROM mahak_sync_log WHERE run_id = $1",
        first.run_id,
    )
    assert {r["entity"] for r in log} == set(INCOMING_ORDER)
    assert all(r["finished_at"] is not None and r["error"] is None for r in log)
    assert {r["entity"]: r["inserted"] for r in log} == sizes

    second = await sync.run_cycle()
    # The look-back window (INCOMING_LOOKBACK_ROWVERSIONS) reads recent rows again each
    # cycle; the newer-only upsert leaves them as they are: nothing written.
    totals = second.totals()
    assert second.ok and totals.unchanged == totals.fetched, "nothing new to store"
    assert totals.model_copy(update={"fetched": 0, "unchanged": 0}) == EntityCounts()
    assert (await sync.status()).cursors == await catalog.get_cursors(db_pool)


async def _a_detail_and_store(sim: SimControl) -> tuple[int, int]:
    stock = await sim.entities("product_detail_store_assets")
    row = next(r for r in stock if r["Count1"] >= 2)
    return row["ProductDetailId"], row["StoreId"]


async def test_changes_deletes_and_stock_moves_arrive_after_sync_now(
    start_sync: Any,
    sim: SimControl,
    db_pool: asyncpg.Pool,
) -> None:
    seeded = await sim.seed(5, stores=2)
    sync = await start_sync()
    await sync.cycles(1)

    detail, store = seeded.product_details[0], seeded.stores[0]
    await sim.set_price(detail, 1, 987_654)
    await sim.delete("products", seeded.products[1])
    await sim.delete("visitor_products", seeded.visitor_products[2])
    await sim.set_stock(detail, store, 3)
    await sim.sale(seeded.product_details[3], seeded.stores[1], 2)
    # The timer is an hour away: only the signal can bring the changes in now.
    await sync.handle.signal(IncomingSyncWorkflow.sync_now)
    status = await sync.cycles(2, timeout=15)

    assert status.last_cycle is not None and status.last_cycle.trigger == "sync_now"
    await assert_mirrors_simulator(db_pool, sim)
    price = await db_pool.fetchval("SELECT price1 FROM mahak_product_details WHERE id = $1", detail)
    assert float(price) == 987_654
    assert await db_pool.fetchval(
        "SELECT deleted FROM mahak_products WHERE id = $1", seeded.products[1]
    )
    assert (
        float(
            await db_pool.fetchval(
                "SELECT count1 FROM mahak_stock WHERE product_detail_id = $1 AND store_id = $2",
                detail,
                store,
            )
        )
        == 3
    )
    counts = status.last_cycle.entities
    assert counts["products"].counts.deleted == 1
    assert counts["orders"].counts.inserted == 1 and counts["order_details"].counts.inserted == 1


async def test_outage_mid_cycle_delays_but_never_corrupts(
    start_sync: Any,
    sim: SimControl,
    db_pool: asyncpg.Pool,
) -> None:
    await sim.seed(16, stores=2, details_per_product=2)
    # Slow pages, so the cycle is surely in the middle of the catalog when Mahak goes down.
    await sim.add_fault(latency_ms=150, error_rate=1.0)
    sync = await start_sync(fast_config(entity_timeout_seconds=3))
    deadline = asyncio.get_running_loop().time() + 20
    while (await sync.status()).current_entity not in ("product_details", "visitor_products"):
        assert asyncio.get_running_loop().time() < deadline, "cycle never reached the details"
        await asyncio.sleep(0.05)
    # Page-level progress is in the running activity's heartbeat (`mahak-sync sync status`).
    progress = None
    while progress is None or progress.entity not in ("product_details", "visitor_products"):
        assert asyncio.get_running_loop().time() < deadline, "no heartbeat progress"
        progress = await current_progress(sync.client, sync.handle)
    await sim.clear_faults()
    await sim.add_fault(status_code=503)  # down until cleared

    first = (await sync.cycles(1)).last_cycle
    assert first is not None and not first.ok
    failed = next(name for name, r in first.entities.items() if r.error)
    assert "503" in (first.entities[failed].error or "")
    assert first.skipped == list(INCOMING_ORDER[INCOMING_ORDER.index(failed) + 1 :])
    # Whatever was committed is consistent: each cursor is exactly its stored rows' newest
    # version, and nothing stored is newer than what Mahak has.
    for name in INCOMING_ORDER:
        newest = await db_pool.fetchval(
            f"SELECT coalesce(max(row_version), 0) FROM {mirror(name).table}"
        )
        assert await catalog.get_cursor(db_pool, name) == newest, name
    assert await db_pool.fetchval(
        "SELECT error FROM mahak_sync_log WHERE run_id = $1 AND entity = $2", first.run_id, failed
    )

    await sim.clear_faults()
    second = await sync.run_cycle()
    assert second.ok, second
    await assert_mirrors_simulator(db_pool, sim)  # no row lost


async def test_transient_errors_are_retried_within_the_cycle(
    start_sync: Any,
    sim: SimControl,
    db_pool: asyncpg.Pool,
) -> None:
    await sim.seed(6)
    await sim.add_fault(status_code=503, count=1)
    await sim.add_fault(drop_connection=True, count=1)
    sync = await start_sync()
    first = (await sync.cycles(1)).last_cycle
    assert first is not None and first.ok, first
    await assert_mirrors_simulator(db_pool, sim)
    assert (await sim.stats()).faults_injected == 2


async def test_a_malformed_row_is_dead_lettered_and_the_cycle_goes_on(
    start_sync: Any,
    sim: SimControl,
    db_pool: asyncpg.Pool,
) -> None:
    seeded = await sim.seed(3)
    bad = await sim.inject_row("products", {"ProductId": "not-a-number", "Name": "broken"})
    sync = await start_sync()
    first = (await sync.cycles(1)).last_cycle

    assert first is not None and first.ok, first
    products = first.entities["products"]
    assert products.counts.dead_lettered == 1 and products.counts.inserted == 3
    letters = await db_pool.fetch("SELECT entity, row_version, reason FROM mahak_dead_letters")
    assert [(r["entity"], r["row_version"]) for r in letters] == [("products", bad["RowVersion"])]
    assert await catalog.get_cursor(db_pool, "products") == bad["RowVersion"], (
        "the cursor passes the quarantined row"
    )
    assert await db_pool.fetchval("SELECT count(*) FROM mahak_products") == len(seeded.products)
    assert all(first.entities[name].ok for name in INCOMING_ORDER)


async def test_a_malformed_page_is_retried_within_the_cycle(
    start_sync: Any,
    sim: SimControl,
    db_pool: asyncpg.Pool,
) -> None:
    # A bad body is retried with backoff (mahak_sync.errors): one malformed answer costs a
    # retry, not the entity.
    await sim.seed(3, stores=2)
    await sim.add_fault(malformed="truncated", count=1)  # the first answer: stores' page
    sync = await start_sync()
    first = (await sync.cycles(1)).last_cycle
    assert first is not None and first.ok, first
    assert first.entities["stores"].counts.inserted == 2
    assert (await sim.stats()).faults_injected == 1
    await assert_mirrors_simulator(db_pool, sim)


async def test_a_malformed_page_that_persists_fails_its_entity_only(
    start_sync: Any,
    sim: SimControl,
    db_pool: asyncpg.Pool,
) -> None:
    await sim.seed(3, stores=2)
    await sim.add_fault(malformed="truncated")  # every answer, until stores has given up
    sync = await start_sync(fast_config(entity_timeout_seconds=3))
    deadline = asyncio.get_running_loop().time() + 20
    while (await sync.status()).current_entity in (None, "stores"):
        assert asyncio.get_running_loop().time() < deadline, "stores never gave up"
        await asyncio.sleep(0.05)
    await sim.clear_faults()
    first = (await sync.cycles(1)).last_cycle

    assert first is not None and first.skipped == []
    stores = first.entities["stores"]
    assert stores.error_type == "MahakProtocolError" and not first.ok
    assert (await sim.stats()).faults_injected > 1, "retried before giving up"
    assert all(first.entities[name].ok for name in INCOMING_ORDER if name != "stores")
    assert await catalog.get_cursor(db_pool, "stores") == 0, "nothing half-applied"
    second = await sync.run_cycle()
    assert second.ok and second.entities["stores"].counts.inserted == 2
    await assert_mirrors_simulator(db_pool, sim)


async def test_reset_cursor_resyncs_an_entity(
    start_sync: Any,
    sim: SimControl,
    db_pool: asyncpg.Pool,
) -> None:
    seeded = await sim.seed(5)
    sync = await start_sync()
    await sync.cycles(1)
    newest = await catalog.get_cursor(db_pool, "products")

    result = await sync.handle.execute_update(
        IncomingSyncWorkflow.reset_cursor, ResetCursorRequest(entity="products", row_version=0)
    )
    assert result.cursors == {"products": 0}
    assert await catalog.get_cursor(db_pool, "products") == 0
    again = await sync.run_cycle()
    products = again.entities["products"]
    assert products.counts.fetched == len(seeded.products)
    assert products.counts.unchanged == len(seeded.products)  # same versions: nothing rewritten
    stores = again.entities["stores"].counts  # re-read by the look-back window only
    assert stores.inserted == stores.updated == stores.deleted == 0
    assert await catalog.get_cursor(db_pool, "products") == newest


async def test_pause_is_visible_to_operators(start_sync: Any, sim: SimControl) -> None:
    await sim.seed(1)
    sync = await start_sync(paused=True)
    await asyncio.sleep(0.5)
    status = await sync.status()
    assert status.paused and status.cycles_done == 0, "a paused start runs nothing"
    attrs = (await sync.handle.describe()).typed_search_attributes
    assert attrs.get(SYNC_KIND) == "incoming" and attrs.get(SYNC_PAUSED) is True

    await sync.handle.signal(IncomingSyncWorkflow.resume)
    await sync.cycles(1)
    attrs = (await sync.handle.describe()).typed_search_attributes
    assert attrs.get(SYNC_PAUSED) is False
    found = [
        w.id
        async for w in sync.client.list_workflows(
            f"MahakSyncKind = 'incoming' AND WorkflowId = '{sync.handle.id}'"
        )
    ]
    assert found, "the Web UI filter finds the workflow"


async def test_inventory_conflicts_are_recorded(
    start_sync: Any,
    sim: SimControl,
    db_pool: asyncpg.Pool,
) -> None:
    seeded = await sim.seed(2, stock=10)
    detail, store = seeded.product_details[0], seeded.stores[0]
    sync = await start_sync()
    await sync.cycles(1)
    first = await make_order(db_pool, [(detail, store, 2, 1000)])
    await orders.mark_paid(db_pool, first.id, first.amount, f"PAY-{first.id}")
    second = await make_order(db_pool, [(detail, store, 4, 1000)])
    await orders.mark_paid(db_pool, second.id, second.amount, f"PAY-{second.id}")

    # An in-store sale leaves 4: enough for the order paid first (2), not for both (6).
    await sim.sale(detail, store, 6)
    summary = await sync.run_cycle()
    assert summary.inventory_conflicts == 1, "only the order the stock cannot cover"
    row = await db_pool.fetchrow(
        "SELECT fetched, error FROM mahak_sync_log WHERE run_id = $1 AND entity = 'inventory_conflicts'",
        summary.run_id,
    )
    assert row["fetched"] == 1 and f"detail {detail} in store {store}" in row["error"]
    assert f"(orders {second.id})" in row["error"]


async def _paid(
    pool: asyncpg.Pool, lines: list[tuple[int, int, int, int]], *, person: int | None = None
) -> ShopOrder:
    order = await make_order(pool, lines, mahak_person_id=person)
    await orders.mark_paid(pool, order.id, order.amount, f"PAY-{order.id}")
    found = await orders.get_order(pool, order.id)
    assert found is not None
    return found


async def _saved_answer_lost(simulator: SimulatorServer, order: ShopOrder, person: int) -> None:
    """Mahak saved the order (and took its stock); the answer never reached the shop, which
    has not marked it synced."""
    async with MahakClient(simulator.base_url, "shop", "secret") as mahak:
        await mahak.login()
        await mahak.save_all_data(
            order_request(order, visitor_id=mahak.visitor_id, person_id=person)
        )


async def _mahak_count1(sim: SimControl, detail: int, store: int) -> float:
    return next(
        r["Count1"]
        for r in await sim.entities("product_detail_store_assets")
        if r["ProductDetailId"] == detail and r["StoreId"] == store
    )


async def test_an_order_mahak_saved_since_the_last_cycle_is_no_conflict(
    start_sync: Any,
    sim: SimControl,
    db_pool: asyncpg.Pool,
    simulator: SimulatorServer,
) -> None:
    """Mahak had 5 and saved our order of 4 between two cycles, so it now has 1. The next
    cycle brings the lower stock AND the Mahak order; the check, run after both, sees the
    order is Mahak's and already inside its 1: nothing to cancel."""
    seeded = await sim.seed(2, stock=5)
    detail, store, person = seeded.product_details[0], seeded.stores[0], seeded.people[0]
    sync = await start_sync()
    await sync.cycles(1)
    order = await _paid(db_pool, [(detail, store, 4, 1000)], person=person)
    await _saved_answer_lost(simulator, order, person)
    assert await _mahak_count1(sim, detail, store) == 1

    summary = await sync.run_cycle()
    assert summary.ok, summary
    assert summary.entities["orders"].counts.inserted == 1
    assert summary.inventory_conflicts == 0, "a good order would be cancelled"
    assert not await db_pool.fetchval(
        "SELECT count(*) FROM mahak_sync_log WHERE run_id = $1 AND entity = 'inventory_conflicts'",
        summary.run_id,
    )


async def test_in_process_cycle_checks_conflicts_after_the_orders_too(
    sim: SimControl,
    db_pool: asyncpg.Pool,
    simulator: SimulatorServer,
) -> None:
    """`mahak-sync sync once` (IncomingSync.run_cycle) follows the same rules."""
    seeded = await sim.seed(2, stock=5)
    detail, store, person = seeded.product_details[0], seeded.stores[0], seeded.people[0]
    async with MahakClient(simulator.base_url, "shop", "secret") as mahak:
        incoming = IncomingSync(db_pool, mahak)
        assert (await incoming.run_cycle(page_size=PAGE_SIZE, run_id="cli-1")).ok
        order = await _paid(db_pool, [(detail, store, 4, 1000)], person=person)
        await _saved_answer_lost(simulator, order, person)
        other = await _paid(db_pool, [(seeded.product_details[1], store, 6, 1000)])

        summary = await incoming.run_cycle(page_size=PAGE_SIZE, run_id="cli-2")
    assert summary.ok, summary
    assert summary.inventory_conflicts == 1, "only the order Mahak does not hold, 6 > 5"
    row = await db_pool.fetchrow(
        "SELECT fetched, error FROM mahak_sync_log WHERE run_id = 'cli-2' AND entity = 'inventory_conflicts'"
    )
    assert row["fetched"] == 1 and f"(orders {other.id})" in row["error"]


async def test_the_conflict_check_reads_mahak_again_before_reporting(
    sim: SimControl,
    db_pool: asyncpg.Pool,
    simulator: SimulatorServer,
) -> None:
    """The mirror says two orders are short; before reporting, the check reads stock and
    orders from Mahak again (from the stored cursors, stored before each cursor moves): Mahak
    restocked one product since, so only the other order is still a conflict."""
    seeded = await sim.seed(2, stock=5)
    (d1, d2), store = seeded.product_details, seeded.stores[0]
    async with MahakClient(simulator.base_url, "shop", "secret") as mahak:
        incoming = IncomingSync(db_pool, mahak)
        first = await _paid(db_pool, [(d1, store, 4, 1000)])
        second = await _paid(db_pool, [(d2, store, 3, 1000)])
        await sim.sale(d1, store, 3)  # 2 left of d1: `first` is short
        await sim.sale(d2, store, 4)  # 1 left of d2: `second` is short
        assert (await incoming.run_cycle(page_size=PAGE_SIZE, run_id="cycle")).ok
        await sim.set_stock(d1, store, 10)  # restocked in Mahak after the cycle read it

        found = await incoming.detect_inventory_conflicts("check")

    assert [c.order_id for c in found] == [second.id], "reported on a stale picture"
    assert [(s.product_detail_id, s.available) for s in found[0].shortages] == [(d2, 1)]
    assert (
        float(
            await db_pool.fetchval(
                "SELECT count1 FROM mahak_stock WHERE product_detail_id = $1 AND store_id = $2",
                d1,
                store,
            )
        )
        == 10
    ), "the re-read is stored"
    await assert_mirrors_simulator(db_pool, sim)  # cursors moved only over stored rows
    assert first.id not in {c.order_id for c in found}


# --- quiet cycles in one activity (issue 16) -------------------------------------------------


async def _cycle_activities(sync: Sync) -> tuple[list[str], list[str]]:
    """The last `run_cycle`'s activities, in the order scheduled, and the entities the
    `incoming.sync_entities` among them synced (from its recorded result)."""
    history = await sync.handle.fetch_history()
    last_update = max(
        i
        for i, e in enumerate(history.events)
        if e.HasField("workflow_execution_update_accepted_event_attributes")
    )
    names, quick = [], []
    converter = sync.client.data_converter.payload_converter
    scheduled: dict[int, str] = {}
    for event in history.events[last_update:]:
        if event.HasField("activity_task_scheduled_event_attributes"):
            name = event.activity_task_scheduled_event_attributes.activity_type.name
            scheduled[event.event_id] = name
            names.append(name)
        elif event.HasField("activity_task_completed_event_attributes"):
            done = event.activity_task_completed_event_attributes
            if scheduled[done.scheduled_event_id] == "incoming.sync_entities":
                [result] = converter.from_payloads(done.result.payloads, [SyncEntitiesResult])
                quick = [r.entity for r in result.results]
    return names, quick


async def test_a_quiet_cycle_starts_with_every_entity_in_one_activity(
    start_sync: Any, sim: SimControl, db_pool: asyncpg.Pool
) -> None:
    """A cycle starts with `incoming.sync_entities`; every entity is synced exactly once in
    the cycle, in order, by it or by an activity of its own after it (the split depends on
    the 1 s budget, so on the machine); a change made in Mahak still arrives."""
    seeded = await sim.seed(3)
    sync = await start_sync(fast_config(page_size=None))
    await sync.cycles(1)
    await sync.run_cycle()  # the first cycle ran from the timer: this one is `run_cycle`'s
    await sim.set_price(seeded.product_details[0], 1, 5)

    changed = await sync.run_cycle()
    names, quick = await _cycle_activities(sync)

    assert changed.ok, changed
    assert changed.entities["product_details"].counts.updated == 1
    assert names[0] == "incoming.sync_entities", names
    assert quick, "the quick activity synced nothing of a small catalogue"
    rest = [n for n in names[1:] if n == "incoming.sync_entity"]
    assert len(quick) + len(rest) == len(INCOMING_ORDER), (quick, names)
    assert quick == list(INCOMING_ORDER[: len(quick)]), "in dependency order"
    assert changed.conflicts_checked
    await assert_mirrors_simulator(db_pool, sim)
