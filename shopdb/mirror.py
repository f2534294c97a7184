"""Where each Mahak entity is mirrored: its table, and how a page of models becomes rows.

One declarative entry per entity drives the single generic `apply_page`. Every table starts
with `id, row_version, deleted`; the other columns are read from the model attribute of
the same name unless another attribute is named, or computed from the rows and the shop's
price level.

This is the hot path of every sync (see bench/apply_page.py), so a page is handled as a
whole, with C-level calls (`itemgetter`, `map`, `zip`, `str.join`) rather than Python code
per value: the models' values are read into one list per column, and `copy_text` writes
those columns as COPY text with one encoder per column.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any

from mahak_client.models import ENTITIES, ProductDetail

# A computed column: (rows, price level) -> the column's values.
Computed = Callable[[Sequence[Any], int], list[Any]]
Columns = list[list[Any]]  # column-major values of a page, in `MirrorTable.columns` order


@dataclass(frozen=True)
class MirrorTable:
    entity: str
    table: str
    fields: tuple[str, ...]  # model attributes, in column order
    columns: tuple[str, ...]  # the fields' columns, then the computed ones
    computed: tuple[Computed, ...] = ()
    _get: Callable[[dict[str, Any]], tuple[Any, ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_get", itemgetter(*self.fields))  # >= 3 fields: always a tuple

    @property
    def id_field(self) -> str:
        return self.fields[0]

    def values(self, rows: Sequence[Any], price_level: int) -> Columns:
        """The rows' values, one list per column: each row's fields in one C call, straight
        from the model's `__dict__`, then transposed."""
        fields = [list(column) for column in zip(*map(self._get, map(vars, rows)))]
        return (fields or [[] for _ in self.fields]) + [
            fn(rows, price_level) for fn in self.computed
        ]

    def record(self, row: Any, price_level: int) -> tuple[Any, ...]:
        return tuple(column[0] for column in self.values((row,), price_level))


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
    return MirrorTable(
        entity, table, tuple(fields), tuple(names), tuple(fn for _name, fn in computed)
    )


def _shop_price(rows: Sequence[Any], level: int) -> list[float]:
    # `ProductDetail.price(level)` for a whole page: one attribute lookup per row.
    return list(map(float, map(itemgetter(ProductDetail.price_field(level)), map(vars, rows))))


def _shop_price_level(rows: Sequence[Any], level: int) -> list[int]:
    return [level] * len(rows)


# The variant's decoded attributes (issue 18): filled in by `shopdb.storefront.before_write`
# in the page's transaction, where the property descriptions are read; undecoded, the
# column defaults.
DERIVED_COLUMNS = ("attributes", "unknown_attributes")


def _no_attributes(rows: Sequence[Any], level: int) -> list[str]:
    return ["{}"] * len(rows)


def _no_unknown_attributes(rows: Sequence[Any], level: int) -> list[str]:
    return ["[]"] * len(rows)


