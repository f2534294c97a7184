"""A website order as Mahak's SaveAllData request, and Mahak's answer as a decision.

Pure functions (no I/O), so the exact wire shape and the classification of Mahak's refusals
are tested without servers.

Identity: the order, its lines and its receipt carry client ids derived from the shop's ids
(`shop_orders.order_client_id`, `shop_order_lines.order_detail_client_id`, generated columns),
so a resend after a crash names the same records and Mahak recognises them. A new customer is
created in Mahak under `PERSON_CLIENT_ID_BASE + customer id`, for the same reason.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from mahak_client.models import Order, OrderDetail, Person, Receipt, VisitorPerson
from mahak_client.save import (
    RecordFailure,
    SaveAllDataRequest,
    SaveAllDataResult,
    is_already_registered,
)
from mahak_sync.errors import CUSTOMER_DATA, scrub
from shopdb.models import ShopCustomer, ShopOrder
from workflows.order_types import MahakFailure, MahakOrderCheck, SendOutcome

ORDER_TYPE_SALE = 201  # sale invoice
SETTLEMENT_CASH = 1  # paid online before it reaches Mahak
DISCOUNT_AMOUNT = 0
ITEM_PRODUCT = 1
PERSON_NATURAL = 0
# Order ids start at 8e15 and line ids at 8.1e15 (MX's scheme); people get their own range.
PERSON_CLIENT_ID_BASE = 7_000_000_000_000_000


def person_client_id(customer_id: int) -> int:
    return PERSON_CLIENT_ID_BASE + customer_id


@dataclass(frozen=True)
class OutgoingFields:
    """What the shop has no value for, from settings (or Mahak): the tax and charge % of a
    line whose product says 0, and the receipt's cash box or bank (shared/mahak-api.md §10 (d))."""

    tax_percent: float = 0.0
    charge_percent: float = 0.0
    cash_code: int | None = None
    bank_id: int | None = None
    taxed: bool = True  # Mahak's Settings 14008 (tax on); off: every line 0 %, as the catalog

    @staticmethod
    def _effective(product_value: float | None, default: float) -> float:
        # As BZ and MO do: -1 means none, 0 (or unknown) means the default, else the product's.
        if product_value is None or product_value == 0:
            return float(default)
        return 0.0 if product_value < 0 else float(product_value)

    def tax(self, product_value: float | None = None) -> float:
        return self._effective(product_value, self.tax_percent) if self.taxed else 0.0

    def charge(self, product_value: float | None = None) -> float:
        return self._effective(product_value, self.charge_percent) if self.taxed else 0.0

    def receipt_problem(self) -> str | None:
        """Why a receipt cannot be sent, or None."""
        if self.cash_code is None and self.bank_id is None:
            return (
                "no cash box (CashCode) or bank (BankId) for the receipt: the Mahak visitor "
                "has no CashCode; set MAHAK_CASH_CODE or MAHAK_BANK_ID"
            )
        return None


