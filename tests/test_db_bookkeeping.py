"""Sync log, id mapping and operator resolution of dead letters."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from mahak_client.models import EntityBatch, RejectedRow
from shopdb import dead_letters, mapping, synclog
from shopdb.catalog import apply_page
from shopdb.models import SyncLogEntry


async def test_sync_log_keeps_one_row_per_run_and_entity(db_pool: asyncpg.Pool) -> None:
    t0 = datetime(2025, 10, 4, 12, 0, tzinfo=UTC)
    await synclog.record(
        db_pool,
        SyncLogEntry(run_id="r1", entity="products", started_at=t0, fetched=100, inserted=100),
    )
    # The same run reports again when it finishes: the row is replaced, not duplicated.
    final = SyncLogEntry(
        run_id="r1",
        entity="products",
        started_at=t0,
        finished_at=t0 + timedelta(seconds=5),
        fetched=150,
        inserted=140,
        unchanged=5,
        dead_lettered=5,
        error="5 rows dead-lettered",
    )
    await synclog.record(db_pool, final)
    later = SyncLogEntry(run_id="r2", entity="products", started_at=t0 + timedelta(minutes=5))
    await synclog.record(db_pool, later)
    await synclog.record(
        db_pool, SyncLogEntry(run_id="r2", entity="stores", started_at=t0 + timedelta(minutes=4))
    )

    assert await synclog.recent(db_pool, 10, entity="products") == [later, final]
    assert [e.entity for e in await synclog.recent(db_pool, 2)] == ["products", "stores"]


async def test_mapping_is_one_to_one_per_entity(db_pool: asyncpg.Pool) -> None:
    await mapping.set_mapping(db_pool, "people", shop_id=7, mahak_id=9001)
    await mapping.set_mapping(db_pool, "people", shop_id=7, mahak_id=9001)  # idempotent
    await mapping.set_mapping(
        db_pool, "product_details", shop_id=7, mahak_id=5
    )  # other entity: independent
    assert await mapping.mahak_id_for(db_pool, "people", 7) == 9001
    assert await mapping.shop_id_for(db_pool, "people", 9001) == 7
    assert await mapping.mahak_id_for(db_pool, "people", 8) is None
    for shop_id, mahak_id in ((7, 9002), (8, 9001)):
        with pytest.raises(mapping.MappingConflictError):
            await mapping.set_mapping(db_pool, "people", shop_id=shop_id, mahak_id=mahak_id)


async def test_an_operator_resolves_a_dead_letter_once(db_pool: asyncpg.Pool) -> None:
    bad = RejectedRow(
        entity="stores",
        raw={"StoreId": 3, "Name": None},
        error="Name: required",
        mahak_id=3,
        row_version=9,
    )
    await apply_page(db_pool, EntityBatch(entity="stores", rejected=[bad]), new_cursor=9)
    (letter,) = await dead_letters.list_open(db_pool)
    assert await dead_letters.resolve(db_pool, letter.id, "fixed by hand")
    assert not await dead_letters.resolve(db_pool, letter.id)
    assert await dead_letters.list_open(db_pool) == []
    assert await db_pool.fetchval("SELECT resolution FROM mahak_dead_letters") == "fixed by hand"
