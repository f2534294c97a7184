"""Reconciliation (issue 12, shared/mahak-api.md §10 (a)): a full read from RowVersion 0 that
applies what the shop lacks or holds older, reports the difference in the sync log, reports
(never deletes) shop rows Mahak no longer lists, and never moves a cursor backwards.

Against the Mahak simulator over HTTP and a real PostgreSQL; the last test runs it through
the real worker and workflow (`reconcile_now`)."""

from __future__ import annotations

import time
from typing import Any

import asyncpg
import pytest
from temporalio.client import Client

import activities.incoming as incoming_module
import workflows.incoming_sync as incoming_sync_module
from activities.incoming import IncomingSync
from mahak_client.client import MahakClient
from mahak_client.models import INCOMING_ORDER
from mahak_simulator.control import SimControl
from mahak_simulator.server import SimulatorServer
from mahak_sync import cli
from mahak_sync.config import get_settings
from shopdb import catalog
from shopdb.mirror import mirror
from tests.test_incoming_e2e import (  # noqa: F401 - `start_sync` is a fixture
    PAGE_SIZE,
    assert_mirrors_simulator,
    fast_config,
    start_sync,
)
from workflows.incoming_types import EntitySyncResult, SyncEntityInput

pytestmark = pytest.mark.slow

ABSENT_STORE = 777_777  # a store the shop holds and Mahak never listed


async def _reconcile_all(
    incoming: IncomingSync, run_id: str, page_size: int = PAGE_SIZE
) -> dict[str, EntitySyncResult]:
    return {
        entity: await incoming.reconcile_entity(
            SyncEntityInput(entity=entity, page_size=page_size, run_id=run_id)
        )
        for entity in INCOMING_ORDER
    }


async def _log(pool: asyncpg.Pool, run_id: str) -> dict[str, asyncpg.Record]:
    rows = await pool.fetch("SELECT * FROM mahak_sync_log WHERE run_id = $1", run_id)
    return {row["entity"]: row for row in rows}


async def _row_versions(pool: asyncpg.Pool) -> dict[str, dict[int, tuple[int, str]]]:
    """Per mirror table: id -> (row_version, xmin); an unchanged xmin means not rewritten."""
    result = {}
    for entity in INCOMING_ORDER:
        table = mirror(entity).table
        rows = await pool.fetch(f"SELECT id, row_version, xmin::text AS x FROM {table}")
        result[entity] = {r["id"]: (r["row_version"], r["x"]) for r in rows}
    return result


async def test_reconciliation_restores_what_the_delta_sync_missed(
    sim: SimControl,
    db_pool: asyncpg.Pool,
    simulator: SimulatorServer,
) -> None:
    seeded = await sim.seed(6, stores=2, details_per_product=2)
    async with MahakClient(simulator.base_url, "shop", "secret") as mahak:
        incoming = IncomingSync(db_pool, mahak, lookback=0)
        assert (await incoming.run_cycle(page_size=PAGE_SIZE, run_id="cli-1")).ok
        before = await catalog.get_cursors(db_pool)

        # What a delta sync cannot see: a late commit below the cursor, a row lost from
        # the shop, a row the shop holds in an older version, one Mahak never listed.
        await sim.inject_row(
            "Stores",
            {"StoreId": 9_001, "Name": "late", "Deleted": False},
            row_version=before["stores"] - 1,
        )
        lost = seeded.products[2]
        await db_pool.execute("DELETE FROM mahak_products WHERE id = $1", lost)
        stale = seeded.product_details[1]
        await db_pool.execute(
            "UPDATE mahak_product_details SET row_version = row_version - 1, "
            "barcode = 'stale' WHERE id = $1",
            stale,
        )
        await db_pool.execute(
            "INSERT INTO mahak_stores (id, row_version, name) VALUES ($1, 1, 'gone')", ABSENT_STORE
        )

        delta = await incoming.run_cycle(page_size=PAGE_SIZE, run_id="cli-2")
        assert delta.ok and delta.totals().inserted == delta.totals().updated == 0, (
            "the delta sync (look-back 0) cannot see any of it"
        )

        found = await _reconcile_all(incoming, "reconcile-1")

    assert all(r.ok for r in found.values())
    assert (found["stores"].counts.inserted, found["stores"].absent_in_mahak) == (1, 1)
    assert found["products"].counts.inserted == 1
    assert found["product_details"].counts.updated == 1
    difference = {
        e: r.counts.inserted + r.counts.updated
        for e, r in found.items()
        if r.counts.inserted + r.counts.updated
    }
    assert difference == {"stores": 1, "products": 1, "product_details": 1}
    assert await catalog.get_cursors(db_pool) == before, "the cursors stayed where they were"

    log = await _log(db_pool, "reconcile-1")
    assert set(log) == set(INCOMING_ORDER)
    assert (
        log["stores"]["inserted"],
        log["products"]["inserted"],
        log["product_details"]["updated"],
    ) == (1, 1, 1)
    assert log["stores"]["finished_at"] is not None
    assert str(ABSENT_STORE) in log["stores"]["error"] and "not deleted" in log["stores"]["error"]
    assert log["products"]["error"] is None
    # Reported, not deleted; everything else now mirrors Mahak exactly.
    assert await db_pool.fetchval(
        "SELECT NOT deleted FROM mahak_stores WHERE id = $1", ABSENT_STORE
    )
    await db_pool.execute("DELETE FROM mahak_stores WHERE id = $1", ABSENT_STORE)
    await assert_mirrors_simulator(db_pool, sim)


