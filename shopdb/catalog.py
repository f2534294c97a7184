"""Apply fetched Mahak pages to the mirror tables, and the per-entity cursors.

`apply_page` is the only writer of mirrored rows. Everything one page changes (rows,
logical deletes, dead letters, the cursor) commits in ONE transaction: a crash or a lost
connection either keeps the whole page with its cursor or none of it, so the cursor never
moves past unstored data and stored data never lacks its cursor.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from operator import itemgetter
from typing import Any

import asyncpg

from mahak_client.models import EntityBatch
from mahak_client.types import INT64_MAX, INT64_MIN
from mahak_sync.config import DEFAULT_SHOP_PRICE_LEVEL
from mahak_sync.logging import get_logger

from . import dead_letters, storefront
from .dead_letters import NewDeadLetter
from .mirror import Columns, MirrorTable, copy_text, mirror, to_record
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


async def apply_page(
    db: Executor,
    batch: EntityBatch,
    *,
    new_cursor: int,
    run_id: str | None = None,
    price_level: int = DEFAULT_SHOP_PRICE_LEVEL,
) -> ApplyCounts:
    """Store one page of `batch.entity` and advance its cursor to at least `new_cursor`.

    Rows whose version is not newer than the stored one count as unchanged; rows that arrive
    with `deleted` set are stored as such and counted as deleted; rejected and unstorable rows
    are dead-lettered. `price_level` (SHOP_PRICE_LEVEL) picks product details' shop price.
    """
    if new_cursor < 0:
        raise ValueError("new_cursor must be >= 0")
    m = mirror(batch.entity)
    letters = [
        NewDeadLetter(batch.entity, r.mahak_id, r.row_version, r.raw, r.error)
        for r in batch.rejected
    ]
    rows, columns = _storable(m, batch.rows, price_level, letters)

    async with transaction(db) as conn:
        types = await _column_types(conn, m)
        # Issue 18 hook: decode variant attributes into their columns before the write.
        flagged = await storefront.before_write(conn, m, columns)
        try:
            async with conn.transaction():  # savepoint: a refused bulk write falls back below
                applied = await _bulk_apply(conn, m, types, columns)
        except _ROW_ERRORS as exc:
            log.warning(
                "bulk apply refused, applying row by row",
                entity=m.entity,
                run_id=run_id,
                error=str(exc)[:300] or type(exc).__name__,
            )
            applied, failed = await _upsert_rows(conn, m, types, rows, columns)
            letters.extend(failed)
        await dead_letters.record_many(conn, letters, run_id)
        if applied.total or letters:
            # Only a row stored newer (or a letter just recorded) can supersede a letter: a
            # page that changed nothing (a quiet cycle's look-back window) skips the query.
            await dead_letters.resolve_superseded(conn, m.entity, m.table)
        if applied.total:
            # Issue 18 hook: count decode warnings, NOTIFY the changed ids.
            await storefront.after_page(conn, m, columns[0], flagged, run_id=run_id)
        await _advance(conn, m.entity, new_cursor)

    rows_failed = len(letters) - len(batch.rejected)
    counts = applied.model_copy(
        update={
            "unchanged": len(batch.rows) - rows_failed - applied.total,
            "dead_lettered": len(letters),
        }
    )
    log.debug(
        "page applied", entity=m.entity, run_id=run_id, cursor=new_cursor, **counts.model_dump()
    )
    return counts


def _storable(
    m: MirrorTable, rows: Sequence[Any], level: int, letters: list[NewDeadLetter]
) -> tuple[Sequence[Any], Columns]:
    """The rows that can be stored, newest version per id (one statement cannot write a key
    twice), and their columns. The others are added to `letters`."""
    try:
        columns = m.values(rows, level)
    except Exception:  # some row does not fit its table: sort the page out row by row below
        columns = None
    if columns is None or None in columns[0]:
        keep = []
        for row in rows:
            record, reason = to_record(m, row, level)
            if record is None:
                letters.append(_letter(m, row, reason or "unstorable"))
            else:
                keep.append(row)
        rows, columns = keep, m.values(keep, level)
    ids, versions = columns[0], columns[1]
    if len(set(ids)) < len(ids):
        newest: dict[int, int] = {}
        for i, (mahak_id, version) in enumerate(zip(ids, versions, strict=True)):
            seen = newest.get(mahak_id)
            if seen is None or versions[seen] < version:
                newest[mahak_id] = i
        chosen = list(newest.values())
        rows, columns = [rows[i] for i in chosen], _take(columns, chosen)
    return rows, columns


def _take(columns: Columns, indexes: list[int]) -> Columns:
    """Every column's values at `indexes` (all the rows when there are as many indexes)."""
    if len(indexes) == len(columns[0]):
        return columns
    if len(indexes) == 1:
        return [[values[indexes[0]]] for values in columns]
    pick = itemgetter(*indexes)
    return [list(pick(values)) for values in columns]


