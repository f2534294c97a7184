"""Customer notifications (SMS/email) go through an outbox: enqueued in the same
transaction as the change they announce, sent later by whoever delivers them."""

from __future__ import annotations

from typing import Any

from .models import Notification, to_json
from .pool import Executor


async def enqueue_notification(
    db: Executor,
    *,
    kind: str,
    order_id: int | None = None,
    customer_id: int | None = None,
    recipient: str | None = None,
    payload: dict[str, Any] | None = None,
    dedup_key: str | None = None,
) -> bool:
    """Queue a notification once: True when queued now, False when `dedup_key` (default
    `kind:order_id`) was queued before — so a retried activity never notifies twice."""
    if dedup_key is None:
        if order_id is None:
            raise ValueError("a dedup_key is required for a notification without an order")
        dedup_key = f"{kind}:{order_id}"
    if customer_id is None and order_id is not None:
        customer_id = await db.fetchval(
            "SELECT customer_id FROM shop_orders WHERE id = $1", order_id
        )
    status = await db.execute(
        """
        INSERT INTO notification_outbox (kind, customer_id, recipient, order_id, payload, dedup_key)
        VALUES ($1, $2, $3, $4, $5::text::jsonb, $6)
        ON CONFLICT (dedup_key) DO NOTHING
        """,
        kind,
        customer_id,
        recipient,
        order_id,
        to_json(payload or {}),
        dedup_key,
    )
    return status.endswith(" 1")


async def pending_notifications(db: Executor, limit: int = 100) -> list[Notification]:
    rows = await db.fetch(
        "SELECT * FROM notification_outbox WHERE sent_at IS NULL ORDER BY created_at, id LIMIT $1",
        limit,
    )
    return [Notification.from_record(r) for r in rows]


async def mark_sent(db: Executor, notification_id: int) -> bool:
    status = await db.execute(
        "UPDATE notification_outbox SET sent_at = now(), attempts = attempts + 1 "
        "WHERE id = $1 AND sent_at IS NULL",
        notification_id,
    )
    return status.endswith(" 1")


async def mark_failed(db: Executor, notification_id: int, error: str) -> None:
    await db.execute(
        "UPDATE notification_outbox SET attempts = attempts + 1, last_error = $2 WHERE id = $1",
        notification_id,
        error[:2000],
    )
