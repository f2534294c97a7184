"""`apply_page` against the real PostgreSQL: upsert paths, dead letters, cursor atomicity."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import asyncpg
import pytest

from mahak_client.models import (
    EntityBatch,
    Person,
    Picture,
    ProductDetail,
    ProductDetailStoreAsset,
    RejectedRow,
    Store,
)
from shopdb import dead_letters
from shopdb.catalog import apply_page, get_cursor, get_cursors, set_cursor
from shopdb.models import ApplyCounts


def detail(id_: int, rv: int, *, deleted: bool = False, **prices: Any) -> ProductDetail:
    return ProductDetail(
        product_detail_id=id_,
        product_id=id_ // 10,
        row_version=rv,
        deleted=deleted,
        price1=prices.pop("price1", 1000.5),
        **prices,
    )


def batch(entity: str, rows: list[Any], rejected: list[RejectedRow] | None = None) -> EntityBatch:
    return EntityBatch(entity=entity, rows=rows, rejected=rejected or [])


async def stored(
    pool: asyncpg.Pool, table: str = "mahak_product_details"
) -> dict[int, asyncpg.Record]:
    return {r["id"]: r for r in await pool.fetch(f"SELECT * FROM {table}")}


async def test_insert_update_older_version_and_delete_paths(db_pool: asyncpg.Pool) -> None:
    first = await apply_page(
        db_pool,
        batch("product_details", [detail(1, 10), detail(2, 11), detail(3, 12)]),
        new_cursor=12,
        price_level=1,
    )
    assert first == ApplyCounts(inserted=3)
    rows = await stored(db_pool)
    assert rows[1]["price1"] == Decimal("1000.5") and rows[1]["row_version"] == 10

    second = await apply_page(
        db_pool,
        batch(
            "product_details",
            [
                detail(1, 20, price1=2000.0),  # newer: updated
                detail(2, 5, price1=1.0),  # older than stored: ignored
                detail(3, 12, price1=3.0),  # same version: ignored
                detail(4, 21, deleted=True),  # new and already deleted: stored as deleted
                detail(2, 22, deleted=True) if False else detail(5, 22),  # plain insert
            ],
        ),
        new_cursor=22,
        price_level=1,
    )
    assert second == ApplyCounts(inserted=1, updated=1, unchanged=2, deleted=1)
    rows = await stored(db_pool)
    assert rows[1]["price1"] == Decimal("2000") and rows[1]["row_version"] == 20
    assert rows[2]["price1"] == Decimal("1000.5") and rows[2]["row_version"] == 11
    assert rows[3]["price1"] == Decimal("1000.5")
    assert rows[4]["deleted"] is True and rows[5]["deleted"] is False

    third = await apply_page(
        db_pool,
        batch("product_details", [detail(2, 30, deleted=True)]),
        new_cursor=30,
        price_level=1,
    )
    assert third == ApplyCounts(deleted=1)
    rows = await stored(db_pool)
    assert rows[2]["deleted"] is True and rows[2]["row_version"] == 30  # logical: the row stays
    assert rows[2]["updated_at"] > rows[2]["created_at"]
    assert await get_cursor(db_pool, "product_details") == 30


async def test_shop_price_follows_the_configured_level(db_pool: asyncpg.Pool) -> None:
    row = detail(7, 1, price1=100.0, price4=450.25, price10=9.0)
    await apply_page(db_pool, batch("product_details", [row]), new_cursor=1, price_level=4)
    got = (await stored(db_pool))[7]
    assert (got["shop_price"], got["shop_price_level"]) == (Decimal("450.25"), 4)
    assert [got[f"price{n}"] for n in (1, 4, 10)] == [Decimal(100), Decimal("450.25"), Decimal(9)]


async def test_duplicates_within_a_page_keep_the_newest_version(db_pool: asyncpg.Pool) -> None:
    counts = await apply_page(
        db_pool,
        batch(
            "product_details", [detail(1, 3, price1=3.0), detail(1, 9, price1=9.0), detail(1, 5)]
        ),
        new_cursor=9,
        price_level=1,
    )
    assert counts == ApplyCounts(inserted=1, unchanged=2)
    assert (await stored(db_pool))[1]["price1"] == Decimal(9)


async def test_stock_rows_are_kept_per_detail_and_store(db_pool: asyncpg.Pool) -> None:
    rows = [
        ProductDetailStoreAsset(
            product_detail_store_asset_id=i,
            product_detail_id=50,
            store_id=i,
            count1=i * 1.5,
            row_version=i,
        )
        for i in (1, 2)
    ]
    assert await apply_page(
        db_pool, batch("product_detail_store_assets", rows), new_cursor=2
    ) == ApplyCounts(inserted=2)
    got = await db_pool.fetch(
        "SELECT store_id, count1 FROM mahak_stock WHERE product_detail_id = 50 ORDER BY 1"
    )
    assert [(r["store_id"], r["count1"]) for r in got] == [(1, Decimal("1.5")), (2, Decimal("3.0"))]


async def test_rejected_and_unstorable_rows_are_dead_lettered_without_losing_the_page(
    db_pool: asyncpg.Pool,
) -> None:
    rejected = RejectedRow(
        entity="people",
        raw={"PersonId": "x", "RowVersion": 40},
        error="PersonId: not int",
        row_version=40,
    )
    rows = [
        Person(person_id=1, first_name="Ali", row_version=41),
        Person(person_id=None, first_name="no id", row_version=42),  # no primary key
        Person(
            person_id=2, first_name="bad\x00text", row_version=43
        ),  # PostgreSQL text cannot hold NUL
        Person(
            person_id=3, first_name="negative version", row_version=-1
        ),  # CHECK violation in the bulk write
        Person(person_id=4, first_name="Sara", row_version=44),
    ]
    counts = await apply_page(
        db_pool, batch("people", rows, [rejected]), new_cursor=44, run_id="run-1"
    )
    assert counts == ApplyCounts(inserted=2, dead_lettered=4)
    assert set(await stored(db_pool, "mahak_people")) == {1, 4}
    assert await get_cursor(db_pool, "people") == 44

    letters = {
        (d.mahak_id, d.row_version): d
        for d in await dead_letters.list_open(db_pool, entity="people")
    }
    assert set(letters) == {(None, 40), (None, 42), (2, 43), (3, -1)}
    assert letters[(None, 40)].payload == {"PersonId": "x", "RowVersion": 40}
    assert "0x00" in letters[(2, 43)].reason
    assert "CheckViolation" in letters[(3, -1)].reason
    assert letters[(None, 42)].payload["first_name"] == "no id"
    assert all(d.seen_count == 1 and d.last_run_id == "run-1" for d in letters.values())

    # Seen again (e.g. a re-sync from 0): the same letters are bumped, not duplicated.
    again = await apply_page(
        db_pool, batch("people", rows, [rejected]), new_cursor=44, run_id="run-2"
    )
    assert again == ApplyCounts(unchanged=2, dead_lettered=4)
    reseen = await dead_letters.list_open(db_pool, entity="people")
    assert len(reseen) == 4
    assert all(
        d.seen_count == 2 and d.last_run_id == "run-2" and d.last_seen >= d.first_seen
        for d in reseen
    )

    # Mahak fixes the record: the new version is stored and the older letter resolves itself.
    fixed = await apply_page(
        db_pool,
        batch("people", [Person(person_id=2, first_name="fixed", row_version=50)]),
        new_cursor=50,
    )
    assert fixed == ApplyCounts(inserted=1)
    open_ids = {d.mahak_id for d in await dead_letters.list_open(db_pool, entity="people")}
    assert 2 not in open_ids
    resolution = await db_pool.fetchval(
        "SELECT resolution FROM mahak_dead_letters WHERE mahak_id = 2"
    )
    assert resolution == "superseded"


async def test_values_the_column_type_refuses_fall_back_to_row_by_row(
    db_pool: asyncpg.Pool,
) -> None:
    pictures = [
        Picture(picture_id=1, row_version=1, width=640),
        Picture(picture_id=2, row_version=2, width=2**40),  # fits int64, not the integer column
        Picture(picture_id=3, row_version=3, width=10),
        Picture(
            picture_id=4, row_version=4, file_size=2**70
        ),  # not even int64: refused client-side
    ]
    counts = await apply_page(db_pool, batch("pictures", pictures), new_cursor=4)
    assert counts == ApplyCounts(inserted=2, dead_lettered=2)
    assert set(await stored(db_pool, "mahak_pictures")) == {1, 3}
    letters = {d.mahak_id: d for d in await dead_letters.list_open(db_pool, entity="pictures")}
    assert set(letters) == {2, 4}
    assert "int32" in letters[2].reason and "int64" in letters[4].reason
    assert await get_cursor(db_pool, "pictures") == 4


async def test_cursor_only_moves_forward_unless_an_operator_resets_it(
    db_pool: asyncpg.Pool,
) -> None:
    await apply_page(db_pool, batch("stores", [Store(store_id=1, row_version=100)]), new_cursor=100)
    await apply_page(db_pool, batch("stores", []), new_cursor=60)  # a stale page cannot rewind
    assert await get_cursors(db_pool) == {"stores": 100}
    await set_cursor(db_pool, "stores", 0)  # full re-sync
    assert await get_cursor(db_pool, "stores") == 0
    assert await get_cursor(db_pool, "products") == 0


async def test_several_pages_in_a_callers_transaction(db_pool: asyncpg.Pool) -> None:
    async with db_pool.acquire() as conn, conn.transaction():
        for rv in (1, 2):
            await apply_page(
                conn, batch("stores", [Store(store_id=rv, row_version=rv)]), new_cursor=rv
            )
    assert set(await stored(db_pool, "mahak_stores")) == {1, 2}


@pytest.mark.parametrize("how", ["terminate", "cancel"])
async def test_a_page_killed_mid_transaction_stores_neither_rows_nor_cursor(
    db_pool: asyncpg.Pool, db_dsn: str, how: str
) -> None:
    await set_cursor(db_pool, "product_details", 5)
    page = batch("product_details", [detail(i, 100 + i) for i in range(1, 501)])
    observer = await asyncpg.connect(db_dsn)
    try:
        # Hold the cursor row so the apply transaction stops after writing its rows,
        # right before advancing the cursor: the worst moment to die.
        blocker = observer.transaction()
        await blocker.start()
        await observer.execute(
            "SELECT * FROM mahak_sync_state WHERE entity = 'product_details' FOR UPDATE"
        )
        task = asyncio.create_task(apply_page(db_pool, page, new_cursor=600, price_level=1))
        pid = None
        for _ in range(200):
            # (from outside the observer's transaction: activity stats are snapshotted per transaction)
            pid = await db_pool.fetchval(
                "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%mahak_sync_state%'"
            )
            if pid:
                break
            await asyncio.sleep(0.02)
        assert pid, "apply_page never reached the cursor update"
        # Its rows are written but uncommitted: invisible to everyone else.
        assert await observer.fetchval("SELECT count(*) FROM mahak_product_details") == 0
        if how == "terminate":
            assert await observer.fetchval("SELECT pg_terminate_backend($1)", pid)
            with pytest.raises(
                (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, ConnectionError)
            ):
                await task
        else:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        await blocker.rollback()
    finally:
        await observer.close()

    assert await db_pool.fetchval("SELECT count(*) FROM mahak_product_details") == 0
    assert await get_cursor(db_pool, "product_details") == 5

    # Retrying the page stores both.
    counts = await apply_page(db_pool, page, new_cursor=600, price_level=1)
    assert counts == ApplyCounts(inserted=500)
    assert await db_pool.fetchval("SELECT count(*) FROM mahak_product_details") == 500
    assert await get_cursor(db_pool, "product_details") == 600


async def test_a_rejected_row_with_a_lone_surrogate_is_still_kept(db_pool: asyncpg.Pool) -> None:
    # JSON may carry "\ud800", which decodes to a lone surrogate that UTF-8 and jsonb refuse.
    raw = {"PersonId": 9, "FirstName": "bad\ud800name", "RowVersion": 60}
    rejected = RejectedRow(
        entity="people", raw=raw, error="FirstName: bad text", mahak_id=9, row_version=60
    )
    counts = await apply_page(
        db_pool, batch("people", [Person(person_id=1, row_version=59)], [rejected]), new_cursor=60
    )
    assert counts == ApplyCounts(inserted=1, dead_lettered=1)
    [letter] = await dead_letters.list_open(db_pool, entity="people")
    assert letter.payload["FirstName"] == "bad\ufffdname"
    assert await get_cursor(db_pool, "people") == 60


@pytest.mark.parametrize(
    "spelled",
    [
        ["2026-12-03T09:57:54.6168990", "2010-07-01T12:00:00", "2026-03-21T00:30:00.5"],
        # Before 1946 Tehran kept local mean time, +03:25:44: an offset with seconds.
        ["2026-12-03T09:57:54.6168990", "1930-01-01T12:00:00"],
    ],
)
async def test_mahak_times_are_stored_as_the_instants_they_name(
    db_pool: asyncpg.Pool, spelled: list[str]
) -> None:
    """Tehran wall-clock times (summer time until 2022, local mean time before 1946) reach
    the timestamptz column as the same instants (issue 16: the COPY text writes them with
    their own offset, seconds included, rather than converted to UTC)."""
    rows = [
        ProductDetail.model_validate(
            {"ProductDetailId": i, "ProductId": 1, "RowVersion": 10 + i, "CreateDate": text}
        )
        for i, text in enumerate(spelled, start=1)
    ]
    await apply_page(db_pool, batch("product_details", rows), new_cursor=20, price_level=1)
    held = await stored(db_pool)
    for row in rows:
        assert row.create_date is not None
        assert held[row.product_detail_id]["mahak_created_at"] == row.create_date
    assert (
        await db_pool.fetchval(
            "SELECT mahak_created_at AT TIME ZONE 'Asia/Tehran' FROM mahak_product_details"
            " WHERE id = 1"
        )
    ).isoformat() == "2026-12-03T09:57:54.616899"
