"""Connection pools, and the one way the service reaches its shop database.

`DATABASE_URL` wins when set; otherwise dev starts the embedded PostgreSQL under the data
directory, so `mahak-sync` works on a fresh machine with nothing installed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeAlias

import asyncpg

from mahak_sync.config import Settings

from .embedded import start_embedded

# Every repository function accepts either: a pool for one-off calls, or a connection so the
# caller can compose several calls in its own transaction.
Executor: TypeAlias = asyncpg.Pool | asyncpg.Connection


async def create_pool(
    dsn: str, *, min_size: int = 1, max_size: int = 10, **kwargs: Any
) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size, **kwargs)
    assert pool is not None
    return pool


@asynccontextmanager
async def transaction(db: Executor) -> AsyncIterator[asyncpg.Connection]:
    """A transaction on `db`: a fresh one from a pool, or a (possibly nested) one on a connection."""
    if isinstance(db, asyncpg.Pool):
        async with db.acquire() as conn, conn.transaction():
            yield conn
    else:
        async with db.transaction():
            yield db


class NoDatabaseConfigured(RuntimeError):
    """No `DATABASE_URL`, and no embedded database where the settings point: a command run
    from the wrong folder must not quietly create a new, empty one."""

    def __init__(self, data_dir: Path) -> None:
        super().__init__(
            f"no DATABASE_URL, and no dev stack database under {data_dir.resolve()}: set "
            "DATABASE_URL, or run this from the project folder (MAHAK_SYNC_DATA_DIR) where "
            "`mahak-sync dev` keeps its database"
        )
        self.data_dir = data_dir


@asynccontextmanager
async def database_dsn(settings: Settings, *, create: bool = False) -> AsyncIterator[str]:
    """The DSN of the shop database: `DATABASE_URL`, or the embedded dev server (started
    for the duration of the block). A new embedded database is made only with `create`
    (the worker, `db migrate`); otherwise `NoDatabaseConfigured`."""
    if settings.database_url is not None:
        yield settings.database_url.get_secret_value()
        return
    data_dir = Path(settings.data_dir) / "postgres"
    if not create and not data_dir.exists():
        raise NoDatabaseConfigured(Path(settings.data_dir))
    embedded, dsn = await start_embedded(data_dir)
    try:
        yield dsn
    finally:
        await asyncio.to_thread(embedded.stop)


@asynccontextmanager
async def open_database(
    settings: Settings, *, migrate: bool | None = None, create: bool = False
) -> AsyncIterator[asyncpg.Pool]:
    """The shop database pool for this process; migrated first when configured to
    (`MIGRATE_ON_START`, or `migrate` when given). `create`: see `database_dsn`."""
    from .migrate import migrate as run_migrations

    async with database_dsn(settings, create=create) as dsn:
        if settings.migrate_on_start if migrate is None else migrate:
            await run_migrations(dsn)
        pool = await create_pool(
            dsn, min_size=settings.database_pool_min_size, max_size=settings.database_pool_max_size
        )
        try:
            yield pool
        finally:
            await pool.close()
