"""The quiet cycle's check (issue 16): `IncomingSync.sync_entities` reads every entity's
look-back window in one GetAllData, ids and RowVersions only, and records the entities that
show no change without parsing or storing their rows; every other entity is read and stored in
full (`sync_entity`). What it records must be what the full read records, and it must never
call an entity unchanged that is not (late commits, a shop row older than Mahak's, rows
above the cursor, a list a page size or a silent server cap may have cut).

Against the Mahak simulator over HTTP and a real PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime

import asyncpg
import pytest

from activities.incoming import IncomingSync
from mahak_client.client import MahakClient
from mahak_client.models import INCOMING_ORDER
from mahak_simulator.control import SeedResult, SimControl
from mahak_simulator.server import SimulatorServer
from shopdb import catalog
from tests.test_incoming_e2e import assert_mirrors_simulator
from workflows.incoming_types import (
    ResetCursorRequest,
    SyncEntitiesInput,
    SyncEntitiesResult,
    SyncEntityInput,
)

pytestmark = pytest.mark.slow

LOOKBACK = 4  # RowVersions: a few rows of the last entities written fall in the window
WHOLE = 10**9  # a window that holds every row of every entity


@pytest.fixture
async def mahak(simulator: SimulatorServer) -> AsyncIterator[MahakClient]:
    async with MahakClient(simulator.base_url, "shop", "secret") as client:
        yield client


async def _synced(
    sim: SimControl, pool: asyncpg.Pool, mahak: MahakClient, lookback: int = LOOKBACK, **seed: int
) -> tuple[IncomingSync, SeedResult]:
    """A catalogue seeded and synced in full once, as a worker's first cycle does."""
    seeded = await sim.seed(**seed)
    incoming = IncomingSync(pool, mahak, lookback=lookback)
    assert (await incoming.run_cycle(page_size=None, run_id="first")).ok
    return incoming, seeded


async def _get_all_data_requests(sim: SimControl) -> int:
    return sum(n for name, n in (await sim.stats()).requests.items() if "GetAllData" in name)


async def _quick(
    incoming: IncomingSync, run_id: str, page_size: int | None = None
) -> SyncEntitiesResult:
    return await incoming.sync_entities(
        SyncEntitiesInput(
            entities=list(INCOMING_ORDER), page_size=page_size, run_id=run_id, budget_seconds=60
        )
    )


async def _log_counts(pool: asyncpg.Pool, run_id: str) -> dict[str, tuple[int, ...]]:
    rows = await pool.fetch(
        "SELECT entity, fetched, inserted, updated, unchanged, deleted, dead_lettered, "
        "finished_at IS NOT NULL AS finished FROM mahak_sync_log WHERE run_id = $1",
        run_id,
    )
    return {r["entity"]: tuple(r.values())[1:] for r in rows}


async def _synced_at(pool: asyncpg.Pool) -> dict[str, datetime]:
    rows = await pool.fetch("SELECT entity, last_synced_at FROM mahak_sync_state")
    return {r["entity"]: r["last_synced_at"] for r in rows}


async def test_a_quiet_cycle_is_one_request_and_records_what_the_full_read_records(
    sim: SimControl, db_pool: asyncpg.Pool, mahak: MahakClient
) -> None:
    incoming, _ = await _synced(sim, db_pool, mahak, products=4, details_per_product=2)
    cursors = await catalog.get_cursors(db_pool)
    synced_at = await _synced_at(db_pool)
    requests = await _get_all_data_requests(sim)

    quiet = await _quick(incoming, "quiet")

    assert await _get_all_data_requests(sim) - requests == 1, "one GetAllData for every entity"
    assert [r.entity for r in quiet.results] == list(INCOMING_ORDER)
    windows = {r.entity: r.counts.fetched for r in quiet.results}
    assert sum(windows.values()) > 0, "the look-back windows hold rows to compare"
    for result in quiet.results:
        assert result.counts.unchanged == result.counts.fetched
        assert result.counts.inserted == result.counts.updated == result.counts.deleted == 0
        assert result.cursor == cursors.get(result.entity, 0)
    assert await catalog.get_cursors(db_pool) == cursors
    touched = await _synced_at(db_pool)
    for entity, fetched in windows.items():
        if fetched:
            assert touched[entity] > synced_at[entity], f"{entity}: last_synced_at kept"

    # The full read of the same windows (one activity per entity, as before the check)
    # records the same figures, entity by entity.
    for entity in INCOMING_ORDER:
        await incoming.sync_entity(SyncEntityInput(entity=entity, page_size=None, run_id="full"))
    assert await _log_counts(db_pool, "quiet") == await _log_counts(db_pool, "full")
    await assert_mirrors_simulator(db_pool, sim)


