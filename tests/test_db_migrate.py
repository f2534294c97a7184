"""Migrations against the real embedded PostgreSQL: from empty, re-run, concurrent, refused."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from shopdb import migrate as migrate_mod
from shopdb.migrate import (
    Migration,
    MigrationError,
    applied_migrations,
    available_migrations,
    migrate,
)

# The public table names (contract C): the shop's own application reads these.
CONTRACT_TABLES = {
    "mahak_stores",
    "mahak_categories",
    "mahak_products",
    "mahak_product_details",
    "mahak_visitor_products",
    "mahak_stock",
    "mahak_pictures",
    "mahak_photo_galleries",
    "mahak_orders",
    "mahak_order_details",
    "mahak_people",
    "mahak_sync_state",
    "mahak_mapping",
    "mahak_sync_log",
    "mahak_dead_letters",
    "shop_orders",
    "shop_order_lines",
    "shop_customers",
    "shop_stock_movements",
    "notification_outbox",
}


async def _tables(conn: asyncpg.Connection) -> set[str]:
    rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    return {r["tablename"] for r in rows}


async def _schema(conn: asyncpg.Connection) -> set[tuple[str, ...]]:
    """Every table column, view definition and index of the public schema."""
    columns = await conn.fetch(
        "SELECT table_name, column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = 'public'"
    )
    views = await conn.fetch(
        "SELECT viewname, definition FROM pg_views WHERE schemaname = 'public'"
    )
    indexes = await conn.fetch(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'"
    )
    return (
        {("column", *r.values()) for r in columns}
        | {("view", *r.values()) for r in views}
        | {("index", *r.values()) for r in indexes}
    )


async def test_every_migration_applies_in_turn_from_empty(empty_db_dsn: str) -> None:
    versions = [m.version for m in available_migrations()]
    assert versions == sorted(versions) and len(versions) >= 3
    conn = await asyncpg.connect(empty_db_dsn)
    try:
        assert await _tables(conn) == set()
        seen: set[str] = set()
        schema: set[tuple[str, ...]] = set()
        for version in versions:
            assert await migrate(conn, target=version) == [version]
            tables = await _tables(conn)
            assert tables >= seen, f"migration {version} dropped a table"
            after = await _schema(conn)
            assert after != schema, f"migration {version} changed nothing"
            seen, schema = tables, after
        assert CONTRACT_TABLES <= seen
        assert [m.version for m in await applied_migrations(conn)] == versions
    finally:
        await conn.close()


async def test_rerunning_migrations_is_a_no_op(empty_db_dsn: str) -> None:
    everything = [m.version for m in available_migrations()]
    assert await migrate(empty_db_dsn) == everything
    assert await migrate(empty_db_dsn) == []
    conn = await asyncpg.connect(empty_db_dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM schema_migrations") == len(everything)
    finally:
        await conn.close()


async def test_concurrent_migrators_apply_each_migration_once(empty_db_dsn: str) -> None:
    results = await asyncio.gather(*(migrate(empty_db_dsn) for _ in range(4)))
    everything = [m.version for m in available_migrations()]
    # One migrator did all the work; the others waited on the lock and found nothing to do.
    assert sorted(results, key=len) == [[], [], [], everything]
    conn = await asyncpg.connect(empty_db_dsn)
    try:
        rows = await conn.fetch("SELECT version FROM schema_migrations ORDER BY version")
        assert [r["version"] for r in rows] == everything
        assert CONTRACT_TABLES <= await _tables(conn)
    finally:
        await conn.close()


async def test_a_failing_migration_leaves_nothing_behind(
    empty_db_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = available_migrations()
    broken = Migration("9999", "broken", "CREATE TABLE half_done (id int); SELECT 1/0;")
    monkeypatch.setattr(migrate_mod, "available_migrations", lambda: [*good, broken])
    with pytest.raises(asyncpg.DivisionByZeroError):
        await migrate(empty_db_dsn)
    conn = await asyncpg.connect(empty_db_dsn)
    try:
        tables = await _tables(conn)
        assert "half_done" not in tables and CONTRACT_TABLES <= tables
        assert (
            await conn.fetchval("SELECT count(*) FROM schema_migrations WHERE version = '9999'")
            == 0
        )
        # The lock was released: another migrator is not blocked.
        assert await conn.fetchval("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == 0
    finally:
        await conn.close()


async def test_an_edited_applied_migration_is_refused(db_dsn: str) -> None:
    conn = await asyncpg.connect(db_dsn)
    try:
        await conn.execute(
            "UPDATE schema_migrations SET checksum = 'tampered' WHERE version = '0001'"
        )
        with pytest.raises(MigrationError, match="edited"):
            await migrate(conn)
    finally:
        await conn.close()


async def test_client_ids_are_derived_from_the_row_ids(db_pool: asyncpg.Pool) -> None:
    customer = await db_pool.fetchval(
        "INSERT INTO shop_customers (first_name) VALUES ('a') RETURNING id"
    )
    order = await db_pool.fetchrow(
        "INSERT INTO shop_orders (customer_id, amount) VALUES ($1, 10) RETURNING id, order_client_id, sync_status",
        customer,
    )
    assert order["order_client_id"] == 8_000_000_000_000_000 + order["id"]
    assert order["sync_status"] == "pending"
    line = await db_pool.fetchrow(
        """INSERT INTO shop_order_lines (order_id, product_detail_id, store_id, quantity, unit_price)
           VALUES ($1, 5, 1, 1, 10) RETURNING id, order_detail_client_id""",
        order["id"],
    )
    assert line["order_detail_client_id"] == 8_100_000_000_000_000 + line["id"]
    with pytest.raises(asyncpg.CheckViolationError):
        await db_pool.execute(
            "UPDATE shop_orders SET sync_status = 'bogus' WHERE id = $1", order["id"]
        )