MIRRORS: dict[str, MirrorTable] = {
    m.entity: m
    for m in (
        _table(
            "stores",
            "mahak_stores",
            ("client_id", "store_client_id"),
            ("code", "store_code"),
            "name",
            "stock",
            "comment",
        ),
        _table(
            "product_categories",
            "mahak_categories",
            ("client_id", "product_category_client_id"),
            ("code", "product_category_code"),
            "name",
            "color",
            "icon",
        ),
        _table(
            "products",
            "mahak_products",
            ("client_id", "product_client_id"),
            ("code", "product_code"),
            ("category_id", "product_category_id"),
            "name",
            "unit_name",
            "unit_name2",
            "unit_code",
            "unit_ratio",
            ("min_quantity", "min"),
            "tax_percent",
            "charge_percent",
            "width",
            "height",
            "length",
            "weight",
            ("product_type", "type"),
            "tags",
            "description",
            "data_hash",
            ("mahak_created_at", "create_date"),
            ("mahak_updated_at", "update_date"),
        ),
        _table(
            "product_details",
            "mahak_product_details",
            ("client_id", "product_detail_client_id"),
            ("code", "product_detail_code"),
            "product_id",
            "properties",
            "barcode",
            *(f"price{n}" for n in range(1, 11)),
            "discount",
            "discount1",
            "discount2",
            "discount3",
            "discount4",
            "default_discount_level",
            "discount_type",
            "default_sell_price_level",
            "customer_price",
            ("shop_price", _shop_price),
            ("shop_price_level", _shop_price_level),
            "data_hash",
            ("mahak_created_at", "create_date"),
            ("attributes", _no_attributes),
            ("unknown_attributes", _no_unknown_attributes),
        ),
        _table(
            "visitor_products",
            "mahak_visitor_products",
            "product_detail_id",
            "visitor_id",
            "count1",
            "count2",
            "price",
        ),
        _table(
            "product_detail_store_assets",
            "mahak_stock",
            "product_detail_id",
            "store_id",
            "count1",
            "count2",
            ("mahak_created_at", "create_date"),
        ),
        _table(
            "pictures",
            "mahak_pictures",
            ("client_id", "picture_client_id"),
            ("code", "picture_code"),
            "file_name",
            "display_order",
            "title",
            "url",
            "file_size",
            "width",
            "height",
            "format",
        ),
        _table(
            "photo_galleries",
            "mahak_photo_galleries",
            "picture_id",
            "entity_type",
            "item_code",
            "item_type",
        ),
        _table(
            "people",
            "mahak_people",
            ("client_id", "person_client_id"),
            ("code", "person_code"),
            ("group_id", "person_group_id"),
            "person_type",
            "first_name",
            "last_name",
            "organization",
            "national_code",
            "email",
            "mobile",
            "phone",
            "address",
            "city",
            "state",
            "postal_code",
        ),
        _table(
            "visitor_people", "mahak_visitor_people", "person_id", "person_client_id", "visitor_id"
        ),
        _table(
            "orders",
            "mahak_orders",
            ("client_id", "order_client_id"),
            ("code", "order_code"),
            "person_id",
            "person_client_id",
            "visitor_id",
            "receipt_client_id",
            "order_type",
            "order_date",
            "delivery_date",
            "discount",
            "discount_type",
            "send_cost",
            "other_cost",
            "settlement_type",
            "description",
            "shipping_address",
            ("mahak_created_at", "create_date"),
        ),
        _table(
            "order_details",
            "mahak_order_details",
            ("client_id", "order_detail_client_id"),
            "order_id",
            "order_client_id",
            "item_type",
            "product_detail_id",
            "store_id",
            "price",
            "count1",
            "count2",
            "discount",
            "discount_type",
            "tax_percent",
            "charge_percent",
            "description",
        ),
        _table(
            "receipts",
            "mahak_receipts",
            ("client_id", "receipt_client_id"),
            "order_client_id",
            "person_id",
            "person_client_id",
            "visitor_id",
            "cash_amount",
            ("receipt_date", "date"),
            "description",
        ),
        # The storefront's catalog (issue 18; migration 0007).
        _table(
            "person_groups",
            "mahak_person_groups",
            ("client_id", "person_group_client_id"),
            ("code", "person_group_code"),
            "name",
            "discount_percent",
            "sell_price_level",
        ),
        _table(
            "person_addresses",
            "mahak_person_addresses",
            ("client_id", "person_address_client_id"),
            ("code", "person_address_code"),
            "person_id",
            "title",
            "address",
            "postal_code",
            "tel",
            "mobile",
            "city_id",
            "latitude",
            "longitude",
            "is_default",
        ),
        _table(
            "property_descriptions",
            "mahak_property_descriptions",
            ("client_id", "property_description_client_id"),
            ("code", "property_description_code"),
            "name",
            "title",
            "empty_title",
            "data_type",
            "display_type",
            "description",
            ("mahak_updated_at", "update_date"),
        ),
        _table(
            "property_description_values",
            "mahak_property_description_values",
            ("client_id", "property_description_value_client_id"),
            ("code", "property_description_value_code"),
            "property_description_code",
            ("row_number", "row"),
            "value",
            ("mahak_created_at", "create_date"),
        ),
        _table(
            "product_properties",
            "mahak_product_properties",
            "product_id",
            "property_description_id",
        ),
        _table(
            "cost_level_names",
            "mahak_cost_level_names",
            ("client_id", "cost_level_name_client_id"),
            ("code", "cost_level_name_code"),
            "name",
        ),
        _table(
            "settings",
            "mahak_settings",
            ("client_id", "setting_client_id"),
            ("code", "setting_code"),
            "visitor_id",
            "value",
        ),
        _table(
            "units",
            "mahak_units",
            ("client_id", "unit_client_id"),
            ("code", "unit_code"),
            "name",
            "comment",
            "unit_tin",
        ),
        _table(
            "promotions",
            "mahak_promotions",
            ("client_id", "promotion_client_id"),
            ("code", "promotion_code"),
            "visitors",
            "stores",
            "other_fields",
        ),
        _table(
            "promotion_details",
            "mahak_promotion_details",
            ("client_id", "promotion_detail_client_id"),
            ("code", "promotion_detail_code"),
            "promotion_id",
            "other_fields",
        ),
        _table(
            "promotion_entities",
            "mahak_promotion_entities",
            ("client_id", "promotion_entity_client_id"),
            ("code", "promotion_entity_code"),
            "promotion_id",
            "other_fields",
        ),
    )
}


