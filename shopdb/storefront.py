"""The storefront's read model (issue 18): what `apply_page` does after storing a page.

Inside the page's transaction, after its rows are written and before its cursor moves:

- product details just written get their `properties` decoded into `attributes` (names and
  values) by the migration's `mahak_decode_properties`; a code no live property description
  names stays in `unknown_attributes`, is logged at WARNING and counted in the run's
  `mahak_sync_log.warnings`;
- when property descriptions change (renamed, added, deleted), every detail whose decoding
  changes with them is decoded again;
- the ids the page changed are announced with `NOTIFY` on `CHANGES_CHANNEL`, as JSON
  `{"entity": ..., "ids": [...]}`, batched under PostgreSQL's payload limit. NOTIFY is
  transactional: listeners hear of a page only once it is committed, and never of a page
  rolled back.

Also the catalog rules the order send shares: the effective tax and charge percent of a
line and the person group of new customers, read from the mirror.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from mahak_sync.logging import get_logger

from .mirror import MirrorTable
from .pool import Executor

log = get_logger(__name__)

CHANGES_CHANNEL = "mahak_catalog_changed"
# PostgreSQL refuses payloads of 8000 bytes or more; leave room for the envelope.
MAX_PAYLOAD_BYTES = 7900

PRODUCT_DETAILS = "product_details"
PROPERTY_DESCRIPTIONS = "property_descriptions"
_SAMPLE = 20  # ids named in a warning


async def after_page(
    conn: asyncpg.Connection, m: MirrorTable, ids: Sequence[Any], *, run_id: str | None
) -> list[int]:
    """Decode, count warnings and notify for one stored page; returns the ids it changed."""
    changed = await changed_ids(conn, m.table, ids)
    if not changed:
        return []
    if m.entity == PRODUCT_DETAILS:
        unknown = await _decode(conn, changed)
        if unknown:
            await _warn(conn, m.entity, unknown, run_id)
    elif m.entity == PROPERTY_DESCRIPTIONS:
        redecoded, unknown = await _redecode_all(conn)
        if unknown:
            await _warn(conn, PRODUCT_DETAILS, unknown, run_id)
        await notify(conn, PRODUCT_DETAILS, redecoded)
    await notify(conn, m.entity, changed)
    return changed


async def changed_ids(conn: asyncpg.Connection, table: str, ids: Sequence[Any]) -> list[int]:
    """The ids of `ids` written in this transaction. Every write of a mirrored row sets
    `updated_at` to now() (the transaction's start time, the same for all its statements),
    and rows written by earlier transactions carry an earlier time."""
    if not ids:
        return []
    rows = await conn.fetch(
        f"SELECT id FROM {table} WHERE id = ANY($1::bigint[]) AND updated_at = now() ORDER BY id",
        list(ids),
    )
    return [r["id"] for r in rows]


_DECODE = """
    WITH decoded AS (
        SELECT s.id, s.deleted, x.attributes, x.unknown
        FROM mahak_product_details s
        CROSS JOIN LATERAL mahak_decode_properties(s.properties) x
        WHERE {where}
    )
    UPDATE mahak_product_details d
    SET attributes = decoded.attributes, unknown_attributes = decoded.unknown{touch}
    FROM decoded
    WHERE d.id = decoded.id {only_changed}
    RETURNING d.id, d.deleted, decoded.unknown::text AS unknown
"""


async def _decode(conn: asyncpg.Connection, ids: list[int]) -> dict[int, str]:
    """Decode the given details; returns the live ones left with unknown codes."""
    rows = await conn.fetch(
        _DECODE.format(where="s.id = ANY($1::bigint[])", touch="", only_changed=""), ids
    )
    return _unknown(rows)


async def _redecode_all(conn: asyncpg.Connection) -> tuple[list[int], dict[int, str]]:
    """Decode every detail again after the descriptions changed; only rows whose decoding
    differs are written (and announced)."""
    rows = await conn.fetch(
        _DECODE.format(
            where="s.properties IS NOT NULL AND btrim(s.properties) NOT IN ('', '[]')",
            touch=", updated_at = now()",
            only_changed="AND (d.attributes, d.unknown_attributes) "
            "IS DISTINCT FROM (decoded.attributes, decoded.unknown)",
        )
    )
    return sorted(r["id"] for r in rows), _unknown(rows)


def _unknown(rows: Sequence[asyncpg.Record]) -> dict[int, str]:
    return {r["id"]: r["unknown"] for r in rows if not r["deleted"] and r["unknown"] != "[]"}


async def _warn(
    conn: asyncpg.Connection, entity: str, unknown: dict[int, str], run_id: str | None
) -> None:
    sample = sorted(unknown)[:_SAMPLE]
    log.warning(
        "storefront.unknown_property_codes",
        entity=entity,
        run_id=run_id,
        details=len(unknown),
        ids=sample,
        unknown={i: unknown[i] for i in sample[:5]},
    )
    if run_id is None:
        return
    # The run's sync-log row may not exist yet (it is written after each page); its other
    # figures are written over by `synclog.record`, which leaves `warnings` alone.
    await conn.execute(
        """
        INSERT INTO mahak_sync_log AS l (run_id, entity, started_at, warnings)
        VALUES ($1, $2, now(), $3)
        ON CONFLICT (run_id, entity) DO UPDATE SET warnings = l.warnings + excluded.warnings
        """,
        run_id,
        entity,
        len(unknown),
    )


def payloads(entity: str, ids: Sequence[int], limit: int = MAX_PAYLOAD_BYTES) -> list[str]:
    """`{"entity": ..., "ids": [...]}` messages covering `ids`, each under `limit` bytes."""
    head = f'{{"entity":{json.dumps(entity)},"ids":['
    messages: list[str] = []
    parts: list[str] = []
    size = len(head.encode()) + 2  # "]}"
    for value in ids:
        text = str(int(value))
        extra = len(text) + (1 if parts else 0)
        if parts and size + extra > limit:
            messages.append(head + ",".join(parts) + "]}")
            parts, size = [], len(head.encode()) + 2
            extra = len(text)
        parts.append(text)
        size += extra
    if parts:
        messages.append(head + ",".join(parts) + "]}")
    return messages


async def notify(conn: Executor, entity: str, ids: Sequence[int]) -> None:
    for payload in payloads(entity, ids):
        await conn.execute("SELECT pg_notify($1, $2)", CHANGES_CHANNEL, payload)


# --- Rules the order send shares with the catalog --------------------------------------------


async def effective_percents(
    db: Executor, product_detail_ids: Sequence[int]
) -> dict[int, tuple[float, float]]:
    """(tax %, charge %) of each product detail by `mahak_effective_percent`, the rule the
    catalog shows: Mahak's Settings fill in where the product says 0. Details the mirror
    does not hold are left out."""
    rows = await db.fetch(
        """
        SELECT d.id,
               mahak_effective_percent(p.tax_percent, 14001) AS tax,
               mahak_effective_percent(p.charge_percent, 14000) AS charge
        FROM mahak_product_details d JOIN mahak_products p ON p.id = d.product_id
        WHERE d.id = ANY($1::bigint[])
        """,
        list(product_detail_ids),
    )
    return {r["id"]: (float(r["tax"]), float(r["charge"])) for r in rows}


@dataclass(frozen=True)
class TaxDefaults:
    """What Mahak's Settings say about a line's tax and charge: whether tax is on (14008) and
    the default percents (14001 tax, 14000 charge; None where the mirror has no value)."""

    enabled: bool = True
    tax_percent: float | None = None
    charge_percent: float | None = None


async def tax_defaults(db: Executor) -> TaxDefaults:
    row = await db.fetchrow(
        """
        SELECT mahak_setting_number(14008) AS enabled, mahak_setting_number(14001) AS tax,
               mahak_setting_number(14000) AS charge
        """
    )
    if row is None:
        return TaxDefaults()
    return TaxDefaults(
        enabled=row["enabled"] is None or row["enabled"] != 0,
        tax_percent=None if row["tax"] is None else float(row["tax"]),
        charge_percent=None if row["charge"] is None else float(row["charge"]),
    )


async def default_person_group(db: Executor) -> int | None:
    """The first live person group in the mirror (lowest id), as §10 (b) defaults it."""
    value = await db.fetchval(
        "SELECT id FROM mahak_person_groups WHERE NOT deleted ORDER BY id LIMIT 1"
    )
    return None if value is None else int(value)