async def test_reconciliation_never_moves_a_cursor_backwards(
    sim: SimControl,
    db_pool: asyncpg.Pool,
    simulator: SimulatorServer,
) -> None:
    await sim.seed(3)
    async with MahakClient(simulator.base_url, "shop", "secret") as mahak:
        incoming = IncomingSync(db_pool, mahak, lookback=0)
        assert (await incoming.run_cycle(page_size=PAGE_SIZE, run_id="cli-1")).ok
        cursors = await catalog.get_cursors(db_pool)
        ahead = cursors["products"] + 1_000_000
        await catalog.set_cursor(db_pool, "products", ahead)  # beyond anything Mahak holds
        # The newest row of all: the full read passes the stores' cursor.
        new = await sim.inject_row("Stores", {"StoreId": 9_002, "Name": "new", "Deleted": False})

        found = await _reconcile_all(incoming, "reconcile-2")

    after = await catalog.get_cursors(db_pool)
    assert after["products"] == ahead == found["products"].cursor, "not moved backwards"
    assert found["stores"].counts.inserted == 1
    assert after["stores"] == found["stores"].cursor > cursors["stores"], "passed: advanced"
    assert after["stores"] == max(r["RowVersion"] for r in await sim.entities("stores"))
    assert new  # the simulator accepted it
    assert all(after[entity] >= cursor for entity, cursor in cursors.items())


async def test_a_no_change_reconciliation_writes_nothing(
    sim: SimControl,
    db_pool: asyncpg.Pool,
    simulator: SimulatorServer,
) -> None:
    """The dev stack's seeded catalogue (`scripts/dev --seed-products 50`), default page size;
    the time of the no-change full read is printed (`-s`), beside a plain no-change cycle."""
    await sim.seed(50, stores=2, details_per_product=2, pictures_per_product=1)
    page_size = 100  # MAHAK_PAGE_SIZE's default
    async with MahakClient(simulator.base_url, "shop", "secret") as mahak:
        incoming = IncomingSync(db_pool, mahak, lookback=0)
        assert (await incoming.run_cycle(page_size=page_size, run_id="cli-1")).ok
        cursors, stored = await catalog.get_cursors(db_pool), await _row_versions(db_pool)

        began = time.perf_counter()
        delta = await incoming.run_cycle(page_size=page_size, run_id="cli-2")
        plain = time.perf_counter() - began
        began = time.perf_counter()
        found = await _reconcile_all(incoming, "reconcile-3", page_size)
        full = time.perf_counter() - began
        # The default look-back (INCOMING_LOOKBACK_ROWVERSIONS 1000) spans this whole
        # catalogue: the same rows, for comparison.
        began = time.perf_counter()
        assert (
            await IncomingSync(db_pool, mahak, lookback=1000).run_cycle(
                page_size=page_size, run_id="cli-3"
            )
        ).ok
        lookback = time.perf_counter() - began

    assert delta.ok
    rows = sum(r.counts.fetched for r in found.values())
    assert rows == sum(len(v) for v in stored.values()) > 300
    for entity, result in found.items():
        counts = result.counts
        assert result.ok and result.absent_in_mahak == 0, entity
        assert counts.unchanged == counts.fetched, (entity, counts)
        assert counts.inserted == counts.updated == counts.deleted == counts.dead_lettered == 0
    assert await _row_versions(db_pool) == stored, "no mirror row was rewritten"
    assert await catalog.get_cursors(db_pool) == cursors
    log = await _log(db_pool, "reconcile-3")
    assert all(
        row["error"] is None and row["inserted"] == row["updated"] == 0 for row in log.values()
    )
    print(
        f"\nno-change reconciliation: {rows} rows in {len(found)} entities, "
        f"{sum(r.pages for r in found.values())} pages: {full * 1000:.0f} ms "
        f"({full / rows * 1e6:.0f} us/row); no-change cycle: {plain * 1000:.0f} ms "
        f"(look-back 0), {lookback * 1000:.0f} ms (look-back 1000)"
    )


