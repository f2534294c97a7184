"""Versioned SQL migrations: `shopdb/migrations/NNNN_name.sql`, applied in order.

Each file runs in its own transaction and is recorded in `schema_migrations` with a checksum,
so re-running is a no-op and an edited, already-applied file is refused rather than
silently diverging. A session advisory lock serialises migrators: when the worker and
`mahak-sync db migrate` start together, the second waits and then finds nothing to do.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from importlib import resources

import asyncpg

from mahak_sync.logging import get_logger

log = get_logger(__name__)

# Arbitrary but fixed: the advisory lock key every mahak-sync migrator agrees on.
_LOCK_KEY = 0x6D61_6861_6B00_0001
_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class MigrationError(RuntimeError):
    pass


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


@dataclass(frozen=True)
class AppliedMigration:
    version: str
    name: str
    applied_at: datetime


def available_migrations() -> list[Migration]:
    found = []
    for entry in resources.files("shopdb").joinpath("migrations").iterdir():
        m = _FILE.match(entry.name)
        if m:
            found.append(Migration(m.group(1), m.group(2), entry.read_text(encoding="utf-8")))
    found.sort(key=lambda mig: mig.version)
    versions = [mig.version for mig in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"duplicate migration versions in {versions}")
    return found


_BOOKKEEPING = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    text PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


async def migrate(
    pool_or_dsn: asyncpg.Pool | asyncpg.Connection | str, *, target: str | None = None
) -> list[str]:
    """Apply pending migrations (up to `target` when given); returns the versions applied."""
    if isinstance(pool_or_dsn, str):
        conn = await asyncpg.connect(pool_or_dsn)
        try:
            return await _migrate(conn, target)
        finally:
            await conn.close()
    if isinstance(pool_or_dsn, asyncpg.Pool):
        async with pool_or_dsn.acquire() as conn:
            return await _migrate(conn, target)
    return await _migrate(pool_or_dsn, target)


async def _migrate(conn: asyncpg.Connection, target: str | None) -> list[str]:
    migrations = [m for m in available_migrations() if target is None or m.version <= target]
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
    try:
        await conn.execute(_BOOKKEEPING)
        done = {
            r["version"]: r["checksum"]
            for r in await conn.fetch("SELECT version, checksum FROM schema_migrations")
        }
        applied: list[str] = []
        for mig in migrations:
            if mig.version in done:
                if done[mig.version] != mig.checksum:
                    raise MigrationError(
                        f"migration {mig.version}_{mig.name} was edited after it was applied; "
                        "add a new migration instead"
                    )
                continue
            async with conn.transaction():
                await conn.execute(mig.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    mig.version,
                    mig.name,
                    mig.checksum,
                )
            log.info("migration applied", version=mig.version, migration=mig.name)
            applied.append(mig.version)
        return applied
    finally:
        if not conn.is_closed():  # a lost session has released its lock already
            await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)


async def applied_migrations(conn: asyncpg.Connection | asyncpg.Pool) -> list[AppliedMigration]:
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not exists:
        return []
    rows = await conn.fetch(
        "SELECT version, name, applied_at FROM schema_migrations ORDER BY version"
    )
    return [AppliedMigration(r["version"], r["name"], r["applied_at"]) for r in rows]
