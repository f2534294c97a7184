"""Stock per (product detail, store): the ProductDetailStoreAssets rows."""

from __future__ import annotations

from typing import Any

from .schema import mahak_time, number
from .state import SimState


def asset(state: SimState, product_detail_id: int, store_id: int) -> dict[str, Any] | None:
    rows = state.find(
        "ProductDetailStoreAssets", ProductDetailId=product_detail_id, StoreId=store_id
    )
    return rows[0] if rows else None


def available(state: SimState, product_detail_id: int, store_id: int) -> float:
    row = asset(state, product_detail_id, store_id)
    if row is None or row.get("Deleted"):
        return 0
    count = row.get("Count1")
    return count if isinstance(count, (int, float)) else 0


def set_count(
    state: SimState,
    product_detail_id: int,
    store_id: int,
    count1: float,
    count2: float | None = None,
) -> dict[str, Any]:
    """Set the stock of a detail in a store (creating the row), with a new RowVersion."""
    with state.lock:
        row = asset(state, product_detail_id, store_id)
        changes: dict[str, Any] = {"Count1": number(float(count1)), "Deleted": False}
        if count2 is not None:
            changes["Count2"] = number(float(count2))
        if row is None:
            return state.create(
                "ProductDetailStoreAssets",
                {
                    "ProductDetailId": product_detail_id,
                    "StoreId": store_id,
                    "Count2": 0,
                    "CreateDate": mahak_time(),
                    **changes,
                },
            )
        return state.update("ProductDetailStoreAssets", row["ProductDetailStoreAssetId"], **changes)


def adjust(
    state: SimState, product_detail_id: int, store_id: int, delta1: float, delta2: float = 0
) -> dict[str, Any]:
    with state.lock:
        row = asset(state, product_detail_id, store_id)
        count2 = (row or {}).get("Count2") or 0
        return set_count(
            state,
            product_detail_id,
            store_id,
            available(state, product_detail_id, store_id) + delta1,
            count2 + delta2,
        )
