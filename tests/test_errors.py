"""The one error table (`mahak_sync.errors`): every exception type an activity meets maps to
a retryable or non-retryable `ApplicationError` type, and the text that reaches workflow
history is built from known, safe fields only."""

from __future__ import annotations

from decimal import Decimal

import asyncpg
import pydantic
import pytest
from temporalio.exceptions import ApplicationError

from activities.order_request import as_failure, redact
from mahak_client.errors import (
    MahakAuthError,
    MahakPermanentError,
    MahakProtocolError,
    MahakTransientError,
)
from mahak_client.save import RecordFailure
from mahak_sync.errors import RETRYABLE_TYPES, ErrorType, classify, scrub
from shopdb.models import ShopCustomer, ShopOrder
from shopdb.orders import OrderNotFoundError, OrderStateError


def _pg(
    cls: type[asyncpg.PostgresError], message: str, detail: str | None = None
) -> asyncpg.PostgresError:
    err = cls(message)
    err.message = message
    err.detail = detail
    return err


@pytest.mark.parametrize(
    ("err", "type_", "retryable"),
    [
        (
            MahakTransientError("HTTP 503", endpoint="SaveAllDataV2", status_code=503),
            ErrorType.MAHAK_UNAVAILABLE,
            True,
        ),
        (MahakAuthError("login refused", endpoint="LoginV2"), ErrorType.MAHAK_AUTH, True),
        (
            MahakProtocolError("truncated JSON", endpoint="SaveAllDataV2"),
            ErrorType.MAHAK_BAD_RESPONSE,
            True,
        ),
        (
            MahakPermanentError("request rejected", endpoint="SaveAllDataV2", status_code=400),
            ErrorType.MAHAK_REFUSED,
            False,
        ),
        (
            asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
            ErrorType.DB_UNAVAILABLE,
            True,
        ),
        (
            _pg(asyncpg.CannotConnectNowError, "the database system is starting up"),
            ErrorType.DB_UNAVAILABLE,
            True,
        ),
        (
            _pg(asyncpg.AdminShutdownError, "terminating connection due to administrator command"),
            ErrorType.DB_UNAVAILABLE,
            True,
        ),
        (ConnectionRefusedError(111, "Connection refused"), ErrorType.DB_UNAVAILABLE, True),
        (
            _pg(asyncpg.UndefinedTableError, 'relation "shop_orders" does not exist'),
            ErrorType.DB_ERROR,
            True,
        ),
        (OrderNotFoundError(7), ErrorType.ORDER_NOT_FOUND, False),
        (
            OrderStateError(7, "cannot cancel an order in status 'synced'"),
            ErrorType.ORDER_STATE,
            False,
        ),
    ],
)
def test_every_exception_type_maps_to_one_application_error(err, type_, retryable):
    mapped = classify(err)
    assert isinstance(mapped, ApplicationError)
    assert mapped.type == type_ and mapped.non_retryable is (not retryable)
    assert (type_ in RETRYABLE_TYPES) is retryable


def test_validation_errors_are_final_and_never_quote_the_input():
    class Row(pydantic.BaseModel):
        mobile: int

    with pytest.raises(pydantic.ValidationError) as caught:
        Row(mobile="0912-SECRET-555")
    mapped = classify(caught.value)
    assert mapped.type == ErrorType.INVALID_DATA and mapped.non_retryable
    assert "mobile" in mapped.message and "SECRET" not in mapped.message


def test_postgres_detail_with_row_values_stays_out_of_the_text():
    err = _pg(
        asyncpg.UniqueViolationError,
        "duplicate key value violates unique constraint",
        detail="Key (email)=(negin@example.com) already exists.",
    )
    mapped = classify(err)
    assert "[23505]" in mapped.message and "example.com" not in mapped.message


def test_mahak_text_is_scrubbed_of_contact_data_and_given_values():
    err = MahakPermanentError(
        "refused",
        endpoint="SaveAllDataV2",
        mahak_message="mobile 0912 345 6789 and mail a.b@x.ir for Negin",
    )
    mapped = classify(err, customer_values=["Negin"])
    assert "6789" not in mapped.message and "x.ir" not in mapped.message
    assert "Negin" not in mapped.message and "SaveAllDataV2" in mapped.message
    assert scrub("+989121234567 or 02188776655") == "[customer data] or [customer data]"


def test_unknown_exception_types_are_retried_under_their_own_name():
    mapped = classify(KeyError("x"))
    assert mapped.type == "KeyError" and not mapped.non_retryable


def test_retry_after_from_mahak_becomes_the_next_retry_delay():
    mapped = classify(MahakTransientError("429", endpoint="GetAllDataV2", retry_after=12))
    assert mapped.next_retry_delay is not None and mapped.next_retry_delay.total_seconds() == 12


def _order() -> ShopOrder:
    customer = ShopCustomer(
        id=1,
        first_name="Negin",
        last_name="Karimi",
        mobile="09351234567",
        created_at="2026-01-01T00:00:00Z",
        updated_at="2026-01-01T00:00:00Z",
    )
    return ShopOrder(
        id=1,
        customer_id=1,
        amount=Decimal(1),
        currency="IRR",
        payment_status="paid",
        shipping_cost=Decimal(0),
        discount=Decimal(0),
        order_client_id=8_000_000_000_000_001,
        sync_status="sending",
        synced_to_mahak=False,
        sync_attempts=0,
        shipping_address="Shiraz, Eram 7",
        created_at="2026-01-01T00:00:00Z",
        updated_at="2026-01-01T00:00:00Z",
        customer=customer,
    )


def test_a_refused_customer_field_is_redacted_by_structure_not_by_search():
    # Mahak quotes the value in a form no substring search of ours would find.
    failure = RecordFailure(
        collection="People", property="Mobile", message="شماره 9351234567+ نامعتبر است"
    )
    redacted = as_failure(failure, _order())
    assert "935" not in redacted.message and "Mobile" in redacted.message
    other = as_failure(
        RecordFailure(
            collection="OrderDetails",
            property="Count1",
            message="insufficient stock for Negin Karimi",
        ),
        _order(),
    )
    assert "Negin" not in other.message and "insufficient stock" in other.message
    assert redact("ship to shiraz, eram 7", _order()) == "ship to [customer data]"
