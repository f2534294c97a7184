"""The storefront's read model (issue 18): what `apply_page` does with a page, inside the
page's transaction (before its rows are written, and after, before its cursor moves):

- product details get their `properties` decoded into `attributes` (names and values,
  `decode`) before they are written (`before_write`), so a page is written once; an element
  no live property description names stays in `unknown_attributes`, and each detail stored
  with one is logged at WARNING and counted in the run's `mahak_sync_log.warnings`;
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

from mahak_client.types import normalize_text
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


async def before_write(
    conn: asyncpg.Connection, m: MirrorTable, columns: list[list[Any]]
) -> dict[int, str]:
    """For a page of product details: decode each row's `properties` into the `attributes`
    and `unknown_attributes` columns (in place, so the one write stores them). Returns the
    live rows left with unknown elements: id -> those elements as JSON."""
    if m.entity != PRODUCT_DETAILS or not columns[0]:
        return {}
    at = {name: i for i, name in enumerate(m.columns)}
    names = await _names(conn)
    attributes: list[str] = []
    unknowns: list[str] = []
    flagged: dict[int, str] = {}
    seen: dict[str | None, tuple[str, str]] = {}  # variants often repeat their properties
    for row_id, deleted, properties in zip(
        columns[0], columns[at["deleted"]], columns[at["properties"]], strict=True
    ):
        encoded = seen.get(properties)
        if encoded is None:
            encoded = seen[properties] = _encoded(properties, names)
        attributes.append(encoded[0])
        unknowns.append(encoded[1])
        if encoded[1] != _NONE and not deleted:
            flagged[row_id] = encoded[1]
    columns[at["attributes"]] = attributes
    columns[at["unknown_attributes"]] = unknowns
    return flagged


_EMPTY, _NONE = "{}", "[]"


def _encoded(properties: str | None, names: dict[str, str]) -> tuple[str, str]:
    """`decode` as the columns' JSON text."""
    if properties is None or properties.strip() in ("", _NONE):
        return _EMPTY, _NONE
    named, unknown = decode(properties, names)
    return (
        json.dumps(named, ensure_ascii=False) if named else _EMPTY,
        json.dumps(unknown, ensure_ascii=False) if unknown else _NONE,
    )


async def after_page(
    conn: asyncpg.Connection,
    m: MirrorTable,
    ids: Sequence[Any],
    flagged: dict[int, str],
    *,
    run_id: str | None,
) -> list[int]:
    """Count warnings and notify for one stored page; returns the ids it changed.

    `flagged` is what `before_write` found: only the rows this page really wrote count."""
    changed = await changed_ids(conn, m.table, ids)
    if not changed:
        return []
    unknown = {i: flagged[i] for i in changed if i in flagged}
    if unknown:
        await _warn(conn, m.entity, unknown, run_id)
    if m.entity == PROPERTY_DESCRIPTIONS:
        redecoded, still = await _redecode_all(conn)
        if still:
            await _warn(conn, PRODUCT_DETAILS, still, run_id)
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


_DESCRIPTIONS = """
    SELECT DISTINCT ON (code) code, coalesce(nullif(name, ''), nullif(title, '')) AS name
    FROM mahak_property_descriptions
    WHERE NOT deleted AND code IS NOT NULL
    ORDER BY code, row_version DESC
"""


async def _names(conn: asyncpg.Connection) -> dict[str, str]:
    """Attribute names by PropertyDescriptionCode (as text): the newest live description."""
    return {str(r["code"]): r["name"] for r in await conn.fetch(_DESCRIPTIONS) if r["name"]}


def _code(value: Any) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def _value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return str(normalize_text(value))
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return format(value, "g") if isinstance(value, float) else str(value)
    return json.dumps(value, ensure_ascii=False)


def decode(properties: str | None, names: dict[str, str]) -> tuple[dict[str, str], list[Any]]:
    """`properties` (a JSON array of `{"C": <PropertyDescriptionCode>, "V": <value>}`,
    shared/mahak-api.md §3) as {name: value}, and the elements no name is known for (text
    that is not such JSON is kept whole). Values are trimmed, Arabic ي/ك written as Persian
    ی/ک, as every mirrored name is."""
    if properties is None or not properties.strip():
        return {}, []
    try:
        parsed = json.loads(properties)
    except ValueError:
        return {}, [properties]
    if isinstance(parsed, dict):
        parsed = [parsed]
    if not isinstance(parsed, list):
        return {}, [parsed]
    attributes: dict[str, str] = {}
    unknown: list[Any] = []
    for element in parsed:
        name = None
        if isinstance(element, dict):
            code = _code(element.get("C", element.get("c")))
            name = names.get(code) if code is not None else None
        if name is None:
            unknown.append(element)
        else:
            attributes[name] = _value(element.get("V", element.get("v")))
    return attributes, unknown


# Details with properties (the others keep the column defaults: nothing to decode).
_DETAILS_WITH_PROPERTIES = """
    SELECT id, deleted, properties, attributes::text AS attributes,
           unknown_attributes::text AS unknown
    FROM mahak_product_details
    WHERE properties IS NOT NULL AND btrim(properties) NOT IN ('', '[]')
"""


async def _redecode_all(conn: asyncpg.Connection) -> tuple[list[int], dict[int, str]]:
    """Decode every detail again after the descriptions changed; only the rows whose decoding
    differs are written (their `updated_at` moved: announced like any change). Returns the
    ids written and, of those, the live ones left with unknown elements."""
    names = await _names(conn)
    ids: list[int] = []
    attributes: list[str] = []
    unknowns: list[str] = []
    flagged: dict[int, str] = {}
    for row in await conn.fetch(_DETAILS_WITH_PROPERTIES):
        named, unknown = decode(row["properties"], names)
        if (named, unknown) == (json.loads(row["attributes"]), json.loads(row["unknown"])):
            continue
        ids.append(row["id"])
        attributes.append(json.dumps(named, ensure_ascii=False))
        unknowns.append(json.dumps(unknown, ensure_ascii=False))
        if unknown and not row["deleted"]:
            flagged[row["id"]] = unknowns[-1]
    if ids:
        await conn.execute(
            """
            UPDATE mahak_product_details d
            SET attributes = u.attributes::jsonb, unknown_attributes = u.unknown::jsonb,
                updated_at = now()
            FROM unnest($1::bigint[], $2::text[], $3::text[]) AS u (id, attributes, unknown)
            WHERE d.id = u.id
            """,
            ids,
            attributes,
            unknowns,
        )
    return sorted(ids), flagged


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
