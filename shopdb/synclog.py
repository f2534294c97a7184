"""Sync history: one `mahak_sync_log` row per sync run and entity, for operators."""

from __future__ import annotations

from .models import SyncLogEntry
from .pool import Executor

_FIELDS = tuple(SyncLogEntry.model_fields)


# Paging-guard counts (migration 0006): rows re-read without pageSize, rows dropped.
_PAGING = ("reread", "dropped")


def _upsert(names: list[str]) -> str:
    cols = ", ".join(names)
    params = ", ".join(f"${i}" for i in range(1, len(names) + 1))
    updates = ", ".join(f"{f} = excluded.{f}" for f in names if f not in ("run_id", "entity"))
    return (
        f"INSERT INTO mahak_sync_log ({cols}) VALUES ({params}) "
        f"ON CONFLICT (run_id, entity) DO UPDATE SET {updates}"
    )


async def record(
    db: Executor, entry: SyncLogEntry, *, reread: int | None = None, dropped: int | None = None
) -> None:
    """Insert, or replace the figures of, this run's row for this entity (so a run may
    record its progress after each page and again when it finishes). `reread`/`dropped`
    (None: left as they are) are the paging guards' counts."""
    names = list(_FIELDS)
    values = [getattr(entry, f) for f in _FIELDS]
    for name, value in zip(_PAGING, (reread, dropped), strict=True):
        if value is not None:
            names.append(name)
            values.append(value)
    await db.execute(_upsert(names), *values)


async def record_many(db: Executor, entries: list[SyncLogEntry]) -> None:
    """`record` of several rows in one round trip, the paging guards' counts set to 0."""
    if entries:
        await db.executemany(
            _upsert([*_FIELDS, *_PAGING]),
            [[*(getattr(entry, f) for f in _FIELDS), 0, 0] for entry in entries],
        )


async def recent(db: Executor, limit: int = 50, *, entity: str | None = None) -> list[SyncLogEntry]:
    rows = await db.fetch(
        f"""
        SELECT {", ".join(_FIELDS)} FROM mahak_sync_log
        WHERE $2::text IS NULL OR entity = $2
        ORDER BY started_at DESC, id DESC LIMIT $1
        """,
        limit,
        entity,
    )
    return [SyncLogEntry.from_record(r) for r in rows]
