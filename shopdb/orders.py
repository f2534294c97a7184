"""Website orders: payment, the outgoing-sync state machine, cancel + restock, conflicts.

Status changes are compare-and-set (`UPDATE ... WHERE sync_status = ANY(expected)`), so when
several workers, retries or the sweep race on one order exactly one transition wins and the
others learn it from a False return instead of overwriting each other.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
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
    "AlreadyPaidError",
    "AmountMismatchError",
    "OrderError",
    "OrderNotFoundError",
    "OrderStateError",
    "PaymentError",
    "ShopOrder",
    "ShopOrderLine",
    "cancel_and_restock",
    "create_customer",
    "create_order",
    "enqueue_notification",
    "get_order",
    "inventory_conflicts",
    "mark_paid",
    "mark_refunded",
    "paid_orders_without_sync",
    "record_attempt",
    "record_mahak_ids",
    "transition_status",
    "uncovered_holdings",
    "begin_send",
    "begin_compensation",
    "record_leftovers",
    "SENDABLE",
]

# Statuses an order may be (re)sent from; `cancelled` and `synced` are final.
SENDABLE: frozenset[str] = frozenset({"pending", "sending", "dispute", "failed"})

# Statuses a web order may be cancelled from. A synced order exists in Mahak: cancelling it
# here alone would silently diverge from the books, so that needs an explicit decision.
CANCELLABLE: frozenset[str] = frozenset({"pending", "sending", "dispute", "failed"})

# Columns a status transition may set alongside the status.
_TRANSITION_FIELDS = frozenset(
    {
        "last_mahak_error",
        "mahak_order_id",
        "synced_to_mahak",
        "mahak_synced_at",
        "cancel_reason",
        "cancelled_at",
        "sync_attempts",
        "mahak_leftovers",
    }
)


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
            [
                (
                    order_id,
                    ln.product_detail_id,
                    ln.store_id,
                    ln.quantity,
                    ln.unit_price,
                    ln.discount,
                )
                for ln in order.lines
            ],
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


async def _load(
    db: Executor, where: str, *args: Any, suffix: str = "ORDER BY o.id"
) -> list[ShopOrder]:
    orders = await db.fetch(f"SELECT o.* FROM shop_orders o WHERE {where} {suffix}", *args)
    if not orders:
        return []
    ids = [o["id"] for o in orders]
    lines = await db.fetch(
        """
        SELECT l.*, p.tax_percent AS product_tax_percent, p.charge_percent AS product_charge_percent
        FROM shop_order_lines l
        LEFT JOIN mahak_product_details d ON d.id = l.product_detail_id
        LEFT JOIN mahak_products p ON p.id = d.product_id
        WHERE l.order_id = ANY($1) ORDER BY l.id
        """,
        ids,
    )
    customers = await db.fetch(
        "SELECT * FROM shop_customers WHERE id = ANY($1)", list({o["customer_id"] for o in orders})
    )
    by_order: dict[int, list[ShopOrderLine]] = {}
    for ln in lines:
        by_order.setdefault(ln["order_id"], []).append(ShopOrderLine.from_record(ln))
    by_id = {c["id"]: ShopCustomer.from_record(c) for c in customers}
    return [
        ShopOrder.from_record(
            o, lines=by_order.get(o["id"], []), customer=by_id.get(o["customer_id"])
        )
        for o in orders
    ]


# --- Payment -----------------------------------------------------------------------------------


async def mark_paid(
    db: Executor, order_id: int, amount: Decimal | int | str, payment_ref: str
) -> ShopOrder:
    """Record the gateway's payment. Idempotent for the same `payment_ref`; a different
    reference on a paid order, a refunded order or a wrong amount raise a `PaymentError`."""
    paid = Decimal(str(amount))
    async with transaction(db) as conn:
        row = await conn.fetchrow(
            "SELECT amount, payment_status, payment_ref FROM shop_orders WHERE id = $1 FOR UPDATE",
            order_id,
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
                order_id,
                payment_ref,
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
    moving to `cancelled` stamps `cancelled_at`. Once a compensation began
    (`begin_compensation`), `cancelled` is the only status the order can still move to.
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
    guard = "" if new == "cancelled" else " AND compensation_started_at IS NULL"
    row = await db.fetchrow(
        f"UPDATE shop_orders SET {', '.join(sets)} "
        f"WHERE id = $1 AND sync_status = ANY($2::text[]){guard} RETURNING id",
        *args,
    )
    return row is not None


async def begin_send(db: Executor, order_id: int) -> bool:
    """Claim the order for a send: only a paid order, in a sendable status, whose
    compensation never began. False is a refusal the sender must honour."""
    row = await db.fetchrow(
        """
        UPDATE shop_orders SET sync_status = 'sending'
        WHERE id = $1 AND sync_status = ANY($2::text[]) AND payment_status = 'paid'
          AND compensation_started_at IS NULL
        RETURNING id
        """,
        order_id,
        list(SENDABLE),
    )
    return row is not None


async def begin_compensation(db: Executor, order_id: int, reason: str) -> bool:
    """Record that the order is being undone, before any step runs: from here on no send
    begins and the sweep leaves it alone. Idempotent; False when the shop already says the
    order is synced (an operator must look: undoing it blindly could lose a sale)."""
    row = await db.fetchrow(
        """
        UPDATE shop_orders
        SET compensation_started_at = coalesce(compensation_started_at, now()),
            cancel_reason = coalesce(cancel_reason, $2)
        WHERE id = $1 AND sync_status <> 'synced'
        RETURNING id
        """,
        order_id,
        reason[:1000],
    )
    if (
        row is None
        and await db.fetchval("SELECT 1 FROM shop_orders WHERE id = $1", order_id) is None
    ):
        raise OrderNotFoundError(order_id)
    return row is not None


async def record_leftovers(db: Executor, order_id: int, leftovers: str | None) -> None:
    """What a compensation could not remove from Mahak (None: Mahak holds nothing of it, so
    the order no longer counts as held by Mahak either)."""
    await db.execute(
        "UPDATE shop_orders SET mahak_leftovers = $2::text, synced_to_mahak = ($2::text IS NOT NULL) "
        "WHERE id = $1",
        order_id,
        leftovers[:4000] if leftovers else None,
    )


async def record_mahak_ids(
    db: Executor,
    order_id: int,
    mahak_order_id: int,
    line_ids: Mapping[int, int] | None = None,
    *,
    receipt_id: int | None = None,
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
                mahak_synced_at = coalesce(mahak_synced_at, now()),
                mahak_receipt_id = coalesce($3, mahak_receipt_id)
            WHERE id = $1 RETURNING id
            """,
            order_id,
            mahak_order_id,
            receipt_id,
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
                order_id,
                list(line_ids.keys()),
                list(line_ids.values()),
            )
        return await _require(conn, order_id)


