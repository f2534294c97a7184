"""Refunds through the payment gateway (the compensation for a cancelled, paid order).

The gateway is called with an idempotency key derived from the order id, so a retried
activity (or a second saga for the same order) can never refund twice. Its API:
`POST {PAYMENT_GATEWAY_URL}/refunds {payment_ref, amount, idempotency_key}` answering 2xx with
the refund (`refund_id` or `id`); the simulator serves a fake one under `/_gateway`.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.orders import existing_order
from mahak_sync.logging import get_logger
from shopdb import orders
from workflows.order_types import RefundOutcome

log = get_logger(__name__)


def refund_idempotency_key(order_id: int) -> str:
    return f"refund-order-{order_id}"


class PaymentActivities:
    def __init__(
        self, pool: asyncpg.Pool, http: httpx.AsyncClient, gateway_url: str | None
    ) -> None:
        self._pool = pool
        self._http = http
        self._gateway_url = gateway_url.rstrip("/") if gateway_url else None

    @activity.defn(name="payment.refund")
    async def refund(self, order_id: int) -> RefundOutcome:
        order = await existing_order(self._pool, order_id)
        if order.payment_status == "refunded":
            return RefundOutcome(refunded=True, amount=order.amount, detail="already refunded")
        if order.payment_status != "paid" or not order.payment_ref:
            return RefundOutcome(refunded=False, required=False, detail="nothing was paid")
        if self._gateway_url is None:
            return RefundOutcome(
                refunded=False,
                amount=order.amount,
                detail="no payment gateway configured (PAYMENT_GATEWAY_URL)",
            )
        bound = log.bind(order_id=order_id)
        try:
            response = await self._http.post(
                f"{self._gateway_url}/refunds",
                json={
                    "payment_ref": order.payment_ref,
                    "amount": str(order.amount),
                    "idempotency_key": refund_idempotency_key(order_id),
                },
            )
        except httpx.HTTPError as err:
            # Unknown outcome: the idempotency key makes the retry safe.
            raise ApplicationError(
                f"payment gateway unreachable: {type(err).__name__}", type="GatewayTransientError"
            ) from None
        if response.status_code >= 500 or response.status_code in (408, 429):
            raise ApplicationError(
                f"payment gateway answered {response.status_code}", type="GatewayTransientError"
            )
        if response.status_code >= 400:
            bound.warning("refund refused", status=response.status_code)
            return RefundOutcome(
                refunded=False,
                amount=order.amount,
                detail=f"gateway refused the refund: HTTP {response.status_code} "
                f"{response.text[:200]}",
            )
        body: Any = response.json() if response.content else {}
        refund_id = None
        if isinstance(body, dict):
            refund_id = body.get("refund_id") or body.get("id")
        await orders.mark_refunded(self._pool, order_id)
        bound.info("refunded", refund_id=refund_id)
        return RefundOutcome(
            refunded=True, refund_id=str(refund_id) if refund_id else None, amount=order.amount
        )

    def all(self) -> list[Any]:
        return [self.refund]
