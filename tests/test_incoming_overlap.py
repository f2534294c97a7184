"""Fetch and apply overlap in the incoming sync (issue 16): the next page is fetched while
the current one is stored, one page ahead at most, against the simulator over HTTP and a
real PostgreSQL. What matters: the overlap happens, an error fetching the next page leaves
exactly the pages applied before it stored with their cursor, and a cancelled sync leaves
no fetch running behind it."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, cast

import asyncpg
import pytest

from activities.incoming import IncomingSync
from mahak_client.client import MahakClient
from mahak_client.errors import MahakTransientError
from mahak_client.models import EntityBatch
from mahak_simulator.control import SimControl
from mahak_simulator.server import SimulatorServer
from shopdb import catalog
from workflows.incoming_types import EntityProgress, SyncEntityInput

pytestmark = pytest.mark.slow

PAGE_SIZE = 4  # 12 products: several pages


class Recorded:
    """The real client, each GetAllData noted in `events` as it starts; the request numbered
    `fail_at` raises a transient error, the one numbered `block_at` waits until cancelled."""

    def __init__(
        self, mahak: MahakClient, events: list[str], *, fail_at: int = 0, block_at: int = 0
    ) -> None:
        self.mahak, self.events = mahak, events
        self.fail_at, self.block_at = fail_at, block_at
        self.requests = 0
        self.blocked = asyncio.Event()
        self.cancelled = False

    async def get_all_data(
        self, from_versions: Mapping[str, int], *, page_size: int | None = None
    ) -> dict[str, EntityBatch]:
        self.requests += 1
        self.events.append(f"fetch {self.requests}")
        if self.requests == self.fail_at:
            raise MahakTransientError("Mahak went away", endpoint="GetAllData")
        if self.requests == self.block_at:
            self.blocked.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.cancelled = True
                raise
        return await self.mahak.get_all_data(from_versions, page_size=page_size)


def noting(events: list[str], seen: list[EntityProgress]) -> Any:
    def on_progress(progress: EntityProgress) -> None:
        if progress.pages:
            events.append(f"applied {progress.pages}")
            seen.append(progress.model_copy(deep=True))

    return on_progress


async def stored(db: asyncpg.Pool) -> list[tuple[int, int]]:
    rows = await db.fetch("SELECT id, row_version FROM mahak_products ORDER BY id")
    return [(r["id"], r["row_version"]) for r in rows]


async def test_the_next_page_is_fetched_while_the_current_one_is_applied(
    sim: SimControl, db_pool: asyncpg.Pool, simulator: SimulatorServer
) -> None:
    seeded = await sim.seed(12, pictures_per_product=0, people=0)
    events: list[str] = []
    seen: list[EntityProgress] = []
    async with MahakClient(simulator.base_url, "shop", "secret") as mahak:
        sync = IncomingSync(db_pool, cast(MahakClient, Recorded(mahak, events)), lookback=0)
        result = await sync.sync_entity(
            SyncEntityInput(entity="products", page_size=PAGE_SIZE, run_id="overlap"),
            on_progress=noting(events, seen),
        )
    assert result.pages >= 3
    # Page 2 was asked for before page 1 was stored, and never more than one page ahead.
    assert events.index("fetch 2") < events.index("applied 1"), events
    for n in range(1, result.pages):
        if f"fetch {n + 2}" in events:
            assert events.index(f"fetch {n + 2}") > events.index(f"applied {n}"), events
    assert sorted(i for i, _ in await stored(db_pool)) == sorted(seeded.products)
    assert await catalog.get_cursor(db_pool, "products") == result.cursor


async def test_a_failed_prefetch_leaves_the_applied_page_and_its_cursor(
    sim: SimControl, db_pool: asyncpg.Pool, simulator: SimulatorServer
) -> None:
    """Fetching page 2 fails while page 1 is being stored: page 1 is stored whole with its
    cursor, nothing beyond it, and the error is the sync's."""
    await sim.seed(12, pictures_per_product=0, people=0)
    events: list[str] = []
    seen: list[EntityProgress] = []
    async with MahakClient(simulator.base_url, "shop", "secret") as mahak:
        client = Recorded(mahak, events, fail_at=2)
        sync = IncomingSync(db_pool, cast(MahakClient, client), lookback=0)
        with pytest.raises(MahakTransientError, match="went away"):
            await sync.sync_entity(
                SyncEntityInput(entity="products", page_size=PAGE_SIZE, run_id="overlap"),
                on_progress=noting(events, seen),
            )
    assert events[:3] == ["fetch 1", "fetch 2", "applied 1"], "the failure came mid-apply"
    assert len(seen) == 1, "no page after the failed fetch"
    page1 = seen[0]
    rows = await stored(db_pool)
    assert len(rows) == page1.counts.inserted > 0
    assert max(v for _, v in rows) == page1.cursor
    assert await catalog.get_cursor(db_pool, "products") == page1.cursor
    assert client.requests == 2, "nothing fetched after the failure"


async def test_a_cancelled_sync_leaves_no_fetch_running(
    sim: SimControl, db_pool: asyncpg.Pool, simulator: SimulatorServer
) -> None:
    await sim.seed(12, pictures_per_product=0, people=0)
    events: list[str] = []
    seen: list[EntityProgress] = []
    before = asyncio.all_tasks()
    async with MahakClient(simulator.base_url, "shop", "secret") as mahak:
        client = Recorded(mahak, events, block_at=2)
        sync = IncomingSync(db_pool, cast(MahakClient, client), lookback=0)
        task = asyncio.create_task(
            sync.sync_entity(
                SyncEntityInput(entity="products", page_size=PAGE_SIZE, run_id="overlap"),
                on_progress=noting(events, seen),
            )
        )
        await asyncio.wait_for(client.blocked.wait(), timeout=30)
        while not seen:  # page 1 stored while page 2 hangs
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert client.cancelled, "the fetch in flight was cancelled, not left behind"
        # A fetch left behind would wait forever; what else the cancel left (asyncpg
        # handing a connection back to its pool) ends by itself.
        leftover = asyncio.all_tasks() - before - {asyncio.current_task()}
        if leftover:
            _done, pending = await asyncio.wait(leftover, timeout=5)
            assert not pending, pending
    assert await catalog.get_cursor(db_pool, "products") == seen[0].cursor
    assert len(await stored(db_pool)) == seen[0].counts.inserted