def _letter(m: MirrorTable, row: Any, reason: str) -> NewDeadLetter:
    mahak_id, row_version = getattr(row, m.id_field, None), getattr(row, "row_version", None)
    return NewDeadLetter(
        m.entity, _int64(mahak_id), _int64(row_version), row.model_dump(mode="json"), reason
    )


def _int64(value: Any) -> int | None:
    return value if isinstance(value, int) and INT64_MIN <= value <= INT64_MAX else None


# Column types per table. Cached for the process: the schema is the migrations', and they
# run before anything is applied.
_TYPES: dict[str, tuple[str, ...]] = {}


async def _column_types(conn: asyncpg.Connection, m: MirrorTable) -> tuple[str, ...]:
    """The table's column types, in `m.columns` order."""
    if m.table not in _TYPES:
        rows = await conn.fetch(
            """
            SELECT a.attname, format_type(a.atttypid, a.atttypmod) AS type FROM pg_attribute a
            WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped
            """,
            m.table,
        )
        types = {r["attname"]: r["type"] for r in rows}
        _TYPES[m.table] = tuple(types[c] for c in m.columns)
    return _TYPES[m.table]


def _is_numeric(type_: str) -> bool:
    return type_.startswith("numeric")


def _param_types(types: Sequence[str]) -> list[str]:
    """Types to send values as: numeric columns take float8 (what Mahak sends) and the
    server casts, so 0.1 is stored as 0.1 (asyncpg would store the binary expansion
    0.1000000000000000055511151231257827), as `copy_text` writes it."""
    return ["double precision" if _is_numeric(t) else t for t in types]


async def _bulk_apply(
    conn: asyncpg.Connection, m: MirrorTable, types: Sequence[str], columns: Columns
) -> ApplyCounts:
    """Rows not stored yet are COPYed straight into the table, the fastest way in (a row
    another writer inserts meanwhile makes the COPY fail on the primary key, and the caller
    falls back to row by row). Rows stored in an older version go through a staging table
    and the upsert. The rest are unchanged and not touched at all: the upsert alone would
    lock every one of them (a WAL record per row) just to find it is not newer."""
    ids, versions, deleted = columns[:3]
    if not ids:
        return ApplyCounts()
    # One index probe per id. Planned for this page: a plan cached while the table was small
    # or its statistics stale scans the whole table once per id (100 ms and up per page).
    # (LOCAL: until the transaction ends; in a caller's transaction that only costs planning.)
    await conn.execute("SET LOCAL plan_cache_mode = force_custom_plan")
    stored = dict(
        await conn.fetch(
            f"""
        SELECT s.id, t.row_version FROM unnest($1::{types[0]}[]) AS s (id)
        CROSS JOIN LATERAL (SELECT row_version FROM {m.table} t WHERE t.id = s.id OFFSET 0) t
        """,
            ids,
        )
    )
    fresh = [i for i, mahak_id in enumerate(ids) if mahak_id not in stored]
    newer = [
        i
        for i, (mahak_id, version) in enumerate(zip(ids, versions, strict=True))
        if mahak_id in stored and version > stored[mahak_id]
    ]
    numeric = [_is_numeric(t) for t in types]
    applied = ApplyCounts()
    if fresh:
        await _copy(conn, m.table, m.columns, _take(columns, fresh), numeric)
        fresh_deleted = sum(map(deleted.__getitem__, fresh))
        applied = ApplyCounts(inserted=len(fresh) - fresh_deleted, deleted=fresh_deleted)
    if newer:
        # Staged in binary, numbers as float8 (asyncpg's cheapest encoding; the server's cast
        # stores what `copy_text` writes). The table is kept for the session: no catalog
        # changes per page. The upsert empties it for the next page of the same transaction;
        # the commit truncates it, so dead rows never pile up (temp tables are not vacuumed).
        stage, cols = f"_stage_{m.table}", ", ".join(m.columns)
        typed = ", ".join(f"{c} {t}" for c, t in zip(m.columns, _param_types(types), strict=True))
        await conn.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {stage} ({typed}) ON COMMIT DELETE ROWS"
        )
        await conn.copy_records_to_table(
            stage, records=list(zip(*_take(columns, newer))), columns=m.columns
        )
        staged = f"s AS (DELETE FROM {stage} RETURNING {cols})"
        applied += ApplyCounts(**await conn.fetchrow(_upsert_sql(m, "SELECT * FROM s", staged)))
    return applied