async def test_reconcile_now_through_the_worker(
    start_sync: Any,
    sim: SimControl,
    temporal_client: Client,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    seeded = await sim.seed(4)
    sync = await start_sync(fast_config())
    await sync.cycles(1)
    lost = seeded.products[1]
    await sync.pool.execute("DELETE FROM mahak_products WHERE id = $1", lost)
    before = await catalog.get_cursors(sync.pool)

    # As an operator asks for it: `mahak-sync sync reconcile` (signal `reconcile_now`).
    monkeypatch.setenv("TEMPORAL_ADDRESS", temporal_client.service_client.config.target_host)
    monkeypatch.setenv("TEMPORAL_NAMESPACE", temporal_client.namespace)
    monkeypatch.setattr(incoming_sync_module, "WORKFLOW_ID", sync.handle.id)  # this test's own
    get_settings.cache_clear()
    try:
        args = cli.build_parser().parse_args(["sync", "reconcile"])
        assert await args.func(args) == 0
    finally:
        get_settings.cache_clear()
    assert "reconcile_now sent" in capsys.readouterr().out
    status = await sync.cycles(2)

    cycle = status.last_cycle
    assert cycle is not None and cycle.reconcile and cycle.ok
    assert cycle.run_id.startswith("reconcile-")
    assert cycle.entities["products"].counts.inserted == 1
    assert await sync.pool.fetchval("SELECT count(*) FROM mahak_products WHERE id = $1", lost) == 1
    assert await catalog.get_cursors(sync.pool) == before
    log = await _log(sync.pool, cycle.run_id)
    assert log["products"]["inserted"] == 1
    await assert_mirrors_simulator(sync.pool, sim)


async def test_a_whole_entity_answer_is_stored_a_part_at_a_time(
    sim: SimControl,
    db_pool: asyncpg.Pool,
    simulator: SimulatorServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The reconciliation's answers (no pageSize) are read leanly and stored in parts
    (`PART_ROWS`, here 2), never ending a part inside a run of equal RowVersions: five new
    stores sharing one RowVersion are stored with the rest, and every part's cursor is one
    that passes no row not stored."""
    monkeypatch.setattr(incoming_module, "PART_ROWS", 2)
    await sim.seed(4, stores=3)
    async with MahakClient(simulator.base_url, "shop", "secret") as mahak:
        incoming = IncomingSync(db_pool, mahak, lookback=0)
        assert (await incoming.run_cycle(page_size=PAGE_SIZE, run_id="cli-1")).ok
        shared = (await sim.stats()).row_version + 5
        for i in range(5):
            await sim.inject_row(
                "Stores", {"StoreId": 9_100 + i, "Name": f"run{i}", "Deleted": False}, shared
            )
        await db_pool.execute(
            "DELETE FROM mahak_stores WHERE id = (SELECT min(id) FROM mahak_stores)"
        )

        wire = {r["StoreId"]: r["RowVersion"] for r in await sim.entities("stores")}
        passed: list[tuple[int, set[int]]] = []
        store = catalog.apply_page

        async def checked(db: Any, batch: Any, *, new_cursor: int, **kw: Any) -> Any:
            counts = await store(db, batch, new_cursor=new_cursor, **kw)
            held = {r["id"] for r in await db_pool.fetch("SELECT id FROM mahak_stores")}
            passed.append((new_cursor, {i for i, v in wire.items() if v <= new_cursor} - held))
            return counts

        monkeypatch.setattr(catalog, "apply_page", checked)
        found = await incoming.reconcile_entity(
            SyncEntityInput(entity="stores", page_size=PAGE_SIZE, run_id="reconcile-parts")
        )

    assert [missing for _, missing in passed if missing] == [], passed
    assert found.counts.inserted == 6, found  # the five of the run and the one deleted
    assert found.pages >= 3, "stored in parts"
    assert found.cursor == shared == await catalog.get_cursor(db_pool, "stores")
    await assert_mirrors_simulator(db_pool, sim)
