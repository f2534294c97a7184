"""A throw-away database for a benchmark: on a server the caller names, or on an embedded
PostgreSQL started for the run; dropped (and the server stopped) whatever happens."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg

from shopdb.embedded import EmbeddedPostgres, quote_ident, with_database


@asynccontextmanager
async def scratch_database(
    server_dsn: str | None = None, *, prefix: str = "mahak-bench-"
) -> AsyncIterator[tuple[str, Path]]:
    """(DSN of an empty scratch database, a temporary folder for the run's other files).
    `server_dsn` (a superuser's): create it there; None: on an embedded server of its own."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    server = None
    try:
        if server_dsn is None:
            server = EmbeddedPostgres(folder / "pgdata", delete_on_stop=True)
            server_dsn = await asyncio.to_thread(server.start)
        scratch = f"bench_{uuid.uuid4().hex[:8]}"
        admin = await asyncpg.connect(server_dsn)
        try:
            await admin.execute(f"CREATE DATABASE {quote_ident(scratch)}")
            yield with_database(server_dsn, scratch), folder
        finally:
            await admin.execute(f"DROP DATABASE IF EXISTS {quote_ident(scratch)} WITH (FORCE)")
            await admin.close()
    finally:
        if server is not None:
            await asyncio.to_thread(server.stop)
        shutil.rmtree(folder, ignore_errors=True)
