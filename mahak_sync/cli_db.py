"""`mahak-sync db`: migrate the shop database and show its sync state."""

from __future__ import annotations

import argparse

from shopdb.catalog import sync_state
from shopdb.migrate import applied_migrations, available_migrations, migrate
from shopdb.pool import database_dsn, open_database

from .config import get_settings


def register(subparsers: argparse._SubParsersAction) -> None:
    db = subparsers.add_parser("db", help="shop database: migrations and sync state")
    sub = db.add_subparsers(dest="db_command", metavar="COMMAND", required=True)

    p = sub.add_parser("migrate", help="apply pending migrations (safe to run concurrently)")
    p.add_argument("--target", help="stop after this version (e.g. 0002)")
    p.set_defaults(func=_migrate)

    p = sub.add_parser("status", help="applied and pending migrations, per-entity cursors")
    p.set_defaults(func=_status)


async def _migrate(args: argparse.Namespace) -> int:
    async with database_dsn(get_settings(), create=True) as dsn:
        applied = await migrate(dsn, target=args.target)
    print(f"applied {len(applied)} migration(s)" + (f": {', '.join(applied)}" if applied else ""))
    return 0


async def _status(args: argparse.Namespace) -> int:
    async with open_database(get_settings(), migrate=False) as pool:
        done = await applied_migrations(pool)
        tables_exist = await pool.fetchval("SELECT to_regclass('mahak_sync_state') IS NOT NULL")
        cursors = await sync_state(pool) if tables_exist else []
    applied = {m.version for m in done}
    print("migrations:")
    for m in done:
        print(f"  {m.version}  {m.name:<24} applied {m.applied_at:%Y-%m-%d %H:%M:%S%z}")
    pending = [m for m in available_migrations() if m.version not in applied]
    for m in pending:
        print(f"  {m.version}  {m.name:<24} PENDING")
    print("cursors:")
    if not cursors:
        print("  (none yet)")
    for c in cursors:
        synced = f"{c.last_synced_at:%Y-%m-%d %H:%M:%S%z}" if c.last_synced_at else "never"
        print(f"  {c.entity:<28} row version {c.last_row_version:<14} last synced {synced}")
    return 1 if pending else 0
