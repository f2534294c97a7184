"""Rows that leave the database layer, as pydantic models.

Money and quantities are `Decimal` (the columns are `numeric`); Mahak ids and row versions
are plain ints (bigint columns).
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

SyncStatus = Literal["pending", "sending", "synced", "dispute", "cancelled", "failed"]
PaymentStatus = Literal["unpaid", "paid", "refunded"]
SYNC_STATUSES: frozenset[str] = frozenset(SyncStatus.__args__)  # type: ignore[attr-defined]


def to_json(value: Any) -> str:
    """jsonb parameters are passed as text, so any asyncpg connection works without codecs.

    jsonb (and UTF-8) cannot hold NUL characters or lone surrogates (JSON's `"\\ud800"`
    decodes to one); they become U+FFFD so a bad payload can still be kept.
    """
    return json.dumps(_storable(value), ensure_ascii=False, default=str)


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _storable(value: Any) -> Any:
    if isinstance(value, str):
        return _LONE_SURROGATE.sub("\ufffd", value.replace("\x00", "\ufffd"))
    if isinstance(value, dict):
        return {_storable(k): _storable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_storable(v) for v in value]
    return value


# jsonb columns arrive as text from a connection without a json codec.
JsonObject = Annotated[
    dict[str, Any], BeforeValidator(lambda v: json.loads(v) if isinstance(v, str) else v)
]


class _Row(BaseModel):
    model_config = ConfigDict(frozen=True, from_attributes=True)

    @classmethod
    def from_record(cls, record: Any, **extra: Any) -> Self:
        return cls.model_validate({**dict(record), **extra})


class ApplyCounts(_Row):
    """What one `apply_page` did; the five counts add up to the rows offered."""

    inserted: int = 0
    updated: int = 0
    unchanged: int = 0  # an equal or newer version was already stored
    deleted: int = 0  # applied rows that arrived with Deleted=true
    dead_lettered: int = 0

    @property
    def total(self) -> int:
        return self.inserted + self.updated + self.unchanged + self.deleted + self.dead_lettered

    def __add__(self, other: ApplyCounts) -> ApplyCounts:
        return ApplyCounts(
            **{k: getattr(self, k) + getattr(other, k) for k in type(self).model_fields}
        )


class SyncLogEntry(_Row):
    run_id: str
    entity: str
    started_at: datetime
    finished_at: datetime | None = None
    fetched: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    dead_lettered: int = 0
    error: str | None = None


class DeadLetter(_Row):
    id: int
    entity: str
    mahak_id: int | None
    row_version: int | None
    payload: JsonObject
    reason: str
    first_seen: datetime
    last_seen: datetime
    seen_count: int
    last_run_id: str | None = None
    resolved: bool
    resolved_at: datetime | None = None
    resolution: str | None = None


class SyncCursor(_Row):
    entity: str
    last_row_version: int
    last_synced_at: datetime | None = None


class NewCustomer(BaseModel):
    """A customer as the shop creates it (also the stored row's fields)."""

    first_name: str = ""
    last_name: str = ""
    email: str | None = None
    mobile: str | None = None
    phone: str | None = None
    national_code: str | None = None
    address: str | None = None
    city: str | None = None
    state: str | None = None
    postal_code: str | None = None
    mahak_person_id: int | None = None


class ShopCustomer(_Row, NewCustomer):
    id: int


class ShopOrderLine(_Row):
    id: int
    order_id: int
    product_detail_id: int
    store_id: int
    quantity: Decimal
    unit_price: Decimal
    discount: Decimal
    order_detail_client_id: int
    mahak_order_detail_id: int | None = None
    restocked_at: datetime | None = None
    # The product's own tax and charge % as Mahak last sent them (None: not mirrored); the
    # send turns them into the line's effective % (activities.order_request.OutgoingFields).
    product_tax_percent: Decimal | None = None
    product_charge_percent: Decimal | None = None


class ShopOrder(_Row):
    id: int
    customer_id: int
    amount: Decimal
    currency: str
    payment_status: PaymentStatus
    payment_ref: str | None = None
    paid_at: datetime | None = None
    shipping_address: str | None = None
    shipping_city: str | None = None
    shipping_postal_code: str | None = None
    shipping_phone: str | None = None
    shipping_cost: Decimal
    discount: Decimal
    description: str | None = None
    order_client_id: int
    sync_status: SyncStatus
    synced_to_mahak: bool
    mahak_synced_at: datetime | None = None
    mahak_order_id: int | None = None
    last_mahak_error: str | None = None
    sync_attempts: int
    cancelled_at: datetime | None = None
    cancel_reason: str | None = None
    compensation_started_at: datetime | None = None
    mahak_receipt_id: int | None = None
    mahak_leftovers: str | None = None
    created_at: datetime
    updated_at: datetime
    lines: list[ShopOrderLine] = Field(default_factory=list)
    customer: ShopCustomer | None = None


class NewOrderLine(BaseModel):
    product_detail_id: int
    store_id: int
    quantity: Decimal = Field(gt=0)
    unit_price: Decimal = Field(ge=0)
    discount: Decimal = Decimal(0)


class NewOrder(BaseModel):
    """A website order as the shop creates it; `amount` defaults to the lines' total."""

    customer_id: int
    lines: list[NewOrderLine] = Field(min_length=1)
    amount: Decimal | None = None
    currency: str = "IRR"
    shipping_address: str | None = None
    shipping_city: str | None = None
    shipping_postal_code: str | None = None
    shipping_phone: str | None = None
    shipping_cost: Decimal = Decimal(0)
    discount: Decimal = Decimal(0)
    description: str | None = None

    def total(self) -> Decimal:
        if self.amount is not None:
            return self.amount
        lines = sum((ln.quantity * ln.unit_price - ln.discount for ln in self.lines), Decimal(0))
        return lines + self.shipping_cost - self.discount


class UncoveredHolding(_Row):
    """One paid, unsent web order's quantity of a detail in a store that Mahak's stock no
    longer covers once it is given out first paid, first served."""

    order_id: int
    product_detail_id: int
    store_id: int
    quantity: Decimal
    held: Decimal  # by all paid, unsent web orders together
    mahak_count1: Decimal


class InventoryConflict(_Row):
    """Paid web orders hold more of a detail in a store than Mahak has in stock."""

    product_detail_id: int
    store_id: int
    mahak_count1: Decimal
    held: Decimal
    order_ids: list[int]

    @property
    def shortfall(self) -> Decimal:
        return self.held - self.mahak_count1


class Notification(_Row):
    id: int
    kind: str
    customer_id: int | None = None
    recipient: str | None = None
    order_id: int | None = None
    payload: JsonObject
    dedup_key: str
    created_at: datetime
    sent_at: datetime | None = None
    attempts: int
    last_error: str | None = None
