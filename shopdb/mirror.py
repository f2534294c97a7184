"""Where each Mahak entity is mirrored: its table and how a model becomes a row.

One declarative entry per entity drives the single generic `apply_page`. Every table starts
with `id, row_version, deleted`; the other columns are read from the model attribute of
the same name unless another attribute is named, or computed from the row and the shop's
price level. Extraction is one `attrgetter` call per row: it is on the hot path of every
sync (see bench/apply_page.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any

from mahak_client.models import ENTITIES

Computed = Callable[[Any, int], Any]


@dataclass(frozen=True)
class MirrorTable:
    entity: str
    table: str
    fields: tuple[str, ...]  # model attributes, in column order
    columns: tuple[str, ...]  # the fields' columns, then the computed ones
    computed: tuple[Computed, ...] = ()
    _get: Callable[[Any], tuple[Any, ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_get", attrgetter(*self.fields))

    @property
    def id_field(self) -> str:
        return self.fields[0]

    def record(self, row: Any, price_level: int) -> tuple[Any, ...]:
        values = self._get(row)
        if self.computed:
            values += tuple(fn(row, price_level) for fn in self.computed)
        return values


def _table(entity: str, table: str, *columns: str | tuple[str, str | Computed]) -> MirrorTable:
    fields = [ENTITIES[entity].id_field, "row_version", "deleted"]
    names = ["id", "row_version", "deleted"]
    computed: list[tuple[str, Computed]] = []
    for col in columns:
        name, source = col if isinstance(col, tuple) else (col, col)
        if isinstance(source, str):
            fields.append(source)
            names.append(name)
        else:
            computed.append((name, source))
    names += [name for name, _fn in computed]
    return MirrorTable(entity, table, tuple(fields), tuple(names), tuple(fn for _name, fn in computed))


def _shop_price(row: Any, level: int) -> float:
    return float(row.price(level))


MIRRORS: dict[str, MirrorTable] = {
    m.entity: m
    for m in (
        _table("stores", "mahak_stores", ("client_id", "store_client_id"), ("code", "store_code"),
               "name", "stock", "comment"),
        _table("product_categories", "mahak_categories",
               ("client_id", "product_category_client_id"), ("code", "product_category_code"),
               "name", "color", "icon"),
        _table("products", "mahak_products", ("client_id", "product_client_id"),
               ("code", "product_code"), ("category_id", "product_category_id"), "name",
               "unit_name", "unit_name2", "unit_ratio", ("min_quantity", "min"), "tax_percent",
               "charge_percent", "width", "height", "length", "weight", ("product_type", "type"),
               "tags", "description", "data_hash", ("mahak_created_at", "create_date"),
               ("mahak_updated_at", "update_date")),
        _table("product_details", "mahak_product_details",
               ("client_id", "product_detail_client_id"), ("code", "product_detail_code"),
               "product_id", "properties", "barcode",
               *(f"price{n}" for n in range(1, 11)),
               "discount", "default_sell_price_level", "customer_price",
               ("shop_price", _shop_price), ("shop_price_level", lambda _row, level: level),
               "data_hash", ("mahak_created_at", "create_date")),
        _table("visitor_products", "mahak_visitor_products", "product_detail_id", "visitor_id",
               "count1", "count2", "price"),
        _table("product_detail_store_assets", "mahak_stock", "product_detail_id", "store_id",
               "count1", "count2", ("mahak_created_at", "create_date")),
        _table("pictures", "mahak_pictures", ("client_id", "picture_client_id"),
               ("code", "picture_code"), "file_name", "display_order", "title", "url",
               "file_size", "width", "height", "format"),
        _table("photo_galleries", "mahak_photo_galleries", "picture_id", "entity_type",
               "item_code", "item_type"),
        _table("people", "mahak_people", ("client_id", "person_client_id"), ("code", "person_code"),
               ("group_id", "person_group_id"), "person_type", "first_name", "last_name",
               "organization", "national_code", "email", "mobile", "phone", "address", "city",
               "state", "postal_code"),
        _table("visitor_people", "mahak_visitor_people", "person_id", "person_client_id",
               "visitor_id"),
        _table("orders", "mahak_orders", ("client_id", "order_client_id"), ("code", "order_code"),
               "person_id", "person_client_id", "visitor_id", "receipt_client_id", "order_type",
               "order_date", "delivery_date", "discount", "discount_type", "send_cost",
               "other_cost", "settlement_type", "description", "shipping_address",
               ("mahak_created_at", "create_date")),
        _table("order_details", "mahak_order_details", ("client_id", "order_detail_client_id"),
               "order_id", "order_client_id", "item_type", "product_detail_id", "store_id",
               "price", "count1", "count2", "discount", "discount_type", "tax_percent",
               "charge_percent", "description"),
        _table("receipts", "mahak_receipts", ("client_id", "receipt_client_id"),
               "order_client_id", "person_id", "person_client_id", "visitor_id", "cash_amount",
               ("receipt_date", "date"), "description"),
    )
}


def mirror(entity: str) -> MirrorTable:
    try:
        return MIRRORS[entity]
    except KeyError:
        raise ValueError(f"entity {entity!r} is not mirrored; known: {', '.join(MIRRORS)}") from None


def to_record(m: MirrorTable, row: Any, price_level: int) -> tuple[tuple[Any, ...] | None, str | None]:
    """The row's column values, or why it cannot be stored. Values the database refuses
    (NUL in text, out-of-range numbers) are caught by `apply_page`'s row-by-row fallback."""
    try:
        values = m.record(row, price_level)
    except Exception as exc:  # a model that does not fit its table: quarantine, don't crash
        return None, f"cannot map row: {exc}"
    if values[0] is None:
        return None, "missing Mahak id"
    return values, None
