"""Issue 12: what the client puts on the wire (dates, person group, line and receipt fields),
deletes with a bad value, and entity names as operators type them. Pure tests, no servers."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from activities.order_request import (
    OutgoingFields,
    customer_request,
    order_request,
    receipt_request,
)
from mahak_client.envelope import parse_row
from mahak_client.models import ENTITIES, Order, ProductDetail, RejectedRow, entity_name
from mahak_client.models import parse_tehran as parse_mahak_datetime
from shopdb.models import ShopCustomer, ShopOrder
from tests.order_helpers import loaded_order
from workflows.incoming_types import ResetCursorRequest

TEHRAN = ZoneInfo("Asia/Tehran")
UTC = UTC


def _order(paid_at: datetime, **extra: Any) -> ShopOrder:
    return loaded_order(paid_at, **extra)


FIELDS = OutgoingFields(tax_percent=9, charge_percent=0, cash_code=1)


# --- 1. Dates -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "paid_at, wall",
    [
        (datetime(2025, 1, 15, 10, 0, tzinfo=UTC), "2025-01-15T13:30:00"),  # winter
        (datetime(2025, 7, 15, 10, 0, tzinfo=UTC), "2025-07-15T13:30:00"),  # no DST since 2022
        (datetime(2020, 7, 15, 10, 0, tzinfo=UTC), "2020-07-15T14:30:00"),  # DST back then
        (datetime(2025, 10, 4, 23, 0, tzinfo=UTC), "2025-10-05T02:30:00"),  # crosses midnight
    ],
)
def test_every_date_goes_out_as_naive_tehran_wall_clock(paid_at, wall):
    body = order_request(_order(paid_at), visitor_id=1, person_id=2, fields=FIELDS).to_wire()
    assert body["orders"][0]["orderDate"] == wall
    assert body["orders"][0]["deliveryDate"] == wall
    assert body["receipts"][0]["date"] == wall
    alone = receipt_request(_order(paid_at), visitor_id=1, person_id=2, fields=FIELDS).to_wire()
    assert alone["receipts"][0]["date"] == wall


def test_naive_server_dates_are_read_as_tehran_by_the_tz_database():
    assert parse_mahak_datetime("2025-07-15T13:30:00") == datetime(2025, 7, 15, 10, 0, tzinfo=UTC)
    assert parse_mahak_datetime("2020-07-15T14:30:00.1234567") == datetime(
        2020, 7, 15, 10, 0, 0, 123456, tzinfo=UTC
    )
    assert parse_mahak_datetime(datetime(2020, 7, 15, 14, 30)) == datetime(
        2020, 7, 15, 10, 0, tzinfo=UTC
    )
    # Every model reads them so.
    order = Order.model_validate({"OrderDate": "2020-07-15T14:30:00", "OrderId": 1})
    assert order.order_date == datetime(2020, 7, 15, 10, 0, tzinfo=UTC)
    # An explicit offset is kept.
    assert parse_mahak_datetime("2025-07-15T10:00:00Z") == datetime(2025, 7, 15, 10, 0, tzinfo=UTC)


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 26), st.sampled_from("0123456789-T :.Z+\u0663x")),
        max_size=3,
    ),
    st.integers(16, 27),
)
def test_mahaks_usual_date_spelling_reads_as_every_other_spelling(
    edits: list[tuple[int, str]], length: int
) -> None:
    """Issue 16: `YYYY-MM-DDTHH:MM:SS[.f]` is read without the regex; mangled variants of it
    read exactly as the regex reads them (a leading space sends a value to the regex)."""
    chars = list("2020-07-15T14:30:00.1234567"[:length])
    for at, char in edits:
        chars[at % len(chars)] = char
    value = "".join(chars)

    def read(text: str) -> Any:
        try:
            return parse_mahak_datetime(text)
        except ValueError:
            return ValueError

    assert read(value) == read(" " + value)


# --- 2. Person group ----------------------------------------------------------------------


def test_new_customer_carries_its_person_group():
    customer = ShopCustomer(id=3, first_name="Sara", last_name="K", mobile="09120000000")
    body = customer_request(customer, visitor_id=10101, person_group_id=77).to_wire()
    assert body["people"][0]["personGroupId"] == 77


# --- 3. Line and receipt fields -------------------------------------------------------------


def test_lines_carry_the_fields_public_clients_send():
    body = order_request(
        _order(datetime(2025, 1, 15, 10, 0, tzinfo=UTC)), visitor_id=1, person_id=2, fields=FIELDS
    ).to_wire()
    for line in body["orderDetails"]:
        assert line["itemType"] == 1 and line["storeId"] == 5
        assert line["taxPercent"] == 9 and line["chargePercent"] == 0
        assert line["count2"] == 0 and line["discount"] == 0 and line["discountType"] == 0
        assert line["gift"] == 0 and line["deleted"] is False


def test_each_line_carries_its_products_tax_and_charge():
    # The product's own % where it has one; -1 none; 0 or not mirrored: the setting.
    order = _order(datetime(2025, 1, 15, 10, 0, tzinfo=UTC))
    products = [(Decimal("4.5"), Decimal(-1)), (None, Decimal(0))]
    order = order.model_copy(
        update={
            "lines": [
                ln.model_copy(update={"product_tax_percent": tax, "product_charge_percent": charge})
                for ln, (tax, charge) in zip(order.lines, products)
            ]
        }
    )
    fields = OutgoingFields(tax_percent=9, charge_percent=3, cash_code=1)
    body = order_request(order, visitor_id=1, person_id=2, fields=fields).to_wire()
    assert [(ln["taxPercent"], ln["chargePercent"]) for ln in body["orderDetails"]] == [
        (4.5, 0),
        (9, 3),
    ]


def test_effective_percent_of_a_product_value():
    # -1 -> 0; 0 -> the setting; else the product's own value (shared/mahak-api.md §4).
    f = OutgoingFields(tax_percent=9, charge_percent=3)
    assert (f.tax(-1), f.tax(0), f.tax(None), f.tax(4.5)) == (0, 9, 9, 4.5)
    assert (f.charge(-1), f.charge(0), f.charge(2)) == (0, 3, 2)


def test_receipt_carries_a_cash_code_or_a_bank():
    order = _order(datetime(2025, 1, 15, 10, 0, tzinfo=UTC))
    [cash] = order_request(order, visitor_id=1, person_id=2, fields=FIELDS).to_wire()["receipts"]
    assert cash["cashCode"] == 1 and "bankId" not in cash and cash["cashAmount"] == 3000.0
    bank = OutgoingFields(bank_id=4)
    [by_bank] = receipt_request(order, visitor_id=1, person_id=2, fields=bank).to_wire()["receipts"]
    assert by_bank["bankId"] == 4 and "cashCode" not in by_bank
    assert OutgoingFields().receipt_problem() is not None and FIELDS.receipt_problem() is None


# --- 4. A delete with a null required number --------------------------------------------------


def test_a_deleted_row_with_a_null_number_is_still_a_delete():
    spec = ENTITIES["product_details"]
    row = parse_row(
        spec,
        {
            "ProductDetailId": 5,
            "ProductId": 9,
            "Deleted": True,
            "Price1": None,
            "Price2": "x",
            "RowVersion": 4_000_000_001,
        },
    )
    assert isinstance(row, ProductDetail)
    assert row.product_detail_id == 5 and row.deleted and row.row_version == 4_000_000_001
    # A live row with the same bad value is still quarantined.
    live = parse_row(
        spec,
        {
            "ProductDetailId": 5,
            "ProductId": 9,
            "Deleted": False,
            "Price1": None,
            "RowVersion": 4_000_000_002,
        },
    )
    assert isinstance(live, RejectedRow) and "price1" in live.error


# --- 5. Entity names -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "given, name",
    [
        ("Products", "products"),
        ("products", "products"),
        ("ProductDetails", "product_details"),
        ("product_details", "product_details"),
        ("PRODUCT_DETAILS", "product_details"),
        ("ProductDetailStoreAssets", "product_detail_store_assets"),
    ],
)
def test_entity_names_as_mahak_spells_them_and_in_snake_case(given, name):
    assert entity_name(given) == name
    request = ResetCursorRequest(entity=given, row_version=0)
    request.validate_request()
    assert request.entities() == [name]


def test_unknown_entity_lists_the_valid_names():
    with pytest.raises(ValueError) as info:
        entity_name("prodcts")
    assert "product_details" in str(info.value) and "ProductDetails" in str(info.value)
    with pytest.raises(ValueError, match="product_details"):
        ResetCursorRequest(entity="Widgets").validate_request()
    assert ResetCursorRequest(entity="*").entities()[0] == "stores"


@pytest.mark.parametrize(
    "argv, name",
    [
        (["sync", "reset-cursor", "ProductDetails"], "product_details"),
        (["sync", "reset-cursor", "products"], "products"),
        (["sync", "reset-cursor", "*"], "*"),
        (["mahak", "pull", "ProductDetails"], "product_details"),
        (["mahak", "pull", "person_groups"], "person_groups"),
    ],
)
def test_cli_accepts_both_spellings(argv, name):
    import argparse

    from mahak_sync import cli_mahak, cli_sync

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    cli_sync.register(sub)
    cli_mahak.register(sub)
    assert parser.parse_args(argv).entity == name


def test_cli_lists_valid_names_for_an_unknown_one(capsys):
    import argparse

    from mahak_sync import cli_sync

    parser = argparse.ArgumentParser()
    cli_sync.register(parser.add_subparsers())
    with pytest.raises(SystemExit):
        parser.parse_args(["sync", "reset-cursor", "Widgets"])
    err = capsys.readouterr().err
    assert "unknown entity 'Widgets'" in err and "product_details (ProductDetails)" in err
