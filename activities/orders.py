"""The order workflow's hands: PostgreSQL (`shopdb.orders`) and Mahak (`MahakClient`).

Errors are not sorted here: whatever an activity raises goes through the one table in
`mahak_sync.errors` (the worker's interceptor), so a PostgreSQL outage in the middle of a
send is `DatabaseUnavailable`, retried, and never read as Mahak refusing the order. Mahak's
per-record refusals are not errors at all: they come back as a `SendOutcome` to decide on.

Nothing returned here carries customer data: it stays in the database and in the request.
"""

from __future__ import annotations

from typing import Any

import asyncpg
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.heartbeat import Heartbeat
from activities.mahak_lookup import MahakOrderLookup
from activities.order_request import (
    NO_PERSON_GROUP,
    OutgoingFields,
    as_failure,
    classify,
    compare_with_mahak,
    customer_request,
    customer_values,
    order_request,
    person_client_id,
    receipt_request,
    redact,
)
from mahak_client.client import MahakClient
from mahak_client.errors import MahakError, MahakPermanentError
from mahak_client.save import SaveAllDataResult, is_already_registered
from mahak_sync import metrics
from mahak_sync.config import Settings
from mahak_sync.errors import ErrorType
from mahak_sync.errors import classify as classify_error
from mahak_sync.logging import get_logger
from shopdb import mapping, orders, storefront
from shopdb.models import ShopOrder
from shopdb.pool import Executor, transaction
from workflows.order_types import (
    AttemptNote,
    CancelRequest,
    CustomerNotice,
    DisputeNote,
    MahakFailure,
    MahakOrderCheck,
    OrderSummary,
    ReverseOutcome,
    ReverseRequest,
    SendOutcome,
    SendRequest,
    StaffNotice,
    SyncedNote,
)

log = get_logger(__name__)

STAFF_RECIPIENT = "staff"


async def existing_order(db: Executor, order_id: int) -> ShopOrder:
    """The order, or a non-retryable `OrderNotFound` (no retry makes it appear)."""
    order = await orders.get_order(db, order_id)
    if order is None:
        raise ApplicationError(
            f"order {order_id} does not exist", type=ErrorType.ORDER_NOT_FOUND, non_retryable=True
        )
    return order


def _redacted(err: MahakError, order: ShopOrder) -> ApplicationError:
    """The table's error for a Mahak failure, with this order's customer values cut out too."""
    return classify_error(err, customer_values=customer_values(order))