_COPY_CHUNK = 500  # rows encoded while the server stores the previous ones


async def _copy(
    conn: asyncpg.Connection,
    table: str,
    names: Sequence[str],
    columns: Columns,
    numeric: list[bool],
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(columns[0]), _COPY_CHUNK):
            yield copy_text([values[start : start + _COPY_CHUNK] for values in columns], numeric)

    await conn.copy_to_table(table, source=chunks(), columns=names)


def _upsert_sql(m: MirrorTable, source: str, ctes: str = "") -> str:
    """Upsert `source` rows, keeping the newer version; answers one row of counts."""
    cols = ", ".join(m.columns)
    updates = ", ".join(f"{c} = excluded.{c}" for c in m.columns[1:])
    return f"""
        WITH {ctes + "," if ctes else ""} up AS (
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


async def _upsert_rows(
    conn: asyncpg.Connection,
    m: MirrorTable,
    types: Sequence[str],
    rows: Sequence[Any],
    columns: Columns,
) -> tuple[ApplyCounts, list[NewDeadLetter]]:
    """The slow path: each row in its own savepoint, refused rows dead-lettered."""
    params = ", ".join(f"${i}::{t}" for i, t in enumerate(_param_types(types), start=1))
    sql = _upsert_sql(m, f"VALUES ({params})")
    applied = ApplyCounts()
    failed: list[NewDeadLetter] = []
    for row, record in zip(rows, zip(*columns), strict=True):
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
        entity,
        row_version,
    )


async def stored_versions(db: Executor, ids: dict[str, Sequence[int]]) -> dict[str, dict[int, int]]:
    """The stored RowVersion of each of `ids` (per entity) the shop holds, in one query."""
    wanted = {entity: list(set(values)) for entity, values in ids.items() if values}
    found: dict[str, dict[int, int]] = {entity: {} for entity in ids}
    if not wanted:
        return found
    async with transaction(db) as conn:
        parts = []
        for n, entity in enumerate(wanted, start=1):
            m = mirror(entity)
            id_type = (await _column_types(conn, m))[0]
            # The same index probe per id as `_bulk_apply`, for the same reason.
            parts.append(
                f"SELECT {n} AS k, s.id, t.row_version FROM unnest(${n}::{id_type}[]) AS s (id) "
                f"CROSS JOIN LATERAL (SELECT row_version FROM {m.table} t "
                f"WHERE t.id = s.id OFFSET 0) t"
            )
        await conn.execute("SET LOCAL plan_cache_mode = force_custom_plan")
        names = list(wanted)
        for row in await conn.fetch(" UNION ALL ".join(parts), *wanted.values()):
            found[names[row["k"] - 1]][row["id"]] = row["row_version"]
    return found


async def touch_cursors(db: Executor, entities: Sequence[str]) -> None:
    """Record that `entities` were read up to their cursors just now (what `apply_page`
    records of a page that changed nothing), the cursors unmoved."""
    await db.execute(
        "UPDATE mahak_sync_state SET last_synced_at = now() WHERE entity = ANY($1::text[])",
        list(entities),
    )


async def get_cursors(db: Executor) -> dict[str, int]:
    rows = await db.fetch("SELECT entity, last_row_version FROM mahak_sync_state")
    return {r["entity"]: r["last_row_version"] for r in rows}


async def get_cursor(db: Executor, entity: str) -> int:
    value = await db.fetchval(
        "SELECT last_row_version FROM mahak_sync_state WHERE entity = $1", entity
    )
    return int(value or 0)


async def set_cursor(db: Executor, entity: str, row_version: int) -> None:
    """Operator override (e.g. a full re-sync from 0): may move the cursor backwards."""
    await db.execute(
        """
        INSERT INTO mahak_sync_state (entity, last_row_version, last_synced_at) VALUES ($1, $2, NULL)
        ON CONFLICT (entity) DO UPDATE SET last_row_version = excluded.last_row_version
        """,
        entity,
        row_version,
    )


async def sync_state(db: Executor) -> list[SyncCursor]:
    rows = await db.fetch("SELECT * FROM mahak_sync_state ORDER BY entity")
    return [SyncCursor.from_record(r) for r in rows]