def _changed(result: SyncEntitiesResult) -> dict[str, tuple[int, int]]:
    return {
        r.entity: (r.counts.inserted, r.counts.updated)
        for r in result.results
        if r.counts.inserted or r.counts.updated
    }


async def test_a_late_commit_in_the_window_is_stored(
    sim: SimControl, db_pool: asyncpg.Pool, mahak: MahakClient
) -> None:
    incoming, _ = await _synced(sim, db_pool, mahak, lookback=WHOLE, products=3)
    cursor = await catalog.get_cursor(db_pool, "stores")
    await sim.inject_row(
        "Stores", {"StoreId": 9_001, "Name": "late", "Deleted": False}, row_version=cursor - 1
    )

    result = await _quick(incoming, "late")

    assert _changed(result) == {"stores": (1, 0)}
    assert await db_pool.fetchval("SELECT name FROM mahak_stores WHERE id = 9001") == "late"
    assert await catalog.get_cursor(db_pool, "stores") == cursor
    await assert_mirrors_simulator(db_pool, sim)


async def test_a_row_the_shop_holds_older_is_stored_again(
    sim: SimControl, db_pool: asyncpg.Pool, mahak: MahakClient
) -> None:
    # Products are not the longest list (two details each), so nothing but the stale row
    # sends them to the full read.
    incoming, seeded = await _synced(
        sim, db_pool, mahak, lookback=WHOLE, products=4, details_per_product=2
    )
    stale = seeded.products[1]
    await db_pool.execute(
        "UPDATE mahak_products SET row_version = row_version - 1, name = 'stale' WHERE id = $1",
        stale,
    )

    result = await _quick(incoming, "stale")

    assert _changed(result) == {"products": (0, 1)}
    assert await db_pool.fetchval("SELECT name FROM mahak_products WHERE id = $1", stale) != "stale"
    await assert_mirrors_simulator(db_pool, sim)


async def test_a_change_above_the_cursor_is_stored(
    sim: SimControl, db_pool: asyncpg.Pool, mahak: MahakClient
) -> None:
    incoming, seeded = await _synced(sim, db_pool, mahak, products=3)
    await sim.set_price(seeded.product_details[0], 1, 777)

    result = await _quick(incoming, "price")

    assert _changed(result) == {"product_details": (0, 1)}
    await assert_mirrors_simulator(db_pool, sim)


@pytest.mark.parametrize("cut", ["page_size", "server_cap"])
async def test_a_window_that_may_have_been_cut_is_read_in_full(
    cut: str, sim: SimControl, db_pool: asyncpg.Pool, mahak: MahakClient
) -> None:
    """Windows holding the whole entity, capped below its length by `pageSize` (2) or by a
    silent server cap (3, seen by the first sync): the capped list shows only rows the shop
    holds, and the change above them must still arrive."""
    if cut == "server_cap":
        await sim.configure(server_cap=3)
    incoming, seeded = await _synced(
        sim, db_pool, mahak, lookback=WHOLE, products=4, details_per_product=2
    )
    await sim.set_price(seeded.product_details[-1], 1, 777)

    result = await _quick(incoming, "cut", page_size=2 if cut == "page_size" else None)

    assert _changed(result) == {"product_details": (0, 1)}
    await assert_mirrors_simulator(db_pool, sim)


async def test_a_failed_check_leaves_every_entity_to_the_full_read(
    sim: SimControl, db_pool: asyncpg.Pool, mahak: MahakClient
) -> None:
    incoming, seeded = await _synced(sim, db_pool, mahak, products=3)
    await sim.set_price(seeded.product_details[0], 1, 777)
    faults = (await sim.stats()).faults_injected
    await sim.add_fault(status_code=503, count=1, endpoints=["GetAllDataV2"])

    result = await _quick(incoming, "fault")

    assert (await sim.stats()).faults_injected == faults + 1, "the check's request failed"
    assert [r.entity for r in result.results] == list(INCOMING_ORDER)
    assert _changed(result) == {"product_details": (0, 1)}
    assert set(await _log_counts(db_pool, "fault")) == set(INCOMING_ORDER)
    await assert_mirrors_simulator(db_pool, sim)


async def test_a_cursor_reset_by_an_operator_is_read_forwards_again(
    sim: SimControl, db_pool: asyncpg.Pool, mahak: MahakClient
) -> None:
    """Every row above a reset cursor is held by the shop already: the entity still goes
    through the full read, which moves the cursor forwards again (re-reading is what an
    operator resets a cursor for)."""
    incoming, _ = await _synced(sim, db_pool, mahak, products=3)
    cursor = await catalog.get_cursor(db_pool, "products")
    await incoming.reset_cursor(ResetCursorRequest(entity="products", row_version=0))

    result = await _quick(incoming, "reset")

    products = next(r for r in result.results if r.entity == "products")
    assert products.cursor == cursor and products.counts.unchanged == 3
    assert await catalog.get_cursor(db_pool, "products") == cursor