class OrderActivities:
    """Activities of `OrderSyncWorkflow` that touch the shop database and Mahak."""

    def __init__(self, pool: asyncpg.Pool, mahak: MahakClient, settings: Settings) -> None:
        self._pool = pool
        self._mahak = mahak
        self._lookup = MahakOrderLookup(pool, mahak, settings.mahak_page_size)
        self._settings = settings
        # Read from Mahak once per process when no setting names them (they rarely change;
        # a restart picks up a change).
        self._cash_codes: dict[int, int | None] = {}
        self._discovered_group: int | None = None

    # --- Loading and bookkeeping ---------------------------------------------------------------

    @activity.defn(name="order.load")
    async def load(self, order_id: int) -> OrderSummary | None:
        order = await orders.get_order(self._pool, order_id)
        if order is None:
            return None
        return OrderSummary(
            order_id=order.id,
            paid=order.payment_status == "paid",
            payable_status=order.payment_status,
            sync_status=order.sync_status,
            synced_to_mahak=order.synced_to_mahak,
            mahak_order_id=order.mahak_order_id,
            order_client_id=order.order_client_id,
            line_count=len(order.lines),
            compensation_started=order.compensation_started_at is not None,
            mahak_leftovers=order.mahak_leftovers,
        )

    @activity.defn(name="order.begin_send")
    async def begin_send(self, order_id: int) -> bool:
        return await orders.begin_send(self._pool, order_id)

    @activity.defn(name="order.begin_compensation")
    async def begin_compensation(self, req: CancelRequest) -> bool:
        return await orders.begin_compensation(self._pool, req.order_id, req.reason)

    @activity.defn(name="order.record_attempt")
    async def record_attempt(self, note: AttemptNote) -> int:
        return await orders.record_attempt(
            self._pool, note.order_id, note.error, attempt=note.attempt
        )

    @activity.defn(name="order.mark_synced")
    async def mark_synced(self, note: SyncedNote) -> bool:
        """False (nothing written) when the order left the sendable statuses meanwhile, e.g.
        the shop cancelled it or a compensation began."""
        async with transaction(self._pool) as conn:
            return await self._mark_synced(conn, note)

    @staticmethod
    async def _mark_synced(conn: asyncpg.Connection, note: SyncedNote) -> bool:
        moved = await orders.transition_status(
            conn, note.order_id, orders.SENDABLE, "synced", last_mahak_error=note.note
        )
        if moved and note.mahak_order_id is not None:
            await orders.record_mahak_ids(conn, note.order_id, note.mahak_order_id)
        return moved

    @activity.defn(name="order.mark_dispute")
    async def mark_dispute(self, note: DisputeNote) -> bool:
        return await orders.transition_status(
            self._pool,
            note.order_id,
            orders.SENDABLE,
            "dispute",
            last_mahak_error=note.reason[:4000],
        )

    @activity.defn(name="order.notify_staff")
    async def notify_staff(self, notice: StaffNotice) -> None:
        info = activity.info()
        metrics.count("mahak_sync_staff_tasks", kind=notice.kind)
        await orders.enqueue_notification(
            self._pool,
            kind=notice.kind,
            order_id=notice.order_id,
            recipient=STAFF_RECIPIENT,
            payload={"message": notice.message},
            # One per workflow step: a retried activity does not notify twice, a later
            # dispute of the same order does notify again.
            dedup_key=f"{notice.kind}:{notice.order_id}:{info.workflow_run_id}:{info.activity_id}",
        )

    @activity.defn(name="order.cancel_and_restock")
    async def cancel_and_restock(self, req: CancelRequest) -> bool:
        # A synced order refuses (`OrderStateError`, non-retryable by the table).
        return await orders.cancel_and_restock(self._pool, req.order_id, req.reason)

    @activity.defn(name="order.notify_customer")
    async def notify_customer(self, notice: CustomerNotice) -> None:
        await orders.enqueue_notification(
            self._pool,
            kind=notice.kind,
            order_id=notice.order_id,
            payload={"refunded": notice.refunded},
        )

    # --- Mahak ---------------------------------------------------------------------------------

    @activity.defn(name="order.send")
    async def send(self, req: SendRequest) -> SendOutcome:
        """Send the order (probing Mahak first after an earlier attempt). With `req.claim`,
        also the bookkeeping around it: one transaction claims and loads the order before the
        Mahak call, one records the attempt (and marks an accepted order synced) after it."""
        if not req.claim:
            order = await existing_order(self._pool, req.order_id)
            return await self._send(order, probe_first=req.probe_first)
        async with transaction(self._pool) as conn:
            if not await orders.begin_send(conn, req.order_id):
                # Nothing sent: the workflow reloads the order and follows the shop.
                return SendOutcome(kind="rejected", claimed=False)
            order = await existing_order(conn, req.order_id)
        outcome = await self._send(order, probe_first=req.probe_first)
        error = None if outcome.kind == "accepted" else outcome.summary()
        async with transaction(self._pool) as conn:
            await orders.record_attempt(conn, order.id, error, attempt=req.attempt)
            if outcome.kind == "accepted":
                outcome.marked_synced = await self._mark_synced(
                    conn, SyncedNote(order_id=order.id, mahak_order_id=outcome.mahak_order_id)
                )
        outcome.attempt_recorded = True
        return outcome

    async def _send(self, order: ShopOrder, *, probe_first: bool) -> SendOutcome:
        bound = log.bind(order_id=order.id, order_client_id=order.order_client_id)
        try:
            async with Heartbeat():
                # An earlier attempt, of this run or of an earlier run (the order row says
                # so), may have reached Mahak: look before sending.
                if (
                    probe_first
                    or activity.info().attempt > 1
                    or order.sync_attempts > 0
                    or order.mahak_order_id is not None
                ):
                    found = await self._probe(order, bound)
                    if found is not None:
                        return found
                visitor_id = await self._visitor_id()
                fields = await self._outgoing_fields(visitor_id)
                if order.payment_status == "paid" and (problem := fields.receipt_problem()):
                    return SendOutcome(
                        kind="rejected",
                        failures=[
                            MahakFailure(
                                collection="Receipts",
                                client_id=order.order_client_id,
                                property="CashCode,BankId",
                                message=problem,
                            )
                        ],
                    )
                person_id, refused = await self._person_for(order, visitor_id)
                if refused is not None:
                    return refused
                # An attempt Temporal already gave up on can still be running: the database,
                # not this process, says whether the order may still go.
                await self._still_claimed(order.id)
                result = await self._mahak.save_all_data(
                    order_request(order, visitor_id=visitor_id, person_id=person_id, fields=fields)
                )
        except MahakError as err:
            bound.warning("mahak send failed", error=type(err).__name__)
            metrics.count("mahak_sync_send_attempts", result=type(err).__name__)
            raise _redacted(err, order) from None
        outcome = classify(order, result)
        metrics.count("mahak_sync_send_attempts", result=outcome.kind)
        bound.info(
            "mahak answered",
            outcome=outcome.kind,
            mahak_order_id=outcome.mahak_order_id,
            failures=len(outcome.failures),
        )
        if outcome.kind == "accepted" and outcome.mahak_order_id is not None:
            # Keep Mahak's ids the moment we have them. If this fails (the database is down)
            # or the process dies first, the retry finds the order in Mahak by its client id
            # instead of sending it again.
            await self._record_ids(order, outcome.mahak_order_id, result)
        return outcome

    async def _still_claimed(self, order_id: int) -> None:
        row = await self._pool.fetchrow(
            "SELECT sync_status, payment_status, compensation_started_at IS NOT NULL AS undoing "
            "FROM shop_orders WHERE id = $1",
            order_id,
        )
        if (
            row is None
            or row["sync_status"] != "sending"
            or row["payment_status"] != "paid"
            or row["undoing"]
        ):
            state = dict(row) if row is not None else "gone"
            raise ApplicationError(
                f"order {order_id} is no longer claimed for sending ({state}): not sent",
                type=ErrorType.ORDER_STATE,
                non_retryable=True,
            )

    async def _probe(self, order: ShopOrder, bound: Any) -> SendOutcome | None:
        """The outcome when Mahak already holds the order (complete, or all but its receipt,
        which is then sent alone), a dispute when what it holds differs, else None: send."""
        check = await self._confirm(order)
        if check.found and check.matches:
            bound.info(
                "order already in Mahak; not sending again", mahak_order_id=check.mahak_order_id
            )
            return SendOutcome(
                kind="accepted",
                mahak_order_id=check.mahak_order_id,
                saved_line_client_ids=sorted(ln.order_detail_client_id for ln in order.lines),
                found_by_probe=True,
            )
        if check.differs:
            return SendOutcome(
                kind="rejected",
                mahak_order_id=check.mahak_order_id,
                failures=[
                    MahakFailure(
                        collection="Orders",
                        client_id=order.order_client_id,
                        message=f"Mahak holds the order with differences: {check.detail}",
                    )
                ],
            )
        return None  # not there, or lines missing: the (re)send creates or completes it

    async def _record_ids(
        self, order: ShopOrder, mahak_order_id: int, result: SaveAllDataResult
    ) -> None:
        receipt = result.for_client_id("Receipts", order.order_client_id)
        await orders.record_mahak_ids(
            self._pool,
            order.id,
            mahak_order_id,
            {
                ln.order_detail_client_id: r.entity_id
                for ln in order.lines
                if (r := result.for_client_id("OrderDetails", ln.order_detail_client_id))
                and r.entity_id is not None
            },
            receipt_id=receipt.entity_id if receipt is not None and receipt.result else None,
        )

    @activity.defn(name="order.check_in_mahak")
    async def check_in_mahak(self, order_id: int) -> MahakOrderCheck:
        order = await existing_order(self._pool, order_id)
        try:
            async with Heartbeat():
                return await self._confirm(order)
        except MahakError as err:
            raise _redacted(err, order) from None

    async def _confirm(self, order: ShopOrder) -> MahakOrderCheck:
        """Compare what Mahak holds with the order; when all but the receipt is there, send
        the receipt alone (its deterministic client id makes a repeat an update) and keep
        Mahak's ids."""
        check = compare_with_mahak(order, await self._lookup.holding(order))
        if not (check.found and check.matches and check.receipt_missing):
            if check.found and check.matches and check.mahak_order_id is not None:
                await orders.record_mahak_ids(
                    self._pool, order.id, check.mahak_order_id, receipt_id=check.mahak_receipt_id
                )
            return check
        visitor_id = await self._visitor_id()
        person_id = await self._known_person(order)
        result = await self._mahak.save_all_data(
            receipt_request(
                order,
                visitor_id=visitor_id,
                person_id=person_id,
                fields=await self._outgoing_fields(visitor_id),
            )
        )
        saved = result.for_client_id("Receipts", order.order_client_id)
        if saved is None or not saved.result or saved.entity_id is None:
            failures = [as_failure(f, order) for f in result.failures()]
            reason = failures[0].message if failures else "no result for the receipt"
            return check.model_copy(
                update={
                    "matches": False,
                    "differs": True,
                    "detail": f"the order is in Mahak without its receipt, and Mahak refused the "
                    f"receipt: {reason}"[:500],
                }
            )
        log.info("receipt sent alone", order_id=order.id, receipt_id=saved.entity_id)
        assert check.mahak_order_id is not None
        await orders.record_mahak_ids(
            self._pool, order.id, check.mahak_order_id, receipt_id=saved.entity_id
        )
        return check.model_copy(
            update={"receipt_missing": False, "mahak_receipt_id": saved.entity_id}
        )

    @activity.defn(name="order.reverse_in_mahak")
    async def reverse_in_mahak(self, req: ReverseRequest) -> ReverseOutcome:
        """Delete from Mahak everything of the order it holds (order, lines, receipt), found by
        reading Mahak, not from what a workflow remembers; then read Mahak back.

        Mahak lets a client edit its records until the desktop imports the order; after that,
        or in a closed period, it refuses: what remains is reported (and kept on the order
        row) for a staff task. A refusal of the whole request is such an answer too, not an
        error: retrying it blindly cannot help (`shared/mahak-api.md` §10 (g)).
        """
        order = await existing_order(self._pool, req.order_id)
        bound = log.bind(order_id=order.id, order_client_id=order.order_client_id)
        detail = ""
        try:
            async with Heartbeat():
                held = await self._lookup.holding(order)
                if not held.anything_live():
                    await orders.record_leftovers(self._pool, order.id, None)
                    return ReverseOutcome(
                        reversed=True, found=False, detail="Mahak holds nothing of the order"
                    )
                visitor_id = await self._visitor_id()
                person_id = await self._known_person(order)
                try:
                    result = await self._mahak.save_all_data(
                        order_request(
                            order,
                            visitor_id=visitor_id,
                            person_id=person_id,
                            deleted=True,
                            line_client_ids=held.live_line_client_ids(),
                            with_receipt=held.live_receipt() is not None,
                            fields=await self._outgoing_fields(visitor_id),
                        )
                    )
                    failures = result.failures()
                    if failures:
                        first = failures[0]
                        detail = (
                            "the order was already imported in Mahak"
                            if any(is_already_registered(f) for f in failures)
                            else redact(
                                f"{first.collection}.{first.property}: {first.message}", order
                            )
                        )
                except MahakPermanentError as err:
                    detail = _redacted(err, order).message
                remaining = (await self._lookup.holding(order)).describe_live()
        except MahakError as err:
            raise _redacted(err, order) from None
        leftovers = " and ".join(remaining) if remaining else None
        await orders.record_leftovers(self._pool, order.id, leftovers)
        if remaining:
            bound.warning("mahak reversal incomplete", remaining=remaining)
            return ReverseOutcome(
                reversed=False, leftovers=remaining, detail=(detail or "Mahak kept them")[:500]
            )
        return ReverseOutcome(reversed=True)

    async def _visitor_id(self) -> int:
        """The visitor this login acts as (logging in first when needed)."""
        visitor_id = (await self._mahak.login()).visitor_id
        if visitor_id is None:
            raise ApplicationError(
                "Mahak login reported no visitor id",
                type=ErrorType.MAHAK_REFUSED,
                non_retryable=True,
            )
        return visitor_id

    async def _known_person(self, order: ShopOrder) -> int | None:
        customer = order.customer
        if customer is None:
            return None
        if customer.mahak_person_id is not None:
            return customer.mahak_person_id
        return await mapping.mahak_id_for(self._pool, "people", customer.id)

    async def _person_for(
        self, order: ShopOrder, visitor_id: int
    ) -> tuple[int | None, SendOutcome | None]:
        """The customer's Mahak person id, creating the person (and its visitor link) first
        when the shop has never sent this customer."""
        known = await self._known_person(order)
        if known is not None or order.customer is None:
            return known, None
        customer = order.customer
        group_id = await self._person_group_id()
        if group_id is None:  # §10 (b): never send a person without a group
            return None, SendOutcome(
                kind="rejected",
                failures=[
                    MahakFailure(
                        collection="People",
                        client_id=person_client_id(customer.id),
                        property="PersonGroupId",
                        message=NO_PERSON_GROUP,
                    )
                ],
            )
        result = await self._mahak.save_all_data(
            customer_request(customer, visitor_id=visitor_id, person_group_id=group_id)
        )
        person = result.for_client_id("People", person_client_id(customer.id))
        failures = [as_failure(f, order) for f in result.failures()]
        if person is None or not person.result or person.entity_id is None:
            return None, SendOutcome(
                kind="rejected",
                failures=failures
                or [MahakFailure(collection="People", message="Mahak did not create the customer")],
            )
        await mapping.set_mapping(self._pool, "people", customer.id, person.entity_id)
        return person.entity_id, None

    async def _person_group_id(self) -> int | None:
        """MAHAK_PERSON_GROUP_ID, else the first live person group (mirrored, else from Mahak)."""
        configured = self._settings.mahak_person_group_id
        if configured is not None:
            return configured
        # Issue 18: the mirrored groups first; Mahak itself while the mirror holds none.
        mirrored = await storefront.default_person_group(self._pool)
        if mirrored is not None:
            return mirrored
        if self._discovered_group is None:
            groups = (await self._mahak.get_all_data({"person_groups": 0}))["person_groups"].rows
            self._discovered_group = next(
                (g.person_group_id for g in groups if not g.deleted), None
            )
        return self._discovered_group

    async def _outgoing_fields(self, visitor_id: int) -> OutgoingFields:
        """Line and receipt fields from settings; without a configured cash box or bank, the
        receipt goes to this visitor's cash box (its `CashCode`), as public clients do."""
        settings = self._settings
        cash_code, bank_id = settings.mahak_cash_code, settings.mahak_bank_id
        if cash_code is None and bank_id is None:
            if self._cash_codes.get(visitor_id) is None:
                visitors = (await self._mahak.get_all_data({"visitors": 0}))["visitors"].rows
                self._cash_codes[visitor_id] = next(
                    (v.cash_code for v in visitors if v.visitor_id == visitor_id and not v.deleted),
                    None,
                )
            cash_code = self._cash_codes[visitor_id]
        # Issue 18: the catalog's rule (shopdb/storefront.py), settings overriding the percents.
        mahak = await storefront.tax_defaults(self._pool)
        return OutgoingFields(
            tax_percent=_first(settings.mahak_tax_percent, mahak.tax_percent),
            charge_percent=_first(settings.mahak_charge_percent, mahak.charge_percent),
            cash_code=cash_code,
            bank_id=bank_id,
            taxed=mahak.enabled,
        )

    def all(self) -> list[Any]:
        return [
            self.load,
            self.begin_send,
            self.begin_compensation,
            self.send,
            self.check_in_mahak,
            self.record_attempt,
            self.mark_synced,
            self.mark_dispute,
            self.notify_staff,
            self.reverse_in_mahak,
            self.cancel_and_restock,
            self.notify_customer,
        ]


def _first(*values: float | None) -> float:
    return next((v for v in values if v is not None), 0.0)
