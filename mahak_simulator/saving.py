"""SaveAllData: per-record validation and commit, no rollback of the good records.

Lists are processed parents first (people, visitorPeople, orders, orderDetails, receipts) so
a child may name a parent sent in the same request by its `…ClientId`. Every record gets a
result with its 1-based `Index`; failures carry `Errors[{Property, Error}]` and, as LIVE
shows, no `EntityId` (nor, by default, `EntityClientId`). Null members are omitted.

Server rules this simulator enforces (see `shared/mahak-api.md` §4, §9):
- a line needs `productDetailId` (or `incomeId`/`expenseId`): the LIVE error otherwise;
- unknown (or deleted) product detail, store, person, visitor, person group: a failure
  naming the property;
- a new person needs a `PersonGroupId` (every public client sends one; §4, §10 (b)): none (or
  0) is a failure on `PersonGroupId` (mode `person_without_group="default_group"`: the first
  live group);
- a receipt needs a cash box (`CashCode`) or a bank (`BankId`): neither is a failure on
  `CashCode,BankId`;
- dates are stored as the wall clock they were sent with (an offset is dropped, as a server
  that ignores it would: §1.1, §11.4; mode `dated_offset`);
- a known `orderClientId` updates that order until Mahak desktop imports it; afterwards the
  order and its lines fail on `OrderId` with the "already registered, cannot edit" text, and
  so does a change (or delete) of its receipt (mode `edit_after_import="allow"` takes them).
  Every resubmission of a known `orderClientId` is counted as a duplicate submission;
- in every mode a deleted order cannot be edited: a live save of it, or of a live line of it,
  fails on `OrderId` (a repeated delete is taken, changing nothing);
- line fields (mode `line_fields`, `tax_zero_means`): see `_line_fields`;
- a sale invoice (orderType 201) line takes its `count1` from its store's Count1; a line the
  store cannot cover fails on `Count1` while the rest of the request commits. A line without
  `storeId` uses the visitor's store (its StoreCode), else the first store.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .config import SimulatorConfig
from .schema import (
    BY_NAME,
    COLLECTIONS,
    InvalidValue,
    bind,
    coerce,
    fold,
    mahak_time,
    number,
    unknown_keys,
    unknown_lists,
)
from .state import SimState
from .stock import adjust, available

ALREADY_REGISTERED = "این سفارش قبلا در محک ثبت شده است و امکان ویرایش آن وجود ندارد"
RECEIPT_REGISTERED = "سفارش این دریافت قبلا در محک ثبت شده است و امکان ویرایش دریافت وجود ندارد"
ORDER_DELETED = (
    "این سفارش حذف شده است و قابل تغییر نیست "
    "(the order is deleted in Mahak; a deleted order cannot be edited)"
)
# §11.6 strict: the line fields every production client sends (§4 table).
STRICT_LINE_FIELDS = ("StoreId", "ItemType", "TaxPercent", "ChargePercent")
# Settings codes of the default tax and charge % (SW).
_DEFAULT_PERCENT = {"TaxPercent": 14001, "ChargePercent": 14000}
PRODUCT_REQUIRED = (
    "IncomeId,ExpenseId,ProductDetailId",
    "ProductDetailId or IncomeId or ExpenseId is required ",
)
SALE_INVOICE = 201
ORDER_TYPES = frozenset({201, 202, 203, 204, 299})
# Columns the server assigns; a client's value for them is ignored.
_SERVER_COLUMNS = {"RowVersion", "OrderCode", "CreateDate"}


def _merge(existing: dict[str, Any] | None, values: dict[str, Any]) -> dict[str, Any]:
    """The record as it will be: the stored row overlaid with what the client sent."""
    return {**(existing or {}), **{k: v for k, v in values.items() if v is not None}}


class RecordError(Exception):
    def __init__(self, prop: str, message: str) -> None:
        super().__init__(message)
        self.prop = prop
        self.message = message


@dataclass
class _Save:
    state: SimState
    config: SimulatorConfig
    visitor_id: int | None  # the caller's, from its token

    def person(self, values: dict[str, Any]) -> dict[str, Any]:
        person_id, client_id = values.get("PersonId"), values.get("PersonClientId")
        if person_id is not None:
            row = self.state.live("People", person_id)
        elif client_id is not None:
            row = self.state.by_client_id("People", client_id)
            row = None if row is None or row.get("Deleted") else row
        else:
            raise RecordError("PersonId", "PersonId is required")
        if row is None:
            raise RecordError(
                "PersonId", f"شخص یافت نشد (person {person_id or client_id} not found)"
            )
        return row

    def visitor(self, values: dict[str, Any], *, required: bool) -> int | None:
        visitor_id = values.get("VisitorId")
        if visitor_id is None:
            if required:
                raise RecordError("VisitorId", "VisitorId is required")
            return self.visitor_id
        if self.state.live("Visitors", visitor_id) is None or (
            self.visitor_id is not None and visitor_id != self.visitor_id
        ):
            raise RecordError(
                "VisitorId", f"بازاریاب نامعتبر است (visitor {visitor_id} is not this user's)"
            )
        return visitor_id

    def order(self, values: dict[str, Any]) -> dict[str, Any]:
        order_id, client_id = values.get("OrderId"), values.get("OrderClientId")
        if order_id is None and client_id is None:
            raise RecordError("OrderId", "OrderId or OrderClientId is required")
        row = (
            self.state.get("Orders", order_id)
            if order_id is not None
            else self.state.by_client_id("Orders", client_id)
        )
        if row is None:
            raise RecordError(
                "OrderId", f"سفارش یافت نشد (order {order_id or client_id} not found)"
            )
        return row

    def existing(
        self, collection: str, values: dict[str, Any], id_field: str, client_field: str
    ) -> dict[str, Any] | None:
        """The row a record updates: by server id (which must exist) or by client id."""
        if values.get(id_field) is not None:
            row = self.state.get(collection, values[id_field])
            if row is None:
                raise RecordError(id_field, f"{id_field} {values[id_field]} not found")
            return row
        row = self.state.by_client_id(collection, values.get(client_field))
        if row is None and values.get(client_field) is None:
            raise RecordError(client_field, f"{client_field} is required")
        return row

    def write(
        self,
        collection: str,
        existing: dict[str, Any] | None,
        values: dict[str, Any],
        **server: Any,
    ) -> dict[str, Any]:
        """Insert or update with the client's non-null values; the server's own win."""
        id_field = BY_NAME[collection].id_field
        given = {
            k: v
            for k, v in values.items()
            if v is not None and k not in _SERVER_COLUMNS and k != id_field
        }
        if existing is not None:
            return self.state.put(collection, {**existing, **given, **server})
        return self.state.create(collection, {"CreateDate": mahak_time(), **given, **server})


def _save_person(ctx: _Save, values: dict[str, Any]) -> dict[str, Any]:
    existing = ctx.existing("People", values, "PersonId", "PersonClientId")
    group_id = _merge(existing, values).get("PersonGroupId")
    if not group_id and ctx.config.person_without_group == "default_group":
        # §11.7's other answer: the server files the person under its first live group.
        group_id = next(
            (g["PersonGroupId"] for g in ctx.state.rows("PersonGroups") if not g.get("Deleted")),
            None,
        )
    if group_id is None:
        raise RecordError("PersonGroupId", "گروه اشخاص الزامی است (PersonGroupId is required)")
    group = ctx.state.live("PersonGroups", group_id)
    if group is None:
        raise RecordError(
            "PersonGroupId", f"گروه اشخاص یافت نشد (person group {group_id} not found)"
        )
    return ctx.write(
        "People",
        existing,
        values,
        PersonGroupId=group["PersonGroupId"],
        PersonGroupCode=group.get("PersonGroupCode"),
    )


def _save_visitor_person(ctx: _Save, values: dict[str, Any]) -> dict[str, Any]:
    visitor_id = ctx.visitor(values, required=True)
    person = ctx.person(values)
    links = ctx.state.find("VisitorPeople", VisitorId=visitor_id, PersonId=person["PersonId"])
    return ctx.write(
        "VisitorPeople",
        links[0] if links else None,
        values,
        VisitorId=visitor_id,
        PersonId=person["PersonId"],
        PersonClientId=person.get("PersonClientId"),
        PersonCode=person.get("PersonCode"),
        Deleted=bool(values.get("Deleted")),
    )


def _save_order(ctx: _Save, values: dict[str, Any]) -> dict[str, Any]:
    existing = ctx.existing("Orders", values, "OrderId", "OrderClientId")
    book = ctx.state.orders
    if values.get("OrderClientId") is not None:
        book.submissions[values["OrderClientId"]] += 1
        if values.get("Deleted"):
            book.deletions[values["OrderClientId"]] += 1
    if existing is not None:
        if values.get("OrderClientId") is not None:
            book.duplicate_submissions += 1
        if existing["OrderId"] in book.imported and ctx.config.edit_after_import == "refuse":
            raise RecordError("OrderId", ALREADY_REGISTERED)
        if existing.get("Deleted"):
            if values.get("Deleted"):
                return existing  # a repeated delete: nothing changes
            raise RecordError("OrderId", ORDER_DELETED)
    merged = _merge(existing, values)
    visitor_id = ctx.visitor(merged, required=True)
    person = ctx.person(merged)
    order_type = merged.get("OrderType") or SALE_INVOICE
    if order_type not in ORDER_TYPES:
        raise RecordError("OrderType", f"نوع سفارش نامعتبر است (order type {order_type})")
    return ctx.write(
        "Orders",
        existing,
        values,
        VisitorId=visitor_id,
        PersonId=person["PersonId"],
        PersonClientId=person.get("PersonClientId"),
        PersonCode=person.get("PersonCode"),
        OrderType=order_type,
        OrderDate=merged.get("OrderDate") or mahak_time(),
        Deleted=bool(merged.get("Deleted")),
    )


def _default_store(ctx: _Save) -> dict[str, Any] | None:
    stores = [r for r in ctx.state.rows("Stores") if not r.get("Deleted")]
    visitor = ctx.state.get("Visitors", ctx.visitor_id) if ctx.visitor_id is not None else None
    code = (visitor or {}).get("StoreCode")
    return next((s for s in stores if s.get("StoreCode") == code), stores[0] if stores else None)


def _setting(ctx: _Save, code: int) -> int | float:
    row = next(
        (
            r
            for r in ctx.state.rows("Settings")
            if r.get("SettingCode") == code and not r.get("Deleted")
        ),
        None,
    )
    try:
        return number(float((row or {}).get("Value") or 0))
    except ValueError:
        return 0


def _line_fields(ctx: _Save, values: dict[str, Any]) -> None:
    """§11.6: "strict" refuses a line that lacks a field every production client sends;
    `tax_zero_means="default"` reads a 0 % as "the setting's %" and stores that (in place)."""
    if ctx.config.line_fields == "strict":
        for name in STRICT_LINE_FIELDS:
            if values.get(name) is None:
                raise RecordError(name, f"{name} is required (مقدار {name} الزامی است)")
    if ctx.config.tax_zero_means == "default":
        for name, code in _DEFAULT_PERCENT.items():
            if values.get(name) == 0:
                values[name] = _setting(ctx, code)


def _save_order_detail(ctx: _Save, values: dict[str, Any]) -> dict[str, Any]:
    order = ctx.order(values)
    if order["OrderId"] in ctx.state.orders.imported and ctx.config.edit_after_import == "refuse":
        raise RecordError("OrderId", ALREADY_REGISTERED)
    if order.get("Deleted") and not values.get("Deleted"):
        raise RecordError("OrderId", ORDER_DELETED)
    existing = ctx.existing("OrderDetails", values, "OrderDetailId", "OrderDetailClientId")
    _line_fields(ctx, values)
    merged = _merge(existing, values)
    detail_id = merged.get("ProductDetailId")
    if detail_id is None and merged.get("IncomeId") is None and merged.get("ExpenseId") is None:
        raise RecordError(*PRODUCT_REQUIRED)
    detail = None
    if detail_id is not None:
        detail = ctx.state.live("ProductDetails", detail_id)
        if detail is None:
            raise RecordError(
                "ProductDetailId", f"کالا یافت نشد (ProductDetailId {detail_id} not found)"
            )
    if merged.get("StoreId") is not None:
        store = ctx.state.live("Stores", merged["StoreId"])
        if store is None:
            raise RecordError("StoreId", f"انبار یافت نشد (StoreId {merged['StoreId']} not found)")
    else:
        store = _default_store(ctx)
        if store is None:
            raise RecordError("StoreId", "StoreId is required")
    count1 = merged.get("Count1") or 0
    count2 = merged.get("Count2") or 0
    if count1 < 0 or count2 < 0:
        raise RecordError("Count1", "تعداد نامعتبر است (count must not be negative)")
    deleted = bool(merged.get("Deleted"))

    moves = ctx.state.orders.stock_moves
    old = moves.get(existing["OrderDetailId"]) if existing else None
    new = None
    if detail is not None and order.get("OrderType") == SALE_INVOICE and not deleted:
        new = (detail_id, store["StoreId"], count1, count2)
    if new != old:
        if new is not None:
            have = available(ctx.state, detail_id, store["StoreId"])
            if old is not None and old[:2] == new[:2]:
                have += old[2]
            if count1 > have:
                raise RecordError(
                    "Count1",
                    (
                        f"موجودی کالا در انبار کافی نیست: موجودی {have:g}، درخواست {count1:g} "
                        f"(insufficient stock of ProductDetailId {detail_id} in StoreId {store['StoreId']})"
                    ),
                )
        if old is not None:
            adjust(ctx.state, old[0], old[1], old[2], old[3])
        if new is not None:
            adjust(ctx.state, detail_id, store["StoreId"], -count1, -count2)
    row = ctx.write(
        "OrderDetails",
        existing,
        values,
        OrderId=order["OrderId"],
        OrderClientId=order.get("OrderClientId"),
        OrderCode=order.get("OrderCode"),
        ItemType=merged.get("ItemType") or 1,
        StoreId=store["StoreId"],
        Count1=count1,
        Count2=count2,
        ProductDetailCode=(detail or {}).get("ProductDetailCode"),
        Deleted=deleted,
    )
    if new is None:
        moves.pop(row["OrderDetailId"], None)
    else:
        moves[row["OrderDetailId"]] = new
    return row


def _save_receipt(ctx: _Save, values: dict[str, Any]) -> dict[str, Any]:
    existing = ctx.existing("Receipts", values, "ReceiptId", "ReceiptClientId")
    merged = _merge(existing, values)
    if existing is not None and ctx.config.edit_after_import == "refuse":
        order = ctx.state.by_client_id("Orders", existing.get("OrderClientId"))
        if order is not None and order["OrderId"] in ctx.state.orders.imported:
            raise RecordError("ReceiptId", RECEIPT_REGISTERED)
    if merged.get("CashCode") is None and merged.get("BankId") is None:
        raise RecordError(
            "CashCode,BankId", "صندوق یا بانک دریافت الزامی است (CashCode or BankId is required)"
        )
    visitor_id = ctx.visitor(merged, required=False)
    person = ctx.person(merged)
    if (
        merged.get("OrderClientId") is not None
        and ctx.state.by_client_id("Orders", merged["OrderClientId"]) is None
    ):
        raise RecordError(
            "OrderClientId", f"سفارش یافت نشد (order {merged['OrderClientId']} not found)"
        )
    return ctx.write(
        "Receipts",
        existing,
        values,
        VisitorId=visitor_id,
        PersonId=person["PersonId"],
        PersonClientId=person.get("PersonClientId"),
        PersonCode=person.get("PersonCode"),
        Date=merged.get("Date") or mahak_time(),
    )


# In processing order, parents before children; the request's list names are these in
# camelCase (any case binds).
_HANDLERS: dict[str, Callable[[_Save, dict[str, Any]], dict[str, Any]]] = {
    "People": _save_person,
    "VisitorPeople": _save_visitor_person,
    "Orders": _save_order,
    "OrderDetails": _save_order_detail,
    "Receipts": _save_receipt,
}


def _client_id(collection: str, record: Any) -> int | None:
    if not isinstance(record, dict):
        return None
    wanted = fold(BY_NAME[collection].client_id_field)
    for key, value in record.items():
        if isinstance(key, str) and fold(key) == wanted:
            try:
                return coerce(key, "i", value)
            except InvalidValue:
                return None
    return None


def _save_one(ctx: _Save, collection: str, index: int, record: Any) -> dict[str, Any]:
    client_id = _client_id(collection, record)
    try:
        if not isinstance(record, dict):
            raise RecordError(collection, "record must be an object")
        ctx.state.note_unknown(collection, unknown_keys(collection, record))
        row = _HANDLERS[collection](
            ctx, bind(collection, record, dated_offset=ctx.config.dated_offset)
        )
    except InvalidValue as exc:
        error: RecordError | None = RecordError(exc.prop, str(exc))
    except RecordError as exc:
        error = exc
    else:
        spec = BY_NAME[collection]
        result = {
            "Result": True,
            "Index": index,
            "EntityId": row[spec.id_field],
            "EntityClientId": row.get(spec.client_id_field),
            "RowVersion": row["RowVersion"],
        }
        return {k: v for k, v in result.items() if v is not None}
    failure: dict[str, Any] = {"Result": False, "Index": index}
    if ctx.config.echo_client_id_on_failure and client_id is not None:
        failure["EntityClientId"] = client_id
    failure["Errors"] = [{"Property": error.prop, "Error": error.message}]
    return failure


def save_all_data(
    state: SimState, config: SimulatorConfig, body: dict[str, Any], *, visitor_id: int | None
) -> tuple[bool, dict[str, Any]]:
    """Return (Result, Objects). Other lists a client sends are accepted and ignored."""
    lists = {fold(k): v for k, v in body.items() if isinstance(k, str)}
    state.note_unknown("SaveAllData", unknown_lists(body))
    objects: dict[str, Any] = {c.save_name: {"Results": []} for c in COLLECTIONS}
    ctx = _Save(state, config, visitor_id)
    ok = True
    with state.lock:
        for collection in _HANDLERS:
            records = lists.get(fold(collection))
            if not isinstance(records, list):
                continue
            for index, record in enumerate(records, 1):
                result = _save_one(ctx, collection, index, record)
                ok = ok and result["Result"]
                objects[collection]["Results"].append(result)
    return ok, objects
