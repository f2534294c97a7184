"""The order as SaveAllData sends it, and how Mahak's per-record answers are read."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from activities.order_request import OutgoingFields, classify, customer_request, order_request
from mahak_client.save import EntityError, EntityUpdateResult, SaveAllDataResult
from mahak_simulator.saving import ALREADY_REGISTERED
from shopdb.models import ShopCustomer, ShopOrder
from tests.order_helpers import loaded_order

NOW = datetime(2025, 10, 4, 12, 0, tzinfo=UTC)


def _order() -> ShopOrder:
    return loaded_order(NOW)


def test_wire_shape_of_a_paid_order():
    fields = OutgoingFields(tax_percent=9, charge_percent=3, cash_code=1)
    body = order_request(_order(), visitor_id=10101, person_id=42, fields=fields).to_wire()
    [head] = body["orders"]
    # Issue 12: naive Tehran wall clock (12:00 UTC = 15:30 in Tehran), no offset.
    assert head["orderDate"] == head["deliveryDate"] == "2025-10-04T15:30:00"
    assert head["orderClientId"] == 8_000_000_000_000_007 and head["orderType"] == 201
    assert head["visitorId"] == 10101 and head["personId"] == 42 and head["deleted"] is False
    assert head["receiptClientId"] == head["orderClientId"]
    assert [
        (d["orderDetailClientId"], d["productDetailId"], d["storeId"], d["count1"])
        for d in body["orderDetails"]
    ] == [(8_100_000_000_000_001, 101, 5, 1.0), (8_100_000_000_000_002, 102, 5, 2.0)]
    # Issue 12: every field public clients send on a line (shared/mahak-api.md §4).
    assert all(
        (
            d["itemType"],
            d["count2"],
            d["discount"],
            d["discountType"],
            d["taxPercent"],
            d["chargePercent"],
            d["gift"],
            d["deleted"],
        )
        == (1, 0, 0, 0, 9, 3, 0, False)
        for d in body["orderDetails"]
    )
    [receipt] = body["receipts"]
    assert receipt["cashAmount"] == 3000.0 and receipt["cashCode"] == 1
    assert receipt["date"] == "2025-10-04T15:30:00" and "bankId" not in receipt


def test_new_customer_names_its_person_group():
    body = customer_request(
        ShopCustomer(id=3, first_name="Negin"), visitor_id=10101, person_group_id=5
    ).to_wire()
    assert body["people"][0]["personGroupId"] == 5
    assert body["visitorPeople"] == [
        {"personClientId": 7_000_000_000_000_003, "visitorId": 10101, "deleted": False}
    ]


def test_reversal_deletes_the_held_lines_and_the_receipt_the_send_created():
    # Issue 11, defect 1: the reversal once left the cash receipt in Mahak.
    body = order_request(
        _order(), visitor_id=1, person_id=2, deleted=True, line_client_ids=[8_100_000_000_000_001]
    ).to_wire()
    assert body["orders"][0]["deleted"] is True
    assert [d["orderDetailClientId"] for d in body["orderDetails"]] == [8_100_000_000_000_001]
    assert body["orderDetails"][0]["deleted"] is True
    [receipt] = body["receipts"]
    assert (
        receipt["deleted"] is True
        and receipt["receiptClientId"] == body["orders"][0]["orderClientId"]
    )
    # A receipt Mahak was found not to hold is not sent.
    assert (
        "receipts"
        not in order_request(
            _order(), visitor_id=1, person_id=2, deleted=True, with_receipt=False
        ).to_wire()
    )


def _answer(line2: tuple[str, str] | None, head_error: tuple[str, str] | None = None):
    order = _order()
    head = (
        EntityUpdateResult(
            result=False,
            index=1,
            entity_client_id=order.order_client_id,
            errors=[EntityError(property=head_error[0], error=head_error[1])],
        )
        if head_error
        else EntityUpdateResult(
            result=True, index=1, entity_id=900, entity_client_id=order.order_client_id
        )
    )
    details = [
        EntityUpdateResult(
            result=True,
            index=1,
            entity_id=901,
            entity_client_id=order.lines[0].order_detail_client_id,
        )
    ]
    if line2 is None:
        details.append(
            EntityUpdateResult(
                result=True,
                index=2,
                entity_id=902,
                entity_client_id=order.lines[1].order_detail_client_id,
            )
        )
    else:
        details.append(
            EntityUpdateResult(
                result=False,
                index=2,
                entity_client_id=order.lines[1].order_detail_client_id,
                errors=[EntityError(property=line2[0], error=line2[1])],
            )
        )
    failed = line2 is not None or head_error is not None
    return order, SaveAllDataResult(
        result=not failed, collections={"Orders": [head], "OrderDetails": details}
    )


@pytest.mark.parametrize(
    "line2, head_error, kind, stale",
    [
        (None, None, "accepted", []),
        (("Count1", "موجودی کالا در انبار کافی نیست (insufficient stock)"), None, "inventory", []),
        (
            ("ProductDetailId", "کالا یافت نشد (ProductDetailId 5 not found)"),
            None,
            "stale_reference",
            ["product_details"],
        ),
        (("StoreId", "انبار یافت نشد (StoreId 9 not found)"), None, "stale_reference", ["stores"]),
        (("Price", "price is below the allowed minimum"), None, "rejected", []),
        # Issue 11: only the structured refusal (a line's count) cancels automatically; a text that
        # merely mentions stock on another property is an operator's dispute.
        (
            ("Description", "stock note too long (insufficient inventory wording)"),
            None,
            "rejected",
            [],
        ),
        (("Count2", "second unit exceeds what the store holds"), None, "inventory", []),
        (
            ("OrderId", ALREADY_REGISTERED),
            ("OrderId", ALREADY_REGISTERED),
            "already_registered",
            [],
        ),
    ],
)
def test_classification(line2, head_error, kind, stale):
    order, result = _answer(line2, head_error)
    outcome = classify(order, result)
    assert outcome.kind == kind and outcome.stale_entities == stale
    if head_error is None:
        assert outcome.mahak_order_id == 900
        expected = [8_100_000_000_000_001] + ([8_100_000_000_000_002] if line2 is None else [])
        assert outcome.saved_line_client_ids == expected


def test_mahak_texts_quoting_customer_data_are_redacted_before_reaching_history():
    order, result = _answer(("Description", "address 'Shiraz, Eram St. 7' of 09351234567 too long"))
    order = order.model_copy(
        update={
            "shipping_address": "Shiraz, Eram St. 7",
            "customer": ShopCustomer(id=3, first_name="Negin", mobile="09351234567"),
        }
    )
    [failure] = classify(order, result).failures
    assert "Eram" not in failure.message and "0935" not in failure.message
    assert failure.message == "address '[customer data]' of [customer data] too long"


def test_a_line_added_in_mahak_is_reported_never_matched_or_deleted_as_ours():
    # A line of our Mahak order without a client id of ours (added in Mahak desktop): it
    # made the comparison crash (sorting None with ids) and would have gone into a reversal
    # as a client id of None.
    from activities.order_request import MahakHolding, compare_with_mahak
    from mahak_client.models import Order, OrderDetail, Receipt

    order = _order()
    held = MahakHolding(
        order=Order(order_id=55, order_client_id=order.order_client_id, row_version=1),
        receipt=Receipt(receipt_client_id=order.order_client_id, cash_amount=3000.0, row_version=1),
    )
    newer = lambda old, new: new  # noqa: E731 - the lookup's own rule is tested with it
    for ln in order.lines:
        held.hold_line(
            OrderDetail(
                order_detail_id=ln.id,
                order_detail_client_id=ln.order_detail_client_id,
                order_id=55,
                product_detail_id=ln.product_detail_id,
                count1=float(ln.quantity),
                price=float(ln.unit_price),
                row_version=1,
            ),
            newer,
        )
    held.hold_line(
        OrderDetail(
            order_detail_id=999,
            order_id=55,
            product_detail_id=100,
            count1=1.0,
            price=5.0,
            row_version=2,
        ),
        newer,
    )

    check = compare_with_mahak(order, held)
    assert check.found and not check.matches
    assert "Mahak holds line(s) 999 (Mahak ids, added in Mahak)" in (check.detail or "")
    assert held.live_line_client_ids() == [ln.order_detail_client_id for ln in order.lines]
    assert len(held.live_lines()) == 3
