"""Website orders: payment, the outgoing-sync state machine, cancel + restock, conflicts.

Status changes are compare-and-set (`UPDATE ... WHERE sync_status = ANY(expected)`), so when
several workers, retries or the sweep race on one order exactly one transition wins and the
others learn it from a False return instead of overwriting each other.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from .models import (
    SYNC_STATUSES,
    InventoryConflict,
    NewCustomer,
    NewOrder,
    ShopCustomer,
    ShopOrder,
    ShopOrderLine,
    UncoveredHolding,
)
from .notifications import enqueue_notification
from .pool import Executor, transaction

__all__ = [
    "AlreadyPaidError", "AmountMismatchError", "OrderError", "OrderNotFoundError",
    "OrderStateError", "PaymentError", "ShopOrder", "ShopOrderLine", "cancel_and_restock",
    "create_customer", "create_order", "enqueue_notification", "get_order",
    "inventory_conflicts", "mark_paid", "mark_refunded", "paid_orders_without_sync",
    "record_attempt", "record_mahak_ids", "transition_status", "uncovered_holdings",
]

# Statuses a web order may be cancelled from. A synced order exists in Mahak: cancelling it
# here alone would silently diverge from the books, so that needs an explicit decision.
CANCELLABLE: frozenset[str] = frozenset({"pending", "sending", "dispute", "failed"})

# Columns a status transition may set alongside the status.
_TRANSITION_FIELDS = frozenset({
    "last_mahak_error", "mahak_order_id", "synced_to_mahak", "mahak_synced_at", "cancel_reason",
    "cancelled_at", "sync_attempts",
})


class OrderError(Exception):
    def __init__(self, order_id: int, message: str) -> None:
        super().__init__(f"order {order_id}: {message}")
        self.order_id = order_id


class OrderNotFoundError(OrderError):
    def __init__(self, order_id: int) -> None:
        super().__init__(order_id, "not found")


class OrderStateError(OrderError):
    """The order is not in a state that allows the requested change."""


class PaymentError(OrderError):
    """A payment notification that must not be applied (the webhook answers it, not retries)."""


class AmountMismatchError(PaymentError):
    def __init__(self, order_id: int, expected: Decimal, paid: Decimal) -> None:
        super().__init__(order_id, f"paid amount {paid} does not match order amount {expected}")
        self.expected = expected
        self.paid = paid


class AlreadyPaidError(PaymentError):
    def __init__(self, order_id: int, payment_ref: str | None) -> None:
        super().__init__(order_id, "already paid with a different payment reference")
        self.payment_ref = payment_ref


# --- Creating and loading ----------------------------------------------------------------------


async def create_customer(db: Executor, customer: NewCustomer) -> ShopCustomer:
    fields = customer.model_dump()
    cols = ", ".join(fields)
    params = ", ".join(f"${i}" for i in range(1, len(fields) + 1))
    row = await db.fetchrow(
        f"INSERT INTO shop_customers ({cols}) VALUES ({params}) RETURNING *", *fields.values()
    )
    return ShopCustomer.from_record(row)


async def create_order(db: Executor, order: NewOrder) -> ShopOrder:
    """Insert an unpaid order with its lines (one transaction)."""
    head = order.model_dump(exclude={"lines", "amount"})
    head["amount"] = order.total()
    cols = ", ".join(head)
    params = ", ".join(f"${i}" for i in range(1, len(head) + 1))
    async with transaction(db) as conn:
        order_id = await conn.fetchval(
            f"INSERT INTO shop_orders ({cols}) VALUES ({params}) RETURNING id", *head.values()
        )
        await conn.executemany(
            """
            INSERT INTO shop_order_lines (order_id, product_detail_id, store_id, quantity, unit_price, discount)
            VALUES ($1, $2, $3, $4, $5, $6)
            """,
            [(order_id, ln.product_detail_id, ln.store_id, ln.quantity, ln.unit_price, ln.discount)
             for ln in order.lines],
        )
        loaded = await _load(conn, "o.id = $1", order_id)
    return loaded[0]


async def get_order(db: Executor, order_id: int) -> ShopOrder | None:
    """The order with its lines and customer: what the outgoing sync sends."""
    found = await _load(db, "o.id = $1", order_id)
    return found[0] if found else None


async def _require(db: Executor, order_id: int) -> ShopOrder:
    order = await get_order(db, order_id)
    if order is None:
        raise OrderNotFoundError(order_id)
    return order


async def _load(db: Executor, where: str, *args: Any, suffix: str = "ORDER BY o.id") -> list[ShopOrder]:
    orders = await db.fetch(f"SELECT o.* FROM shop_orders o WHERE {where} {suffix}", *args)
    if not orders:
        return []
    ids = [o["id"] for o in orders]
    lines = await db.fetch("SELECT * FROM shop_order_lines WHERE order_id = ANY($1) ORDER BY id", ids)
    customers = await db.fetch(
        "SELECT * FROM shop_customers WHERE id = ANY($1)", list({o["customer_id"] for o in orders})
    )
    by_order: dict[int, list[ShopOrderLine]] = {}
    for ln in lines:
        by_order.setdefault(ln["order_id"], []).append(ShopOrderLine.from_record(ln))
    by_id = {c["id"]: ShopCustomer.from_record(c) for c in customers}
    return [
        ShopOrder.from_record(o, lines=by_order.get(o["id"], []), customer=by_id.get(o["customer_id"]))
        for o in orders
    ]


# --- Payment -----------------------------------------------------------------------------------


async def mark_paid(db: Executor, order_id: int, amount: Decimal | int | str, payment_ref: str) -> ShopOrder:
    """Record the gateway's payment. Idempotent for the same `payment_ref`; a different
    reference on a paid order, a refunded order or a wrong amount raise a `PaymentError`."""
    paid = Decimal(str(amount))
    async with transaction(db) as conn:
        row = await conn.fetchrow(
            "SELECT amount, payment_status, payment_ref FROM shop_orders WHERE id = $1 FOR UPDATE", order_id
        )
        if row is None:
            raise OrderNotFoundError(order_id)
        if row["payment_status"] == "paid":
            if row["payment_ref"] != payment_ref:
                raise AlreadyPaidError(order_id, row["payment_ref"])
        elif row["payment_status"] == "refunded":
            raise OrderStateError(order_id, "refunded orders cannot be paid again")
        elif row["amount"] != paid:
            raise AmountMismatchError(order_id, row["amount"], paid)
        else:
            await conn.execute(
                "UPDATE shop_orders SET payment_status = 'paid', payment_ref = $2, paid_at = now() WHERE id = $1",
                order_id, payment_ref,
            )
        return await _require(conn, order_id)


async def mark_refunded(db: Executor, order_id: int) -> bool:
    """Paid -> refunded; False when it was not paid (e.g. already refunded)."""
    status = await db.execute(
        "UPDATE shop_orders SET payment_status = 'refunded' WHERE id = $1 AND payment_status = 'paid'",
        order_id,
    )
    return status.endswith(" 1")


# --- Sync state --------------------------------------------------------------------------------


async def transition_status(
    db: Executor, order_id: int, expected: str | Iterable[str], new: str, **fields: Any
) -> bool:
    """Compare-and-set the sync status: True only if the order was in `expected`.

    `fields` may set sync columns in the same statement (e.g. `last_mahak_error`,
    `mahak_order_id`). Moving to `synced` also marks `synced_to_mahak`/`mahak_synced_at`;
    moving to `cancelled` stamps `cancelled_at`.
    """
    allowed = {expected} if isinstance(expected, str) else set(expected)
    unknown = (allowed | {new}) - SYNC_STATUSES
    if unknown:
        raise ValueError(f"unknown sync status(es): {sorted(unknown)}")
    bad = set(fields) - _TRANSITION_FIELDS
    if bad:
        raise ValueError(f"transition_status cannot set {sorted(bad)}")
    sets = ["sync_status = $3"]
    if new == "synced":
        fields.setdefault("synced_to_mahak", True)
        sets.append("mahak_synced_at = coalesce(mahak_synced_at, now())")
    if new == "cancelled":
        sets.append("cancelled_at = coalesce(cancelled_at, now())")
    args: list[Any] = [order_id, list(allowed), new]
    for name, value in fields.items():
        args.append(value)
        sets = [s for s in sets if not s.startswith(f"{name} ")]
        sets.append(f"{name} = ${len(args)}")
    row = await db.fetchrow(
        f"UPDATE shop_orders SET {', '.join(sets)} WHERE id = $1 AND sync_status = ANY($2::text[]) RETURNING id",
        *args,
    )
    return row is not None


async def record_mahak_ids(
    db: Executor, order_id: int, mahak_order_id: int, line_ids: Mapping[int, int] | None = None
) -> ShopOrder:
    """Store the ids Mahak assigned and mark the order as held by Mahak.

    `line_ids` maps each line's `order_detail_client_id` (Mahak's EntityClientId) to
    Mahak's OrderDetailId. The sync status is left to `transition_status`.
    """
    async with transaction(db) as conn:
        found = await conn.fetchval(
            """
            UPDATE shop_orders
            SET mahak_order_id = $2, synced_to_mahak = true,
                mahak_synced_at = coalesce(mahak_synced_at, now())
            WHERE id = $1 RETURNING id
            """,
            order_id, mahak_order_id,
        )
        if found is None:
            raise OrderNotFoundError(order_id)
        if line_ids:
            await conn.execute(
                """
                UPDATE shop_order_lines l SET mahak_order_detail_id = m.mahak_id
                FROM unnest($2::bigint[], $3::bigint[]) AS m(client_id, mahak_id)
                WHERE l.order_id = $1 AND l.order_detail_client_id = m.client_id
                """,
                order_id, list(line_ids.keys()), list(line_ids.values()),
            )
        return await _require(conn, order_id)


async def record_attempt(db: Executor, order_id: int, error: str | None, *,
                         attempt: int | None = None) -> int:
    """Count one send attempt and keep its error (None clears it); returns the attempt count.

    With `attempt` (the caller's own count) recording is idempotent: repeating the call for
    the same attempt, as a retried activity does, does not count it twice."""
    attempts = await db.fetchval(
        """
        UPDATE shop_orders
        SET sync_attempts = CASE WHEN $3::int IS NULL THEN sync_attempts + 1
                                 ELSE GREATEST(sync_attempts, $3::int) END,
            last_mahak_error = $2
        WHERE id = $1 RETURNING sync_attempts
        """,
        order_id, error[:4000] if error else None, attempt,
    )
    if attempts is None:
        raise OrderNotFoundError(order_id)
    return int(attempts)


async def cancel_and_restock(
    db: Executor, order_id: int, reason: str, *, allowed_from: Iterable[str] = CANCELLABLE
) -> bool:
    """Cancel the order and put its lines back in stock, in one transaction.

    Returns False when the order was already cancelled (nothing happens a second time);
    raises `OrderStateError` when its status is not in `allowed_from`.
    """
    async with transaction(db) as conn:
        status = await conn.fetchval("SELECT sync_status FROM shop_orders WHERE id = $1 FOR UPDATE", order_id)
        if status is None:
            raise OrderNotFoundError(order_id)
        if status == "cancelled":
            return False
        if status not in set(allowed_from):
            raise OrderStateError(order_id, f"cannot cancel an order in status {status!r}")
        await conn.execute(
            """
            UPDATE shop_orders SET sync_status = 'cancelled', cancelled_at = now(), cancel_reason = $2
            WHERE id = $1
            """,
            order_id, reason,
        )
        await conn.execute(
            """
            INSERT INTO shop_stock_movements (product_detail_id, store_id, delta, reason, order_id, order_line_id)
            SELECT product_detail_id, store_id, quantity, 'cancel', order_id, id
            FROM shop_order_lines WHERE order_id = $1
            ON CONFLICT (order_line_id, reason) DO NOTHING
            """,
            order_id,
        )
        await conn.execute(
            "UPDATE shop_order_lines SET restocked_at = now() WHERE order_id = $1 AND restocked_at IS NULL",
            order_id,
        )
    return True


# --- Queries for the sweep and conflict detection --------------------------------------------


async def paid_orders_without_sync(db: Executor, limit: int = 100) -> list[ShopOrder]:
    """Paid orders Mahak does not hold yet and that are not cancelled, oldest payment first."""
    return await _load(
        db,
        "o.payment_status = 'paid' AND NOT o.synced_to_mahak AND o.sync_status <> 'cancelled'",
        limit,
        suffix="ORDER BY o.paid_at, o.id LIMIT $1",
    )


async def inventory_conflicts(db: Executor) -> list[InventoryConflict]:
    """(detail, store) pairs where paid, unsynced web orders hold more than Mahak's stock."""
    rows = await db.fetch(
        """
        SELECT product_detail_id, store_id, mahak_count1, held, order_ids
        FROM shop_inventory WHERE held > mahak_count1
        ORDER BY product_detail_id, store_id
        """
    )
    return [InventoryConflict.from_record(r) for r in rows]


async def uncovered_holdings(db: Executor) -> list[UncoveredHolding]:
    """The paid, unsent orders Mahak's stock cannot cover, stock given out in payment order.

    Only the orders past the point where the running total exceeds the stock are in
    conflict; the ones paid earlier keep their goods."""
    rows = await db.fetch(
        """
        WITH holding AS (
            SELECT l.product_detail_id, l.store_id, o.id AS order_id, o.paid_at,
                   sum(l.quantity) AS quantity
            FROM shop_order_lines l
            JOIN shop_orders o ON o.id = l.order_id
            WHERE o.payment_status = 'paid' AND NOT o.synced_to_mahak
              AND o.sync_status <> 'cancelled'
            GROUP BY l.product_detail_id, l.store_id, o.id, o.paid_at
        ), stock AS (
            SELECT product_detail_id, store_id, sum(count1) AS mahak_count1
            FROM mahak_stock WHERE NOT deleted
            GROUP BY product_detail_id, store_id
        ), allocated AS (
            SELECT h.*, coalesce(s.mahak_count1, 0) AS mahak_count1,
                   sum(h.quantity) OVER key AS held,
                   sum(h.quantity) OVER (key ORDER BY h.paid_at NULLS LAST, h.order_id) AS running
            FROM holding h LEFT JOIN stock s USING (product_detail_id, store_id)
            WINDOW key AS (PARTITION BY h.product_detail_id, h.store_id)
        )
        SELECT order_id, product_detail_id, store_id, quantity, held, mahak_count1
        FROM allocated WHERE running > mahak_count1
        ORDER BY order_id, product_detail_id, store_id
        """
    )
    return [UncoveredHolding.from_record(r) for r in rows]
