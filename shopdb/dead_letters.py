"""Quarantine for Mahak rows that could not be stored.

A row lands here when it does not validate (the client's `RejectedRow`) or when the
database refuses it. Nothing is dropped silently: operators list open dead letters, fix
the data in Mahak (which re-emits the row with a new version and resolves the letter
automatically) or resolve them by hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg

from .models import DeadLetter, to_json
from .pool import Executor


@dataclass(frozen=True)
class NewDeadLetter:
    entity: str
    mahak_id: int | None
    row_version: int | None
    payload: dict[str, Any]
    reason: str


_UPSERT = """
INSERT INTO mahak_dead_letters (entity, mahak_id, row_version, payload, reason, last_run_id)
VALUES ($1, $2, $3, $4::text::jsonb, $5, $6)
ON CONFLICT (entity, dedup_key) DO UPDATE
SET last_seen = now(),
    seen_count = mahak_dead_letters.seen_count + 1,
    reason = excluded.reason,
    last_run_id = coalesce(excluded.last_run_id, mahak_dead_letters.last_run_id)
"""


async def record_many(
    conn: asyncpg.Connection, letters: list[NewDeadLetter], run_id: str | None
) -> None:
    if letters:
        await conn.executemany(
            _UPSERT,
            [
                (d.entity, d.mahak_id, d.row_version, to_json(d.payload), _text(d.reason), run_id)
                for d in letters
            ],
        )


def _text(reason: str) -> str:
    return reason[:2000].replace("\x00", "\ufffd")  # text columns cannot hold NUL either


async def resolve_superseded(conn: asyncpg.Connection, entity: str, table: str) -> int:
    """Close open letters whose record is now stored in a newer version."""
    status = await conn.execute(
        f"""
        UPDATE mahak_dead_letters d
        SET resolved = true, resolved_at = now(), resolution = 'superseded'
        FROM {table} t
        WHERE d.entity = $1 AND NOT d.resolved AND t.id = d.mahak_id AND d.row_version < t.row_version
        """,
        entity,
    )
    return int(status.split()[-1])


async def list_open(
    db: Executor, *, entity: str | None = None, limit: int = 100
) -> list[DeadLetter]:
    rows = await db.fetch(
        """
        SELECT * FROM mahak_dead_letters
        WHERE NOT resolved AND ($1::text IS NULL OR entity = $1)
        ORDER BY last_seen DESC LIMIT $2
        """,
        entity,
        limit,
    )
    return [DeadLetter.from_record(r) for r in rows]


async def resolve(
    db: Executor, dead_letter_id: int, resolution: str = "resolved by operator"
) -> bool:
    status = await db.execute(
        """
        UPDATE mahak_dead_letters SET resolved = true, resolved_at = now(), resolution = $2
        WHERE id = $1 AND NOT resolved
        """,
        dead_letter_id,
        resolution,
    )
    return status.endswith(" 1")


# --- Operator views (`mahak-sync dead-letters ...`) --------------------------------------------


async def get(db: Executor, dead_letter_id: int) -> DeadLetter | None:
    row = await db.fetchrow("SELECT * FROM mahak_dead_letters WHERE id = $1", dead_letter_id)
    return DeadLetter.from_record(row) if row is not None else None


async def open_ids(db: Executor, *, entity: str | None = None) -> list[int]:
    """Every open letter's id, oldest first."""
    rows = await db.fetch(
        """
        SELECT id FROM mahak_dead_letters
        WHERE NOT resolved AND ($1::text IS NULL OR entity = $1) ORDER BY id
        """,
        entity,
    )
    return [r["id"] for r in rows]


async def stored_version(db: Executor, table: str, mahak_id: int) -> int | None:
    """The RowVersion the mirror table `table` holds for `mahak_id` (None: no row)."""
    value = await db.fetchval(f"SELECT row_version FROM {table} WHERE id = $1", mahak_id)
    return None if value is None else int(value)
