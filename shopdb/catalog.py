"""Apply fetched Mahak pages to the mirror tables, and the per-entity cursors.

`apply_page` is the only writer of mirrored rows. Everything one page changes (rows,
logical deletes, dead letters, the cursor) commits in ONE transaction: a crash or a lost
connection either keeps the whole page with its cursor or none of it, so the cursor never
moves past unstored data and stored data never lacks its cursor.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from mahak_client.models import EntityBatch
from mahak_sync.config import get_settings
from mahak_sync.logging import get_logger

from . import dead_letters
from .dead_letters import NewDeadLetter
from .mirror import MirrorTable, mirror, to_record
from .models import ApplyCounts, SyncCursor
from .pool import Executor, transaction

log = get_logger(__name__)

# Errors one bad row can cause; anything else (lost connection, cancellation) aborts the page.
_ROW_ERRORS = (
    asyncpg.IntegrityConstraintViolationError,
    asyncpg.DataError,  # SQLSTATE class 22: out of range, invalid text, ...
    asyncpg.CardinalityViolationError,
    ValueError,  # asyncpg's client-side encoding errors (a value the column type cannot take)
    OverflowError,  # an int beyond int64, refused while encoding
)

_Record = tuple[Any, ...]


async def apply_page(
    db: Executor,
    batch: EntityBatch,
    *,
    new_cursor: int,
    run_id: str | None = None,
    price_level: int | None = None,
) -> ApplyCounts:
    """Store one page of `batch.entity` and advance its cursor to at least `new_cursor`.

    Rows whose version is not newer than the stored one count as unchanged; rows that arrive
    with `deleted` set are stored as such and counted as deleted; rejected and unstorable rows
    are dead-lettered. `price_level` (default: SHOP_PRICE_LEVEL) picks product details' shop price.
    """
    if new_cursor < 0:
        raise ValueError("new_cursor must be >= 0")
    m = mirror(batch.entity)
    level = price_level or get_settings().shop_price_level

    # Newest version per id: one statement cannot upsert the same key twice.
    latest: dict[int, tuple[_Record, Any]] = {}
    letters = [
        NewDeadLetter(batch.entity, r.mahak_id, r.row_version, r.raw, r.error) for r in batch.rejected
    ]
    for row in batch.rows:
        record, reason = to_record(m, row, level)
        if record is None:
            letters.append(_letter(m, row, reason or "unstorable"))
            continue
        seen = latest.get(record[0])
        if seen is None or seen[0][1] < record[1]:
            latest[record[0]] = (record, row)

    async with transaction(db) as conn:
        types = await _stage_types(conn, m)
        records = [rec for rec, _row in latest.values()]
        try:
            async with conn.transaction():  # savepoint: a refused bulk write falls back below
                applied = await _bulk_upsert(conn, m, types, records)
        except _ROW_ERRORS as exc:
            log.warning("bulk upsert refused, applying row by row", entity=m.entity,
                        run_id=run_id, error=str(exc)[:300])
            applied, failed = await _upsert_rows(conn, m, types, latest.values())
            letters.extend(failed)
        await dead_letters.record_many(conn, letters, run_id)
        await dead_letters.resolve_superseded(conn, m.entity, m.table)
        await _advance(conn, m.entity, new_cursor)

    rows_failed = len(letters) - len(batch.rejected)
    counts = applied.model_copy(update={
        "unchanged": len(batch.rows) - rows_failed - applied.total,
        "dead_lettered": len(letters),
    })
    log.debug("page applied", entity=m.entity, run_id=run_id, cursor=new_cursor, **counts.model_dump())
    return counts


def _letter(m: MirrorTable, row: Any, reason: str) -> NewDeadLetter:
    mahak_id, row_version = getattr(row, m.id_field, None), getattr(row, "row_version", None)
    return NewDeadLetter(m.entity, _int64(mahak_id), _int64(row_version), row.model_dump(mode="json"), reason)


def _int64(value: Any) -> int | None:
    return value if isinstance(value, int) and -(2**63) <= value < 2**63 else None


async def _stage_types(conn: asyncpg.Connection, m: MirrorTable) -> list[str]:
    """Column types for staging: the table's own, except numeric columns are staged as
    float8 — Mahak sends doubles, and float8 -> numeric in SQL yields 0.1 where asyncpg
    would store the binary expansion 0.1000000000000000055511151231257827...; it is also
    the fastest type to COPY."""
    rows = await conn.fetch(
        """
        SELECT a.attname, format_type(a.atttypid, a.atttypmod) AS type
        FROM pg_attribute a WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped
        """,
        m.table,
    )
    types = {r["attname"]: r["type"] for r in rows}
    return ["double precision" if types[c].startswith("numeric") else types[c] for c in m.columns]


def _upsert_sql(m: MirrorTable, source: str) -> str:
    """Upsert `source` rows, keeping the newer version; answers one row of counts."""
    cols = ", ".join(m.columns)
    updates = ", ".join(f"{c} = excluded.{c}" for c in m.columns[1:])
    return f"""
        WITH up AS (
            INSERT INTO {m.table} AS t ({cols})
            {source}
            ON CONFLICT (id) DO UPDATE SET {updates}, updated_at = now()
            WHERE excluded.row_version > t.row_version
            RETURNING (t.xmax = 0) AS inserted, t.deleted
        )
        SELECT count(*) FILTER (WHERE inserted AND NOT deleted) AS inserted,
               count(*) FILTER (WHERE NOT inserted AND NOT deleted) AS updated,
               count(*) FILTER (WHERE deleted) AS deleted
        FROM up
    """


async def _bulk_upsert(
    conn: asyncpg.Connection, m: MirrorTable, types: list[str], records: list[_Record]
) -> ApplyCounts:
    if not records:
        return ApplyCounts()
    stage = f"_stage_{m.table}"
    cols = ", ".join(m.columns)
    await conn.execute(
        f"CREATE TEMP TABLE {stage} ({', '.join(f'{c} {t}' for c, t in zip(m.columns, types, strict=True))}) "
        "ON COMMIT DROP"
    )
    await conn.copy_records_to_table(stage, records=records, columns=m.columns)
    applied = await conn.fetchrow(_upsert_sql(m, f"SELECT {cols} FROM {stage}"))
    # Dropped now rather than at commit, so a caller's transaction may apply several pages.
    await conn.execute(f"DROP TABLE {stage}")
    return ApplyCounts(**applied)


async def _upsert_rows(
    conn: asyncpg.Connection, m: MirrorTable, types: list[str], rows: Any
) -> tuple[ApplyCounts, list[NewDeadLetter]]:
    """The slow path: each row in its own savepoint, refused rows dead-lettered."""
    params = ", ".join(f"${i}::{t}" for i, t in enumerate(types, start=1))
    sql = _upsert_sql(m, f"VALUES ({params})")
    applied = ApplyCounts()
    failed: list[NewDeadLetter] = []
    for record, row in rows:
        try:
            async with conn.transaction():
                applied += ApplyCounts(**await conn.fetchrow(sql, *record))
        except _ROW_ERRORS as exc:
            failed.append(_letter(m, row, f"{type(exc).__name__}: {exc}"))
    return applied, failed


async def _advance(conn: asyncpg.Connection, entity: str, row_version: int) -> None:
    await conn.execute(
        """
        INSERT INTO mahak_sync_state AS s (entity, last_row_version, last_synced_at)
        VALUES ($1, $2, now())
        ON CONFLICT (entity) DO UPDATE
        SET last_row_version = GREATEST(s.last_row_version, excluded.last_row_version),
            last_synced_at = now()
        """,
        entity, row_version,
    )


async def get_cursors(db: Executor) -> dict[str, int]:
    rows = await db.fetch("SELECT entity, last_row_version FROM mahak_sync_state")
    return {r["entity"]: r["last_row_version"] for r in rows}


async def get_cursor(db: Executor, entity: str) -> int:
    value = await db.fetchval("SELECT last_row_version FROM mahak_sync_state WHERE entity = $1", entity)
    return int(value or 0)


async def set_cursor(db: Executor, entity: str, row_version: int) -> None:
    """Operator override (e.g. a full re-sync from 0): may move the cursor backwards."""
    await db.execute(
        """
        INSERT INTO mahak_sync_state (entity, last_row_version, last_synced_at) VALUES ($1, $2, NULL)
        ON CONFLICT (entity) DO UPDATE SET last_row_version = excluded.last_row_version
        """,
        entity, row_version,
    )


async def sync_state(db: Executor) -> list[SyncCursor]:
    rows = await db.fetch("SELECT * FROM mahak_sync_state ORDER BY entity")
    return [SyncCursor.from_record(r) for r in rows]