async def record_attempt(
    db: Executor, order_id: int, error: str | None, *, attempt: int | None = None
) -> int:
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
        order_id,
        error[:4000] if error else None,
        attempt,
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
        status = await conn.fetchval(
            "SELECT sync_status FROM shop_orders WHERE id = $1 FOR UPDATE", order_id
        )
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
            order_id,
            reason,
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


async def paid_orders_without_sync(
    db: Executor,
    limit: int = 100,
    *,
    after: tuple[datetime | None, int] | None = None,
    among: Iterable[int] | None = None,
) -> list[ShopOrder]:
    """Paid orders Mahak does not hold yet, not cancelled and whose compensation never began,
    in payment order (`paid_at` NULLS LAST, then `id`), at most `limit`.

    `after` is a keyset cursor, the `(paid_at, id)` of the last order a caller examined: only
    orders after it come back, so a caller pages through every such order whatever their
    number. `among` keeps only the given order ids (a re-check just before acting on them).
    The WHERE clause repeats the predicate of the partial index `shop_orders_unsynced_idx`
    (`paid_at, id`), so the index serves every page.
    """
    where = (
        "o.payment_status = 'paid' AND NOT o.synced_to_mahak AND o.sync_status <> 'cancelled'"
        " AND o.compensation_started_at IS NULL"
    )
    args: list[Any] = [limit]
    if among is not None:
        args.append(list(among))
        where += f" AND o.id = ANY(${len(args)}::bigint[])"
    order_by = "ORDER BY o.paid_at, o.id LIMIT $1"  # ascending: NULLS LAST
    if after is None:
        return await _load(db, where, *args, suffix=order_by)
    paid_at, last_id = after
    if paid_at is None:  # inside the tail of orders paid without a timestamp
        return await _load(
            db,
            f"{where} AND o.paid_at IS NULL AND o.id > ${len(args) + 1}",
            *args,
            last_id,
            suffix="ORDER BY o.id LIMIT $1",
        )
    found = await _load(
        db,
        f"{where} AND (o.paid_at, o.id) > (${len(args) + 1}, ${len(args) + 2})",
        *args,
        paid_at,
        last_id,
        suffix=order_by,
    )
    if len(found) < limit:  # the row comparison skips NULL paid_at: they sort last
        args[0] = limit - len(found)
        found += await _load(
            db, f"{where} AND o.paid_at IS NULL", *args, suffix="ORDER BY o.id LIMIT $1"
        )
    return found


