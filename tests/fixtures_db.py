"""PostgreSQL for the test run: ONE embedded server per session (temp dir, unix socket),
and a fresh database per test cloned from a migrated template (a clone takes milliseconds,
migrating each time would not).

Fixtures:
- `pg_server`: DSN of the server's maintenance database (superuser).
- `db_dsn`: DSN of a fresh, fully migrated database for this test (dropped afterwards).
- `db_pool`: an asyncpg pool (`shopdb.pool.create_pool`) on that database.
- `empty_db_dsn`: DSN of a fresh EMPTY database, for migration tests.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest_asyncio

from shopdb.embedded import EmbeddedPostgres, quote_ident, with_database
from shopdb.migrate import migrate
from shopdb.pool import create_pool

_TEMPLATE = "mahak_template"

# Durability is worthless for throw-away test data; skipping fsync makes DDL and clones fast.
_TEST_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


def _memory_dir() -> str | None:
    # On tmpfs a database clone takes ~15 ms instead of ~400 ms on disk.
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else None


@pytest_asyncio.fixture(scope="session")
async def pg_server() -> AsyncIterator[str]:
    root = Path(tempfile.mkdtemp(prefix="mahak-pg-", dir=_memory_dir()))
    server = EmbeddedPostgres(root / "pgdata", delete_on_stop=True)
    try:
        dsn = await asyncio.to_thread(server.start)
        conn = await asyncpg.connect(dsn)
        try:
            for name, value in _TEST_SETTINGS.items():
                await conn.execute(f"ALTER SYSTEM SET {name} = '{value}'")
            await conn.execute("SELECT pg_reload_conf()")
            await conn.execute(f"CREATE DATABASE {_TEMPLATE}")
        finally:
            await conn.close()
        await migrate(with_database(dsn, _TEMPLATE))
        yield dsn
    finally:
        await asyncio.to_thread(server.stop)
        shutil.rmtree(root, ignore_errors=True)


async def _fresh_database(server_dsn: str, template: str) -> str:
    name = f"t_{uuid.uuid4().hex[:16]}"
    conn = await asyncpg.connect(server_dsn)
    try:
        await conn.execute(
            f"CREATE DATABASE {quote_ident(name)} TEMPLATE {quote_ident(template)} STRATEGY FILE_COPY"
        )
    finally:
        await conn.close()
    return name


async def _drop_database(server_dsn: str, name: str) -> None:
    conn = await asyncpg.connect(server_dsn)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE)")
    finally:
        await conn.close()


@pytest_asyncio.fixture
async def db_dsn(pg_server: str) -> AsyncIterator[str]:
    name = await _fresh_database(pg_server, _TEMPLATE)
    try:
        yield with_database(pg_server, name)
    finally:
        await _drop_database(pg_server, name)


@pytest_asyncio.fixture
async def db_pool(db_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(db_dsn, min_size=1, max_size=10)
    try:
        yield pool
    finally:
        await pool.close()


@pytest_asyncio.fixture
async def empty_db_dsn(pg_server: str) -> AsyncIterator[str]:
    name = await _fresh_database(pg_server, "template0")
    try:
        yield with_database(pg_server, name)
    finally:
        await _drop_database(pg_server, name)
