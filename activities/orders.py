"""The order workflow's hands: PostgreSQL (`shopdb.orders`) and Mahak (`MahakClient`).

Errors are sorted for the workflow: anything that may succeed later (Mahak down, 5xx, a
timeout, a 401 or a garbled body whose fate is unknown) is an `ApplicationError` of type
`MahakTransientError`; a refusal of the whole request is a non-retryable `MahakPermanentError`.
Per-record refusals are not errors at all: they come back as a `SendOutcome` to decide on.

Nothing returned here carries customer data: it stays in the database and in the request.
"""

from __future__ import annotations

from typing import Any

import asyncpg
from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError

from activities.heartbeat import Heartbeat
from activities.order_request import (
    as_failure,
    classify,
    compare_with_mahak,
    customer_request,
    order_request,
    person_client_id,
    redact,
)
from mahak_client.client import MahakClient
from mahak_client.errors import (
    MahakAuthError,
    MahakError,
    MahakProtocolError,
    MahakTransientError,
)
from mahak_client.models import Order, OrderDetail
from mahak_client.pager import iter_pages
from mahak_client.save import is_already_registered
from mahak_sync.config import Settings
from mahak_sync.logging import get_logger
from mahak_sync.orders_api import start_order_sync
from shopdb import mapping, orders
from shopdb.catalog import get_cursor
from shopdb.models import ShopOrder
from workflows.order_types import (
    AttemptNote,
    CancelRequest,
    CustomerNotice,
    DisputeNote,
    MahakFailure,
    MahakOrderCheck,
    OrderActivityNames as A,
    OrderSummary,
    ReverseOutcome,
    ReverseRequest,
    SendOutcome,
    SendRequest,
    StaffNotice,
    SyncedNote,
    order_workflow_id,
)

log = get_logger(__name__)

# Sync statuses an order may be (re)sent from; `cancelled` and `synced` are final.
_SENDABLE = {"pending", "sending", "dispute", "failed"}
STAFF_RECIPIENT = "staff"


def _for_workflow(err: MahakError, order: ShopOrder) -> ApplicationError:
    # An unknown outcome (timeout, 5xx, garbled body) and bad credentials (an operator fixes
    # them, then the order must still go) are retried; the send looks before resending.
    message = redact(str(err), order)  # the message lands in workflow history
    if isinstance(err, (MahakTransientError, MahakAuthError, MahakProtocolError)):
        return ApplicationError(message, type="MahakTransientError")
    return ApplicationError(message, type="MahakPermanentError", non_retryable=True)


async def existing_order(pool: asyncpg.Pool, order_id: int) -> ShopOrder:
    """The order, or a non-retryable `OrderNotFound` (no retry makes it appear)."""
    order = await orders.get_order(pool, order_id)
    if order is None:
        raise ApplicationError(f"order {order_id} does not exist", type="OrderNotFound",
                               non_retryable=True)
    return order