async def inventory_conflicts(db: Executor) -> list[InventoryConflict]:
    """(detail, store) pairs where paid web orders Mahak does not hold yet need more than its
    stock (`shop_inventory`). Details Mahak deleted, or never had, are left out: an order for
    one is a stale reference its send turns into a dispute, not a stock shortage."""
    rows = await db.fetch(
        """
        SELECT i.product_detail_id, i.store_id, i.mahak_count1, i.held, i.order_ids
        FROM shop_inventory i
        WHERE i.held > i.mahak_count1
          AND EXISTS (SELECT 1 FROM mahak_product_details d
                      WHERE d.id = i.product_detail_id AND NOT d.deleted)
        ORDER BY i.product_detail_id, i.store_id
        """
    )
    return [InventoryConflict.from_record(r) for r in rows]


async def uncovered_holdings(db: Executor) -> list[UncoveredHolding]:
    """The lines of paid web orders that Mahak's stock cannot cover, stock given out whole
    orders at a time, first paid, first served.

    Held means held by an order Mahak does not account for yet: paid, not synced, not
    cancelled, no compensation begun, and neither the order nor the line mirrored from Mahak
    (not deleted) under our client id, since Mahak's stock already counts what it saved (the
    same predicate as the `shop_inventory` view). Lines of a product detail that is deleted or
    unknown in Mahak take no part: they are a dispute for an operator, not a shortage.

    Allocation: orders in payment order; an order all of whose lines fit what is left keeps
    that stock; an order that does not fit is flagged for the lines that do not fit and keeps
    nothing (it is cancelled whole, so its other lines go to later orders). A later order that
    fits what is left is therefore never flagged just because an earlier one did not fit.
    `held` is what all counted orders together hold of the line's detail and store."""
    rows = await db.fetch(
        """
        WITH holding AS (
            SELECT l.product_detail_id, l.store_id, o.id AS order_id, o.paid_at,
                   sum(l.quantity) AS quantity
            FROM shop_order_lines l
            JOIN shop_orders o ON o.id = l.order_id
            WHERE o.payment_status = 'paid' AND NOT o.synced_to_mahak
              AND o.sync_status <> 'cancelled' AND o.compensation_started_at IS NULL
              AND NOT EXISTS (SELECT 1 FROM mahak_orders m
                              WHERE m.client_id = o.order_client_id AND NOT m.deleted)
              AND NOT EXISTS (SELECT 1 FROM mahak_order_details md
                              WHERE md.client_id = l.order_detail_client_id AND NOT md.deleted)
              AND EXISTS (SELECT 1 FROM mahak_product_details d
                          WHERE d.id = l.product_detail_id AND NOT d.deleted)
            GROUP BY l.product_detail_id, l.store_id, o.id, o.paid_at
        ), stock AS (
            SELECT product_detail_id, store_id, sum(count1) AS mahak_count1
            FROM mahak_stock WHERE NOT deleted
            GROUP BY product_detail_id, store_id
        )
        SELECT h.order_id, h.product_detail_id, h.store_id, h.quantity,
               sum(h.quantity) OVER (PARTITION BY h.product_detail_id, h.store_id) AS held,
               coalesce(s.mahak_count1, 0) AS mahak_count1
        FROM holding h LEFT JOIN stock s USING (product_detail_id, store_id)
        ORDER BY h.paid_at NULLS LAST, h.order_id, h.product_detail_id, h.store_id
        """
    )
    lines_by_order: dict[int, list[UncoveredHolding]] = {}
    for row in rows:  # payment order is kept: dicts remember insertion order
        lines_by_order.setdefault(row["order_id"], []).append(UncoveredHolding.from_record(row))
    left: dict[tuple[int, int], Decimal] = {}
    uncovered: list[UncoveredHolding] = []
    for lines in lines_by_order.values():
        short = [
            ln
            for ln in lines
            if ln.quantity > left.setdefault((ln.product_detail_id, ln.store_id), ln.mahak_count1)
        ]
        if short:
            uncovered.extend(short)
            continue
        for ln in lines:
            left[ln.product_detail_id, ln.store_id] -= ln.quantity
    return sorted(uncovered, key=lambda h: (h.order_id, h.product_detail_id, h.store_id))


# --- Operator views (`mahak-sync orders list`) -------------------------------------------------


async def list_orders(
    db: Executor, *, sync_status: str | None = None, limit: int = 50
) -> list[ShopOrder]:
    """The newest orders first (without lines or customer), optionally of one sync status."""
    rows = await db.fetch(
        """
        SELECT * FROM shop_orders WHERE ($1::text IS NULL OR sync_status = $1)
        ORDER BY id DESC LIMIT $2
        """,
        sync_status,
        limit,
    )
    return [ShopOrder.from_record(r) for r in rows]
