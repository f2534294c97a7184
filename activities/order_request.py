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
from collections.abc import Iterable
from datetime import datetime

from mahak_client.models import Order, OrderDetail, Person, Receipt, VisitorPerson
from mahak_client.save import RecordFailure, SaveAllDataRequest, SaveAllDataResult, is_already_registered
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


# --- Building ---------------------------------------------------------------------------------


def customer_request(customer: ShopCustomer, *, visitor_id: int) -> SaveAllDataRequest:
    """Create (or, on a resend, update) the customer as a Mahak person linked to our visitor."""
    client_id = person_client_id(customer.id)
    return SaveAllDataRequest(
        people=[Person(
            person_client_id=client_id,
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
        )],
        visitor_people=[VisitorPerson(person_client_id=client_id, visitor_id=visitor_id)],
    )


def _shipping_address(order: ShopOrder) -> str | None:
    """Mahak wants the address as a JSON *string* with its own keys."""
    if not (order.shipping_address or order.shipping_postal_code or order.shipping_phone):
        return None
    return json.dumps({
        "title": "web",
        "address": order.shipping_address or "",
        "postalcode": order.shipping_postal_code or "",
        "mobile": order.shipping_phone or "",
        "tel": "",
        "description": order.shipping_city or "",
    }, ensure_ascii=False)


def order_request(
    order: ShopOrder,
    *,
    visitor_id: int,
    person_id: int | None,
    deleted: bool = False,
    line_client_ids: Iterable[int] | None = None,
) -> SaveAllDataRequest:
    """The order, its lines and (for a paid order) one receipt of the paid amount.

    `deleted=True` with `line_client_ids` is the reversal of a partial save: the same records,
    marked deleted (Mahak accepts edits until the desktop has imported the order). A reversal
    sends no receipt: none is held for an order Mahak only partly took.
    """
    when: datetime = order.paid_at or order.created_at
    wanted = set(line_client_ids) if line_client_ids is not None else None
    lines = [ln for ln in order.lines if wanted is None or ln.order_detail_client_id in wanted]
    receipt = None
    if order.payment_status == "paid" and not deleted:
        receipt = Receipt(
            receipt_client_id=order.order_client_id,
            order_client_id=order.order_client_id,
            person_id=person_id,
            visitor_id=visitor_id,
            cash_amount=float(order.amount),
            date=when,
            description=f"web payment {order.payment_ref}" if order.payment_ref else None,
        )
    return SaveAllDataRequest(
        orders=[Order(
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
        )],
        order_details=[
            OrderDetail(
                order_detail_client_id=ln.order_detail_client_id,
                order_client_id=order.order_client_id,
                item_type=ITEM_PRODUCT,
                product_detail_id=ln.product_detail_id,
                store_id=ln.store_id,
                price=float(ln.unit_price),
                count1=float(ln.quantity),
                discount=float(ln.discount),
                discount_type=DISCOUNT_AMOUNT,
                deleted=deleted,
            )
            for ln in lines
        ],
        receipts=[receipt] if receipt else None,
    )


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
_STOCK = re.compile(r"stock|inventory|insufficient|not\s*enough|موجودی|کسری", re.I)


def _props(failure: RecordFailure | MahakFailure) -> list[str]:
    return [p.strip().lower() for p in (failure.property or "").split(",") if p.strip()]


def is_stock_failure(failure: RecordFailure | MahakFailure) -> bool:
    return bool(_STOCK.search(failure.message or "")) or any(
        p in ("count1", "count2") for p in _props(failure)
    )


def stale_entities(failure: RecordFailure | MahakFailure) -> list[str]:
    if not _NOT_FOUND.search(failure.message or ""):
        return []
    return sorted({_REFERENCE_ENTITIES[p] for p in _props(failure) if p in _REFERENCE_ENTITIES})


_REDACTED = "[customer data]"


def redact(text: str, order: ShopOrder) -> str:
    """Mahak's error texts travel into workflow history; should one quote what it refused
    (a mobile number, a name, an address), the customer's data is cut out first."""
    customer = order.customer
    values = [order.shipping_address, order.shipping_city, order.shipping_postal_code,
              order.shipping_phone]
    if customer is not None:
        values += [v for k, v in customer.model_dump().items()
                   if isinstance(v, str) and k != "mahak_person_id"]
    # Longest first, so a value is never left half-replaced by one it contains.
    for value in sorted({v.strip() for v in values if v and len(v.strip()) >= 3},
                        key=len, reverse=True):
        text = re.sub(re.escape(value), _REDACTED, text, flags=re.IGNORECASE)
    return text


def as_failure(f: RecordFailure, order: ShopOrder) -> MahakFailure:
    return MahakFailure(collection=f.collection, client_id=f.client_id, property=f.property,
                        message=redact(f.message or "", order)[:500])


def classify(order: ShopOrder, result: SaveAllDataResult) -> SendOutcome:
    """Decide what Mahak's answer to `order_request(order)` means for the order."""
    head = result.for_client_id("Orders", order.order_client_id)
    mahak_order_id = head.entity_id if head is not None and head.result else None
    saved = sorted(
        ln.order_detail_client_id for ln in order.lines
        if (r := result.for_client_id("OrderDetails", ln.order_detail_client_id)) and r.result
    )
    raw = result.failures()
    failures = [as_failure(f, order) for f in raw]
    common = {"mahak_order_id": mahak_order_id, "saved_line_client_ids": saved,
              "failures": failures}

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
        failures.append(MahakFailure(collection="Orders", client_id=order.order_client_id,
                                     message="Mahak did not confirm every record of the order"))
    return SendOutcome(kind="rejected", **common)


# --- Comparing what Mahak holds with the order ------------------------------------------------


def compare_with_mahak(
    order: ShopOrder,
    mahak_order: Order | None,
    mahak_lines: Iterable[OrderDetail],
) -> MahakOrderCheck:
    """Does Mahak hold exactly this order: our client id, every line, same product and count?"""
    if mahak_order is None or mahak_order.deleted:
        return MahakOrderCheck(found=False, detail="Mahak holds no live order with our client id")
    held = {d.order_detail_client_id: d for d in mahak_lines if not d.deleted}
    problems: list[str] = []
    for ln in order.lines:
        d = held.pop(ln.order_detail_client_id, None)
        if d is None:
            problems.append(f"line {ln.order_detail_client_id} missing")
        elif d.product_detail_id != ln.product_detail_id or float(d.count1 or 0) != float(ln.quantity):
            problems.append(
                f"line {ln.order_detail_client_id} is {d.product_detail_id} x {d.count1}, "
                f"ours {ln.product_detail_id} x {ln.quantity}"
            )
    if held:
        problems.append(f"{len(held)} line(s) in Mahak that the order does not have")
    return MahakOrderCheck(
        found=True, matches=not problems, mahak_order_id=mahak_order.order_id,
        detail="; ".join(problems)[:500],
    )