def _percent(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


# --- Building ---------------------------------------------------------------------------------


NO_PERSON_GROUP = (
    "Mahak has no person group (PersonGroupId) to create the customer in: add one "
    "in Mahak or set MAHAK_PERSON_GROUP_ID"
)


def customer_request(
    customer: ShopCustomer, *, visitor_id: int, person_group_id: int
) -> SaveAllDataRequest:
    """Create (or, on a resend, update) the customer as a Mahak person linked to our visitor,
    in `person_group_id` (every public client sends one; §10 (b))."""
    client_id = person_client_id(customer.id)
    return SaveAllDataRequest(
        people=[
            Person(
                person_client_id=client_id,
                person_group_id=person_group_id,
                person_type=PERSON_NATURAL,
                first_name=customer.first_name or None,
                last_name=customer.last_name or None,
                email=customer.email,
                mobile=customer.mobile,
                phone=customer.phone,
                national_code=customer.national_code,
                address=customer.address,
                city=customer.city,
                state=customer.state,
                postal_code=customer.postal_code,
            )
        ],
        visitor_people=[VisitorPerson(person_client_id=client_id, visitor_id=visitor_id)],
    )


def _shipping_address(order: ShopOrder) -> str | None:
    """Mahak wants the address as a JSON *string* with its own keys."""
    if not (order.shipping_address or order.shipping_postal_code or order.shipping_phone):
        return None
    return json.dumps(
        {
            "title": "web",
            "address": order.shipping_address or "",
            "postalcode": order.shipping_postal_code or "",
            "mobile": order.shipping_phone or "",
            "tel": "",
            "description": order.shipping_city or "",
        },
        ensure_ascii=False,
    )


def _receipt(
    order: ShopOrder,
    *,
    visitor_id: int,
    person_id: int | None,
    fields: OutgoingFields,
    deleted: bool = False,
) -> Receipt | None:
    """The payment as a receipt under the order's own client id (none when unpaid): cash into
    the cash box `fields.cash_code`, or, without one, into the bank `fields.bank_id`."""
    if order.payment_status != "paid" and not deleted:
        return None
    return Receipt(
        receipt_client_id=order.order_client_id,
        order_client_id=order.order_client_id,
        person_id=person_id,
        visitor_id=visitor_id,
        cash_code=fields.cash_code,
        bank_id=fields.bank_id if fields.cash_code is None else None,
        cash_amount=float(order.amount),
        date=order.paid_at or order.created_at,
        description=f"web payment {order.payment_ref}" if order.payment_ref else None,
        deleted=deleted,
    )


def order_request(
    order: ShopOrder,
    *,
    visitor_id: int,
    person_id: int | None,
    deleted: bool = False,
    line_client_ids: Iterable[int] | None = None,
    with_receipt: bool = True,
    fields: OutgoingFields = OutgoingFields(),
) -> SaveAllDataRequest:
    """The order, its lines and (for a paid order) one receipt of the paid amount.

    `deleted=True` is the reversal: the same records marked deleted (Mahak accepts edits
    until the desktop has imported the order), limited to the lines (`line_client_ids`) and
    receipt (`with_receipt`) Mahak was found to hold: a record it never took is not sent.
    Lines carry every field public clients send (§4): `itemType` 1, the store, the effective
    tax and charge % of the line's product (`OutgoingFields`), and 0 for the second unit, gift
    and discount type.
    """
    when: datetime = order.paid_at or order.created_at
    receipt = (
        _receipt(order, visitor_id=visitor_id, person_id=person_id, fields=fields, deleted=deleted)
        if with_receipt
        else None
    )
    wanted = set(line_client_ids) if line_client_ids is not None else None
    return SaveAllDataRequest(
        orders=[
            Order(
                order_client_id=order.order_client_id,
                visitor_id=visitor_id,
                person_id=person_id,
                order_type=ORDER_TYPE_SALE,
                order_date=when,
                delivery_date=when,
                discount=float(order.discount),
                discount_type=DISCOUNT_AMOUNT,
                send_cost=float(order.shipping_cost),
                settlement_type=SETTLEMENT_CASH,
                description=order.description or f"web order {order.id}",
                shipping_address=_shipping_address(order),
                receipt_client_id=receipt.receipt_client_id if receipt else None,
                deleted=deleted,
            )
        ],
        order_details=[
            OrderDetail(
                order_detail_client_id=ln.order_detail_client_id,
                order_client_id=order.order_client_id,
                item_type=ITEM_PRODUCT,
                product_detail_id=ln.product_detail_id,
                store_id=ln.store_id,
                price=float(ln.unit_price),
                count1=float(ln.quantity),
                count2=0.0,
                discount=float(ln.discount),
                discount_type=DISCOUNT_AMOUNT,
                tax_percent=fields.tax(_percent(ln.product_tax_percent)),
                charge_percent=fields.charge(_percent(ln.product_charge_percent)),
                gift=0,
                deleted=deleted,
            )
            for ln in order.lines
            if wanted is None or ln.order_detail_client_id in wanted
        ],
        receipts=[receipt] if receipt else None,
    )


def receipt_request(
    order: ShopOrder,
    *,
    visitor_id: int,
    person_id: int | None,
    fields: OutgoingFields = OutgoingFields(),
) -> SaveAllDataRequest:
    """The receipt alone, for an order Mahak holds without it (same deterministic client id,
    so a repeat updates the one receipt instead of adding a second payment)."""
    receipt = _receipt(order, visitor_id=visitor_id, person_id=person_id, fields=fields)
    return SaveAllDataRequest(receipts=[receipt] if receipt else [])


# --- Classifying Mahak's answer ---------------------------------------------------------------

# The refused property names which entity is stale (Mahak does not know the id we sent).
_REFERENCE_ENTITIES = {
    "productdetailid": "product_details",
    "storeid": "stores",
    "personid": "people",
    "personclientid": "people",
    "visitorid": "visitor_people",
}
_NOT_FOUND = re.compile(
    r"not\s*found|unknown|does\s*not\s*exist|not\s*exist|invalid|is\s*required|deleted|"
    r"یافت\s*نشد|وجود\s*ندارد|نامعتبر|حذف",
    re.I,
)


def _props(failure: RecordFailure | MahakFailure) -> list[str]:
    return [p.strip().lower() for p in (failure.property or "").split(",") if p.strip()]


def is_stock_failure(failure: RecordFailure | MahakFailure) -> bool:
    """Mahak's structured stock refusal: a line refused on its count. The wording is not
    public (and varies), so no text is matched: a message that merely mentions "stock" on
    another property is an operator's dispute, never an automatic cancel."""
    return failure.collection.lower() == "orderdetails" and any(
        p in ("count1", "count2") for p in _props(failure)
    )


def stale_entities(failure: RecordFailure | MahakFailure) -> list[str]:
    if not _NOT_FOUND.search(failure.message or ""):
        return []
    return sorted({_REFERENCE_ENTITIES[p] for p in _props(failure) if p in _REFERENCE_ENTITIES})


# Properties that carry the customer's own data: Mahak's complaint about one may quote it.
_CUSTOMER_PROPERTIES = frozenset(
    {
        "firstname",
        "lastname",
        "organization",
        "email",
        "mobile",
        "phone",
        "tel",
        "nationalcode",
        "address",
        "city",
        "state",
        "postalcode",
        "shippingaddress",
    }
)


def customer_values(order: ShopOrder) -> list[str | None]:
    values = [
        order.shipping_address,
        order.shipping_city,
        order.shipping_postal_code,
        order.shipping_phone,
        order.payment_ref,
    ]
    if order.customer is not None:
        values += [
            v
            for k, v in order.customer.model_dump().items()
            if isinstance(v, str) and k != "mahak_person_id"
        ]
    return values


def redact(text: str, order: ShopOrder) -> str:
    """Mahak's error texts travel into workflow history: the customer's own values, and
    anything shaped like an e-mail address or phone number, are cut out first."""
    return scrub(text, customer_values(order))


def as_failure(f: RecordFailure, order: ShopOrder) -> MahakFailure:
    # By structure first: a refusal of a customer field says which field, never its text.
    if any(p in _CUSTOMER_PROPERTIES for p in _props(f)):
        message = f"Mahak refused the customer's {f.property} ({CUSTOMER_DATA} withheld)"
    else:
        message = redact(f.message or "", order)[:500]
    return MahakFailure(
        collection=f.collection, client_id=f.client_id, property=f.property, message=message
    )


def classify(order: ShopOrder, result: SaveAllDataResult) -> SendOutcome:
    """Decide what Mahak's answer to `order_request(order)` means for the order."""
    head = result.for_client_id("Orders", order.order_client_id)
    mahak_order_id = head.entity_id if head is not None and head.result else None
    saved = sorted(
        ln.order_detail_client_id
        for ln in order.lines
        if (r := result.for_client_id("OrderDetails", ln.order_detail_client_id)) and r.result
    )
    raw = result.failures()
    failures = [as_failure(f, order) for f in raw]
    common = {
        "mahak_order_id": mahak_order_id,
        "saved_line_client_ids": saved,
        "failures": failures,
    }

    if any(f.collection.lower() == "orders" and is_already_registered(f) for f in raw):
        return SendOutcome(kind="already_registered", **common)
    if not raw and mahak_order_id is not None and len(saved) == len(order.lines):
        return SendOutcome(kind="accepted", **common)
    if any(is_stock_failure(f) for f in raw):
        return SendOutcome(kind="inventory", **common)
    stale = sorted({e for f in raw for e in stale_entities(f)})
    if stale and all(stale_entities(f) for f in raw):
        return SendOutcome(kind="stale_reference", stale_entities=stale, **common)
    if not raw:  # Result true yet our order or a line is missing from the answer
        failures.append(
            MahakFailure(
                collection="Orders",
                client_id=order.order_client_id,
                message="Mahak did not confirm every record of the order",
            )
        )
    return SendOutcome(kind="rejected", **common)


# --- Comparing what Mahak holds with the order ------------------------------------------------


@dataclass
class MahakHolding:
    """What Mahak holds under the order's client ids (deleted rows included)."""

    order: Order | None = None
    lines: dict[int, OrderDetail] = field(default_factory=dict)  # by our line client id
    # Lines of the order that carry no client id of ours (added in Mahak), by Mahak's id:
    # never ours to match or delete, always reported.
    foreign_lines: dict[int | None, OrderDetail] = field(default_factory=dict)
    receipt: Receipt | None = None

    def hold_line(self, line: OrderDetail, newer: Callable[[Any, Any], Any]) -> None:
        """Keep the later version of `line` (`newer` picks it) under its key."""
        if line.order_detail_client_id is None:
            self.foreign_lines[line.order_detail_id] = newer(
                self.foreign_lines.get(line.order_detail_id), line
            )
        else:
            self.lines[line.order_detail_client_id] = newer(
                self.lines.get(line.order_detail_client_id), line
            )

    def live_lines(self) -> list[OrderDetail]:
        return [d for d in [*self.lines.values(), *self.foreign_lines.values()] if not d.deleted]

    def live_line_client_ids(self) -> list[int]:
        return [
            d.order_detail_client_id
            for d in self.live_lines()
            if d.order_detail_client_id is not None
        ]

    def live_receipt(self) -> Receipt | None:
        return self.receipt if self.receipt is not None and not self.receipt.deleted else None

    def live_order(self) -> Order | None:
        return self.order if self.order is not None and not self.order.deleted else None

    def anything_live(self) -> bool:
        return bool(self.live_order() or self.live_lines() or self.live_receipt())

    def describe_live(self) -> list[str]:
        """What remains, as an operator finds it in Mahak."""
        out = []
        if (o := self.live_order()) is not None:
            out.append(f"Mahak order {o.order_id}")
        if lines := self.live_lines():
            out.append("line(s) " + ", ".join(str(d.order_detail_id) for d in lines))
        if (r := self.live_receipt()) is not None:
            out.append(f"receipt {r.receipt_id}")
        return out


def _money_differs(theirs: float | None, ours: Decimal | float) -> bool:
    return theirs is None or abs(float(theirs) - float(ours)) > 0.005


def compare_with_mahak(order: ShopOrder, held: MahakHolding) -> MahakOrderCheck:
    """Does Mahak hold exactly this order: header, every line (product detail, count, price,
    discount) and, for a paid order, the receipt (cash, the paid amount)?

    Lines Mahak lacks are not differences (a resend completes a partial save); a value that
    differs is, and so is a line or receipt we never sent. A missing receipt is reported on
    its own (`receipt_missing`): the caller sends it alone.
    """
    head = held.live_order()
    if head is None:
        return MahakOrderCheck(found=False, detail="Mahak holds no live order with our client id")
    problems: list[str] = []
    if head.order_type not in (None, ORDER_TYPE_SALE):
        problems.append(f"order type {head.order_type}, ours {ORDER_TYPE_SALE}")
    if head.settlement_type not in (None, SETTLEMENT_CASH):
        problems.append(f"settlement type {head.settlement_type}, ours {SETTLEMENT_CASH} (cash)")
    if head.discount is not None and _money_differs(head.discount, order.discount):
        problems.append(f"order discount {head.discount:g}, ours {order.discount}")
    if head.send_cost is not None and _money_differs(head.send_cost, order.shipping_cost):
        problems.append(f"send cost {head.send_cost:g}, ours {order.shipping_cost}")

    lines = {
        d.order_detail_client_id: d
        for d in held.live_lines()
        if d.order_detail_client_id is not None
    }
    foreign = [d.order_detail_id for d in held.live_lines() if d.order_detail_client_id is None]
    missing: list[int] = []
    for ln in order.lines:
        d = lines.pop(ln.order_detail_client_id, None)
        if d is None:
            missing.append(ln.order_detail_client_id)
            continue
        diffs = []
        if d.product_detail_id != ln.product_detail_id:
            diffs.append(f"product detail {d.product_detail_id}, ours {ln.product_detail_id}")
        if _money_differs(d.count1, ln.quantity):
            diffs.append(f"count {d.count1}, ours {ln.quantity}")
        if _money_differs(d.price, ln.unit_price):
            diffs.append(f"price {d.price}, ours {ln.unit_price}")
        if d.discount is not None and _money_differs(d.discount, ln.discount):
            diffs.append(f"discount {d.discount}, ours {ln.discount}")
        if diffs:
            problems.append(f"line {ln.order_detail_client_id}: " + ", ".join(diffs))
    if lines:
        problems.append(
            f"Mahak holds line(s) {', '.join(map(str, sorted(lines)))} that the order does not have"
        )
    if foreign:
        problems.append(
            f"Mahak holds line(s) {', '.join(map(str, foreign))} (Mahak ids, added "
            "in Mahak) that the order does not have"
        )

    receipt = held.live_receipt()
    receipt_missing = False
    if order.payment_status == "paid":
        if receipt is None:
            receipt_missing = True
        elif _money_differs(receipt.cash_amount, order.amount):
            problems.append(
                f"receipt {receipt.receipt_id} cash amount {receipt.cash_amount}, "
                f"ours {order.amount}"
            )
    elif receipt is not None:
        problems.append(f"receipt {receipt.receipt_id} for an order that is not paid")

    return MahakOrderCheck(
        found=True,
        matches=not problems and not missing,
        mahak_order_id=head.order_id,
        missing_line_client_ids=missing,
        receipt_missing=receipt_missing and not missing,
        mahak_receipt_id=receipt.receipt_id if receipt is not None else None,
        differs=bool(problems),
        detail="; ".join(
            problems + ([f"line(s) {', '.join(map(str, missing))} not in Mahak"] if missing else [])
        )[:500],
    )
