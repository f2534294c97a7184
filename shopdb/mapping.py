"""Shop id <-> Mahak id, one-to-one per entity (`mahak_mapping`)."""

from __future__ import annotations

from .pool import Executor


class MappingConflictError(RuntimeError):
    """The shop id or the Mahak id is already mapped to a different partner."""


async def set_mapping(db: Executor, entity: str, shop_id: int, mahak_id: int) -> None:
    """Record a mapping; repeating the same pair is a no-op, a different pair is refused."""
    status = await db.execute(
        "INSERT INTO mahak_mapping (entity, shop_id, mahak_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        entity,
        shop_id,
        mahak_id,
    )
    if status.endswith(" 1"):
        return
    existing = await db.fetchval(
        "SELECT 1 FROM mahak_mapping WHERE entity = $1 AND shop_id = $2 AND mahak_id = $3",
        entity,
        shop_id,
        mahak_id,
    )
    if not existing:
        raise MappingConflictError(
            f"{entity}: shop id {shop_id} or Mahak id {mahak_id} is mapped elsewhere"
        )


async def mahak_id_for(db: Executor, entity: str, shop_id: int) -> int | None:
    return await db.fetchval(
        "SELECT mahak_id FROM mahak_mapping WHERE entity = $1 AND shop_id = $2", entity, shop_id
    )


async def shop_id_for(db: Executor, entity: str, mahak_id: int) -> int | None:
    return await db.fetchval(
        "SELECT shop_id FROM mahak_mapping WHERE entity = $1 AND mahak_id = $2", entity, mahak_id
    )
