"""One error classification for every activity of both flows.

Each exception an activity can meet maps, in `RULES`, to an `ApplicationError` type and to
whether Temporal may retry it. The worker applies the table to every activity through
`ErrorClassifier` (an activity interceptor), so no activity decides on its own and no raw
driver exception reaches a workflow: a PostgreSQL outage is `DatabaseUnavailable` (retried)
wherever it strikes, never something a workflow could mistake for Mahak refusing an order.

The text that goes with the type lands in workflow history, so it is built from the known,
safe fields of each exception (endpoint, HTTP status, SQLSTATE, pydantic error locations),
never from free text that may quote a row: PostgreSQL's DETAIL and pydantic's input values
are left out, and what Mahak said passes through `scrub` (e-mail addresses and phone numbers,
plus any customer values the caller names) first.

Workflows import only the type names (the `ErrorType` constants); this module's I/O imports
are passed through their sandbox.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import asyncpg
import pydantic
from temporalio.exceptions import ApplicationError
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)

from mahak_client.errors import (
    MahakAuthError,
    MahakError,
    MahakPermanentError,
    MahakProtocolError,
    MahakTransientError,
)


class ErrorType:
    """`ApplicationError.type` values, as workflows and operators see them."""

    MAHAK_UNAVAILABLE = "MahakTransientError"  # timeouts, 5xx, dropped connections, 429
    MAHAK_AUTH = "MahakAuthError"  # bad credentials: an operator fixes them, the work waits
    MAHAK_BAD_RESPONSE = "MahakProtocolError"  # a body that is not the documented envelope
    MAHAK_REFUSED = "MahakPermanentError"  # Mahak refused the whole request
    DB_UNAVAILABLE = "DatabaseUnavailable"  # connection lost, server restarting, too busy
    DB_ERROR = "DatabaseError"  # any other PostgreSQL error: retried until a fix is deployed
    INVALID_DATA = "InvalidData"  # a payload that fails validation: retrying cannot help
    ORDER_NOT_FOUND = "OrderNotFound"
    ORDER_STATE = "OrderStateError"


# Types a workflow treats as "try again later"; everything else is an answer to act on.
RETRYABLE_TYPES: frozenset[str] = frozenset(
    {
        ErrorType.MAHAK_UNAVAILABLE,
        ErrorType.MAHAK_AUTH,
        ErrorType.MAHAK_BAD_RESPONSE,
        ErrorType.DB_UNAVAILABLE,
        ErrorType.DB_ERROR,
    }
)

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+")
# Iranian mobiles and landlines (09xx…, +98…, 0098…), with or without separators.
_PHONE = re.compile(r"(?<!\d)(?:\+98|0098|0)[\s-]?\d{2,3}(?:[\s-]?\d){7,8}(?!\d)")
CUSTOMER_DATA = "[customer data]"


def scrub(text: str, values: Iterable[str | None] = ()) -> str:
    """Cut e-mail addresses, phone numbers and the given values (longest first) from text."""
    for value in sorted(
        {v.strip() for v in values if v and len(v.strip()) >= 3}, key=len, reverse=True
    ):
        text = re.sub(re.escape(value), CUSTOMER_DATA, text, flags=re.IGNORECASE)
    text = _EMAIL.sub(CUSTOMER_DATA, text)
    return _PHONE.sub(CUSTOMER_DATA, text)


def _mahak_text(err: BaseException) -> str:
    assert isinstance(err, MahakError)
    parts = [f"HTTP {err.status_code}"] if err.status_code is not None else []
    if err.code is not None:
        parts.append(f"code {err.code}")
    if err.mahak_message:
        parts.append(f"Mahak says: {scrub(err.mahak_message)[:300]}")
    suffix = f" ({'; '.join(parts)})" if parts else ""
    return f"Mahak {err.endpoint}: {scrub(err.summary)[:300]}{suffix}"


def _postgres_text(err: BaseException) -> str:
    # The primary message names the failure; DETAIL (which quotes row values) is left out.
    state = getattr(err, "sqlstate", None)
    message = getattr(err, "message", None) or type(err).__name__
    return (
        f"PostgreSQL {type(err).__name__}"
        + (f" [{state}]" if state else "")
        + f": {scrub(str(message))[:300]}"
    )


def _connection_text(err: BaseException) -> str:
    return f"database connection failed: {type(err).__name__}"


def _validation_text(err: BaseException) -> str:
    assert isinstance(err, pydantic.ValidationError)
    problems = [
        f"{'.'.join(map(str, e['loc'])) or '<root>'}: {e['msg']}"
        for e in err.errors(include_input=False, include_url=False)[:5]
    ]
    return f"invalid {err.title}: " + "; ".join(problems)


def _plain_text(err: BaseException) -> str:
    return scrub(str(err))[:500]


def _is_connection_error(err: BaseException) -> bool:
    # SQLSTATE classes 08 (connection), 53 (resources), 57 (operator intervention: shutdown,
    # cannot connect now) and 58 (system) all mean "the server is not serving us right now".
    state = getattr(err, "sqlstate", None) or ""
    return state[:2] in ("08", "53", "57", "58")


@dataclass(frozen=True)
class Rule:
    matches: Callable[[BaseException], bool]
    type: str
    retryable: bool
    describe: Callable[[BaseException], str]


def _is(*types: type[BaseException]) -> Callable[[BaseException], bool]:
    return lambda err: isinstance(err, types)


# First match wins: subclasses before their bases.
RULES: tuple[Rule, ...] = (
    Rule(_is(MahakTransientError), ErrorType.MAHAK_UNAVAILABLE, True, _mahak_text),
    Rule(_is(MahakAuthError), ErrorType.MAHAK_AUTH, True, _mahak_text),
    Rule(_is(MahakProtocolError), ErrorType.MAHAK_BAD_RESPONSE, True, _mahak_text),
    Rule(_is(MahakPermanentError), ErrorType.MAHAK_REFUSED, False, _mahak_text),
    Rule(
        lambda e: isinstance(e, asyncpg.PostgresError) and _is_connection_error(e),
        ErrorType.DB_UNAVAILABLE,
        True,
        _postgres_text,
    ),
    Rule(_is(asyncpg.PostgresError), ErrorType.DB_ERROR, True, _postgres_text),
    # The pool's own errors and socket errors: the server went away under us.
    Rule(
        _is(asyncpg.InterfaceError, asyncpg.InternalClientError, ConnectionError, OSError),
        ErrorType.DB_UNAVAILABLE,
        True,
        _connection_text,
    ),
    Rule(_is(pydantic.ValidationError), ErrorType.INVALID_DATA, False, _validation_text),
)


def _order_rules() -> tuple[Rule, ...]:
    from shopdb.orders import OrderNotFoundError, OrderStateError  # noqa: PLC0415 - no cycle

    return (
        Rule(_is(OrderNotFoundError), ErrorType.ORDER_NOT_FOUND, False, _plain_text),
        Rule(_is(OrderStateError), ErrorType.ORDER_STATE, False, _plain_text),
    )


def classify(
    err: BaseException, *, details: Iterable[Any] = (), customer_values: Iterable[str | None] = ()
) -> ApplicationError:
    """The `ApplicationError` for `err` by the table; an unknown type is retried (a bug that
    a deploy fixes loses nothing that way) under its class name."""
    if isinstance(err, ApplicationError):
        return err
    for rule in (*_order_rules(), *RULES):
        if rule.matches(err):
            text = rule.describe(err)
            break
    else:
        rule = Rule(lambda _: True, type(err).__name__, True, _plain_text)
        text = f"{type(err).__name__}: {_plain_text(err)}"
    values = list(customer_values)
    if values:
        text = scrub(text, values)
    delay = None
    if isinstance(err, MahakTransientError) and err.retry_after:
        delay = timedelta(seconds=err.retry_after)
    return ApplicationError(
        text, *details, type=rule.type, non_retryable=not rule.retryable, next_retry_delay=delay
    )


class _ClassifyingInbound(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        try:
            return await super().execute_activity(input)
        except ApplicationError:
            raise
        except Exception as err:  # noqa: BLE001 - every other type goes through the table
            # `from None`: the original's text (and its cause chain) must not reach history.
            raise classify(err) from None


class ErrorClassifier(Interceptor):
    """Applies `classify` to whatever any activity raises."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _ClassifyingInbound(next)