def mirror(entity: str) -> MirrorTable:
    try:
        return MIRRORS[entity]
    except KeyError:
        raise ValueError(
            f"entity {entity!r} is not mirrored; known: {', '.join(MIRRORS)}"
        ) from None


def to_record(
    m: MirrorTable, row: Any, price_level: int
) -> tuple[tuple[Any, ...] | None, str | None]:
    """The row's column values, or why it cannot be stored. Values the database refuses
    (NUL in text, out-of-range numbers) are caught by `apply_page`'s row-by-row fallback."""
    try:
        values = m.record(row, price_level)
    except Exception as exc:  # a model that does not fit its table: quarantine, don't crash
        return None, f"cannot map row: {exc}"
    if values[0] is None:
        return None, "missing Mahak id"
    return values, None


# --- COPY text ------------------------------------------------------------------------------

_NULL = "\\N"
_SPECIAL = ("\\", "\t", "\n", "\r")
_BOOL = {True: "t", False: "f"}.__getitem__


def copy_text(columns: Columns, numeric: Sequence[bool]) -> bytes:
    """The rows as COPY text (`format 'text'`), one encoder per column chosen from the types
    the column holds. `numeric` marks numeric columns: their floats are written with 15
    significant digits, exactly what the server's own float8 -> numeric cast stores (0.1,
    not 0.1000000000000000055511151231257827). NUL is left in text: the server refuses it
    and `apply_page` dead-letters the row."""
    encoded = [
        _encode(values, is_numeric) for values, is_numeric in zip(columns, numeric, strict=True)
    ]
    return ("\n".join(map("\t".join, zip(*encoded))) + "\n").encode()


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def _timestamp(value: datetime) -> str:
    # Naive values are local time, as asyncpg's binary encoder takes them.
    return value.astimezone(UTC).isoformat()


def _timestamp_format(values: list[Any]) -> Callable[[datetime], str]:
    """How to write a column of datetimes: aware ones as they are, with their own offset (the
    same instant, at ~60 % of the cost of converting each to UTC first; PostgreSQL reads
    offsets with seconds too, as Tehran's before 1946); a column holding a naive one, each
    converted by `_timestamp`."""
    if None in set(map(datetime.utcoffset, filter(None, values))):
        return _timestamp
    return datetime.isoformat


def _any(value: Any, numeric: bool) -> str:
    """One value of a column of mixed types (the slow, general encoder)."""
    if value is None:
        return _NULL
    if isinstance(value, bool):
        return _BOOL(value)
    if isinstance(value, float):
        return f"{value:.15g}" if numeric else repr(value)
    if isinstance(value, datetime):
        return _timestamp(value)
    return _escape(str(value))


def _float_format(values: list[Any], numeric: bool) -> Callable[[Any], str]:
    if not numeric:
        return float.__repr__
    present = [v for v in values if v is not None] if None in values else values
    # Whole amounts (Mahak's rial prices) print faster as integers: the same number as
    # %.15g below 10**15, where %.15g would round to 15 digits.
    if all(map(float.is_integer, present)) and -1e15 < min(present) and max(present) < 1e15:
        return "%d".__mod__
    return "%.15g".__mod__


def _encode(values: list[Any], numeric: bool) -> list[str]:
    kinds = set(map(type, values))
    nullable = type(None) in kinds
    kinds.discard(type(None))
    if not kinds:
        return [_NULL] * len(values)
    kind = kinds.pop() if len(kinds) == 1 else None
    fmt: Callable[[Any], str] | None
    if kind is str:
        joined = "".join(filter(None, values))
        fmt = _escape if any(ch in joined for ch in _SPECIAL) else None
    elif kind is int:
        fmt = int.__repr__
    elif kind is float:
        fmt = _float_format(values, numeric)
    elif kind is bool:
        fmt = _BOOL
    elif kind is datetime:
        fmt = _timestamp_format(values)
    else:
        return [_any(v, numeric) for v in values]
    if fmt is None:
        return [_NULL if v is None else v for v in values] if nullable else values
    return [_NULL if v is None else fmt(v) for v in values] if nullable else list(map(fmt, values))