class OrderActivities:
    """Activities of `OrderSyncWorkflow` that touch the shop database and Mahak."""

    def __init__(self, pool: asyncpg.Pool, mahak: MahakClient, *, page_size: int = 100) -> None:
        self._pool = pool
        self._mahak = mahak
        self._page_size = page_size

    # --- Loading and bookkeeping ---------------------------------------------------------------

    @activity.defn(name=A.load)
    async def load(self, order_id: int) -> OrderSummary | None:
        order = await orders.get_order(self._pool, order_id)
        if order is None:
            return None
        return OrderSummary(
            order_id=order.id, paid=order.payment_status == "paid",
            payable_status=order.payment_status, sync_status=order.sync_status,
            synced_to_mahak=order.synced_to_mahak, mahak_order_id=order.mahak_order_id,
            order_client_id=order.order_client_id, line_count=len(order.lines),
        )

    @activity.defn(name=A.begin_send)
    async def begin_send(self, order_id: int) -> bool:
        return await orders.transition_status(self._pool, order_id, _SENDABLE, "sending")

    @activity.defn(name=A.record_attempt)
    async def record_attempt(self, note: AttemptNote) -> int:
        return await orders.record_attempt(self._pool, note.order_id, note.error,
                                           attempt=note.attempt)

    @activity.defn(name=A.mark_synced)
    async def mark_synced(self, note: SyncedNote) -> None:
        if note.mahak_order_id is not None:
            await orders.record_mahak_ids(self._pool, note.order_id, note.mahak_order_id)
        await orders.transition_status(
            self._pool, note.order_id, _SENDABLE, "synced", last_mahak_error=note.note,
        )

    @activity.defn(name=A.mark_dispute)
    async def mark_dispute(self, note: DisputeNote) -> None:
        await orders.transition_status(
            self._pool, note.order_id, _SENDABLE, "dispute", last_mahak_error=note.reason[:4000],
        )

    @activity.defn(name=A.notify_staff)
    async def notify_staff(self, notice: StaffNotice) -> None:
        info = activity.info()
        await orders.enqueue_notification(
            self._pool, kind=notice.kind, order_id=notice.order_id, recipient=STAFF_RECIPIENT,
            payload={"message": notice.message},
            # One per workflow step: a retried activity does not notify twice, a later
            # dispute of the same order does notify again.
            dedup_key=f"{notice.kind}:{notice.order_id}:{info.workflow_run_id}:{info.activity_id}",
        )

    @activity.defn(name=A.cancel_and_restock)
    async def cancel_and_restock(self, req: CancelRequest) -> bool:
        try:
            return await orders.cancel_and_restock(self._pool, req.order_id, req.reason)
        except orders.OrderStateError as err:
            raise ApplicationError(str(err), type="OrderStateError", non_retryable=True) from None

    @activity.defn(name=A.notify_customer)
    async def notify_customer(self, notice: CustomerNotice) -> None:
        await orders.enqueue_notification(
            self._pool, kind=notice.kind, order_id=notice.order_id,
            payload={"refunded": notice.refunded},
        )

    # --- Mahak ---------------------------------------------------------------------------------

    @activity.defn(name=A.send)
    async def send(self, req: SendRequest) -> SendOutcome:
        order = await existing_order(self._pool, req.order_id)
        bound = log.bind(order_id=order.id, order_client_id=order.order_client_id)
        try:
            async with Heartbeat():
                # An earlier attempt, of this run or of a failed earlier workflow run (the
                # order row counts them), may have reached Mahak: look before sending.
                if req.probe_first or activity.info().attempt > 1 or order.sync_attempts > 0:
                    check = await self._check(order)
                    if check.found and check.matches:
                        bound.info("order already in Mahak; not sending again",
                                   mahak_order_id=check.mahak_order_id)
                        return SendOutcome(
                            kind="accepted", mahak_order_id=check.mahak_order_id,
                            saved_line_client_ids=sorted(
                                ln.order_detail_client_id for ln in order.lines),
                            found_by_probe=True,
                        )
                visitor_id = await self._visitor_id()
                person_id, refused = await self._person_for(order, visitor_id)
                if refused is not None:
                    return refused
                result = await self._mahak.save_all_data(
                    order_request(order, visitor_id=visitor_id, person_id=person_id))
        except MahakError as err:
            bound.warning("mahak send failed", error=str(err))
            raise _for_workflow(err, order) from None
        outcome = classify(order, result)
        bound.info("mahak answered", outcome=outcome.kind, mahak_order_id=outcome.mahak_order_id,
                   failures=len(outcome.failures))
        if outcome.kind == "accepted" and outcome.mahak_order_id is not None:
            # Keep Mahak's ids the moment we have them. If this process dies first, the retry
            # finds the order in Mahak by its client id instead of sending it again.
            await orders.record_mahak_ids(self._pool, order.id, outcome.mahak_order_id, {
                ln.order_detail_client_id: r.entity_id
                for ln in order.lines
                if (r := result.for_client_id("OrderDetails", ln.order_detail_client_id))
                and r.entity_id is not None
            })
        return outcome

    @activity.defn(name=A.check_in_mahak)
    async def check_in_mahak(self, order_id: int) -> MahakOrderCheck:
        order = await existing_order(self._pool, order_id)
        try:
            async with Heartbeat():
                return await self._check(order)
        except MahakError as err:
            raise _for_workflow(err, order) from None

    @activity.defn(name=A.reverse_in_mahak)
    async def reverse_in_mahak(self, req: ReverseRequest) -> ReverseOutcome:
        """Undo a partial save: resend the saved records with `deleted: true`.

        Mahak lets a client edit its records until the desktop imports the order; after that
        it answers "already registered" and a person has to reverse it in Mahak (the
        workflow then notifies staff).
        """
        order = await existing_order(self._pool, req.order_id)
        line_client_ids: list[int] | None = req.line_client_ids
        try:
            async with Heartbeat():
                if req.mahak_order_id is None and not line_client_ids:
                    # The send's answer never came: reverse only what Mahak really holds.
                    check = await self._check(order)
                    if not check.found:
                        return ReverseOutcome(reversed=True, found=False,
                                              detail="Mahak holds nothing of the order")
                    line_client_ids = None  # every line we sent
                visitor_id = await self._visitor_id()
                person_id = await self._known_person(order)
                result = await self._mahak.save_all_data(order_request(
                    order, visitor_id=visitor_id, person_id=person_id, deleted=True,
                    line_client_ids=line_client_ids,
                ))
        except MahakError as err:
            raise _for_workflow(err, order) from None
        failures = result.failures()
        if not failures:
            return ReverseOutcome(reversed=True)
        if any(is_already_registered(f) for f in failures):
            return ReverseOutcome(reversed=False, detail="the order was already imported in Mahak")
        first = failures[0]
        return ReverseOutcome(reversed=False, detail=redact(
            f"{first.collection}.{first.property}: {first.message}", order)[:500])

    async def _visitor_id(self) -> int:
        """The visitor this login acts as (logging in first when needed)."""
        visitor_id = (await self._mahak.login()).visitor_id
        if visitor_id is None:
            raise ApplicationError("Mahak login reported no visitor id", type="MahakPermanentError",
                                   non_retryable=True)
        return visitor_id

    async def _known_person(self, order: ShopOrder) -> int | None:
        customer = order.customer
        if customer is None:
            return None
        if customer.mahak_person_id is not None:
            return customer.mahak_person_id
        return await mapping.mahak_id_for(self._pool, "people", customer.id)

    async def _person_for(self, order: ShopOrder, visitor_id: int) -> tuple[int | None, SendOutcome | None]:
        """The customer's Mahak person id, creating the person (and its visitor link) first
        when the shop has never sent this customer."""
        known = await self._known_person(order)
        if known is not None or order.customer is None:
            return known, None
        customer = order.customer
        result = await self._mahak.save_all_data(customer_request(customer, visitor_id=visitor_id))
        person = result.for_client_id("People", person_client_id(customer.id))
        failures = [as_failure(f, order) for f in result.failures()]
        if person is None or not person.result or person.entity_id is None:
            return None, SendOutcome(kind="rejected", failures=failures or [MahakFailure(
                collection="People", message="Mahak did not create the customer")])
        await mapping.set_mapping(self._pool, "people", customer.id, person.entity_id)
        return person.entity_id, None

    async def _check(self, order: ShopOrder) -> MahakOrderCheck:
        """Find our order in Mahak: first among rows newer than the mirror's cursors (fresh from
        Mahak), then in the mirrored tables (older orders the incoming sync already holds)."""
        client_id = order.order_client_id
        found: Order | None = None
        async for batch in iter_pages(self._mahak, "orders",
                                      await get_cursor(self._pool, "orders"), self._page_size):
            for row in batch.rows:
                if row.order_client_id == client_id:
                    found = row  # later pages hold newer versions
        if found is None:
            found = await self._mirrored_order(client_id)
        if found is None or found.order_id is None:
            return compare_with_mahak(order, None, [])
        lines = {d.order_detail_client_id: d for d in await self._mirrored_lines(found.order_id)}
        async for batch in iter_pages(self._mahak, "order_details",
                                      await get_cursor(self._pool, "order_details"),
                                      self._page_size):
            for d in batch.rows:
                if d.order_id == found.order_id or d.order_client_id == client_id:
                    lines[d.order_detail_client_id] = d
        return compare_with_mahak(order, found, lines.values())

    async def _mirrored_order(self, client_id: int) -> Order | None:
        row = await self._pool.fetchrow(
            "SELECT id, client_id, deleted, row_version FROM mahak_orders WHERE client_id = $1 "
            "ORDER BY deleted, row_version DESC LIMIT 1", client_id)
        if row is None:
            return None
        return Order(order_id=row["id"], order_client_id=row["client_id"],
                     deleted=row["deleted"], row_version=row["row_version"])

    async def _mirrored_lines(self, mahak_order_id: int) -> list[OrderDetail]:
        rows = await self._pool.fetch(
            "SELECT id, client_id, order_id, product_detail_id, count1, deleted, row_version "
            "FROM mahak_order_details WHERE order_id = $1", mahak_order_id)
        return [OrderDetail(order_detail_id=r["id"], order_detail_client_id=r["client_id"],
                            order_id=r["order_id"], product_detail_id=r["product_detail_id"],
                            count1=r["count1"], deleted=r["deleted"], row_version=r["row_version"])
                for r in rows]

    def all(self) -> list[Any]:
        return [self.load, self.begin_send, self.send, self.check_in_mahak, self.record_attempt,
                self.mark_synced, self.mark_dispute, self.notify_staff, self.reverse_in_mahak,
                self.cancel_and_restock, self.notify_customer]


class OrderSweepActivities:
    """The safety net's one activity: start a sync for every paid order that Mahak does not
    hold yet and that has no sync in flight. Idempotent by construction (`start_order_sync`
    attaches), so visibility lagging behind a just-started workflow costs one extra call."""

    def __init__(self, pool: asyncpg.Pool, client: Client, settings: Settings) -> None:
        self._pool = pool
        self._client = client
        self._settings = settings

    @activity.defn(name=A.sweep)
    async def sweep(self, limit: int) -> list[int]:
        pending = await orders.paid_orders_without_sync(self._pool, limit)
        if not pending:
            return []
        # During an outage every unsynced order has a workflow retrying it: skip those
        # rather than make one start call per order per sweep.
        in_flight = {wf.id async for wf in self._client.list_workflows(
            "WorkflowType = 'OrderSyncWorkflow' AND ExecutionStatus = 'Running'")}
        started = [o.id for o in pending if order_workflow_id(o.id) not in in_flight]
        for order_id in started:
            await start_order_sync(self._client, order_id, self._settings)
        log.info("order sweep", started=started, in_flight=len(pending) - len(started))
        return started

    def all(self) -> list[Any]:
        return [self.sweep]
