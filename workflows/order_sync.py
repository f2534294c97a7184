"""`OrderSyncWorkflow`: one paid website order, sent to Mahak exactly once.

Started by the payment callback (workflow id `order-sync-<order id>`), by `starter.py order` or
by the safety-net sweep. It decides; its activities (`activities/orders.py`,
`activities/payments.py`) do every read and write.

Exactly once: Mahak has no idempotency key, only our deterministic `orderClientId`. Every send
after the first (a timeout, a crashed worker, an operator's resend) therefore asks the send
activity to look the order up in Mahak before sending, and an "already registered" answer is
confirmed by comparing what Mahak holds with the order before it counts as synced.

Compensation (inventory conflict, an operator's cancel, or the shop cancelling the order) is a
saga of idempotent steps. It is first recorded in the database (no send may begin after that,
and the sweep never restarts the order); then the shop side runs at once, not held behind a
Mahak outage: cancel + restock, refund, tell the customer; then everything Mahak holds for the
order (order, lines, receipt, found by reading Mahak) is deleted, retried until done. A step
that fails for good becomes a staff notice naming exactly what remains and the saga goes on:
the workflow ends `cancelled` or `cancelled_with_staff_task`, never failed.

The database is the guard: every compare-and-set (`begin_send`, `mark_synced`, `mark_dispute`)
that refuses ends the forward path; the workflow reloads the order and follows what the shop
decided (synced, or cancelled: then the saga).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RawValue, RetryPolicy, SearchAttributeUpdate
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.types import MethodAsyncSingleParam, ParamType, ReturnType, SelfType

with workflow.unsafe.imports_passed_through():
    from activities.orders import OrderActivities
    from activities.payments import PaymentActivities
    from mahak_sync import metrics
    from mahak_sync.errors import RETRYABLE_TYPES, ErrorType
    from workflows.order_types import (
        DISPUTE_ACTIONS,
        INCOMING_SYNC_WORKFLOW_ID,
        ORDER_ID_ATTR,
        SYNC_STATUS_ATTR,
        AttemptNote,
        CancelRequest,
        CustomerNotice,
        DisputeInfo,
        DisputeNote,
        InventoryConflictNotice,
        MahakFailure,
        OrderSummary,
        OrderSyncCarry,
        OrderSyncInput,
        OrderSyncPolicy,
        OrderSyncResult,
        OrderSyncStatus,
        ResolveAck,
        ResolveDispute,
        ReverseRequest,
        SendOutcome,
        SendRequest,
        StaffNotice,
        SyncedNote,
        SyncOutcome,
        SyncStatus,
    )

# Database bookkeeping and compensations must eventually succeed: retry forever, gently.
_UNTIL_DONE = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=5),
)
_DB_TIMEOUT = timedelta(seconds=60)
_MAHAK_TIMEOUT = timedelta(minutes=5)

# `workflow.patched` ids: runs recorded before each change replay down the old path.
# Long retries continue as new (histories before it grew by ~25 events per attempt).
PATCH_CONTINUE_AS_NEW = "order-retry-continue-as-new"
# A compensation after a send whose answer never came looks in Mahak and reverses what it
# finds (before, only a known Mahak id or saved lines were reversed).
PATCH_REVERSE_UNKNOWN_SEND = "order-reverse-unknown-send"
# The saga of issue 11: compensation recorded first, shop side before Mahak, never failing;
# every database refusal honoured; credentials and bad bodies handled. Decided once per run,
# before its first command, so a run recorded before it replays wholly down the old path.
PATCH_SAGA = "order-saga-v2"
# The cheap happy path (issue 16): the order is loaded by a local activity, and the send
# claims it (`begin_send`) and, once Mahak answered, records the attempt and marks it synced
# itself, in one transaction on each side of the Mahak call. A happy-path order costs one
# regular activity instead of five. Decided once per run, like `PATCH_SAGA`.
PATCH_FAST_SEND = "order-fast-send"


class _ShopRefused(Exception):
    """A compare-and-set in the database refused: the shop decided something else."""


@workflow.defn(name="OrderSyncWorkflow")
class OrderSyncWorkflow:
    def __init__(self) -> None:
        self._v2 = False
        self._fast = False
        self._bad_responses = 0
        self._credentials_notified = False
        self._staff_tasks: list[str] = []
        self._order_id = 0
        self._policy = OrderSyncPolicy()
        self._stage = "pending"
        self._sync_status: SyncStatus = "pending"
        self._attempts = 0
        self._last_error: str | None = None
        self._mahak_order_id: int | None = None
        self._saved_lines: list[int] = []
        self._accepted = False
        self._stale_refreshes = 0
        self._dispute: DisputeInfo | None = None
        self._decision: ResolveDispute | None = None  # an operator's, not yet acted on
        self._conflict: InventoryConflictNotice | None = None
        self._compensations: list[str] = []
        self._status_published = False
        self._runs = 1
        self._attempts_this_run = 0
        # The retry window of a run continued in the middle of retrying (else set per round).
        self._carried_window: tuple[datetime, timedelta] | None = None
        self._next_attempt_at: datetime | None = None
        self._last_refused: str | None = None  # the last operator message that did not apply

    # --- Messages ----------------------------------------------------------------------------

    @workflow.query
    def status(self) -> OrderSyncStatus:
        return OrderSyncStatus(
            order_id=self._order_id,
            stage=self._stage,
            sync_status=self._sync_status,
            attempts=self._attempts,
            last_error=self._last_error,
            mahak_order_id=self._mahak_order_id,
            saved_line_client_ids=list(self._saved_lines),
            stale_refreshes=self._stale_refreshes,
            dispute=self._dispute,
            inventory_conflict=self._conflict,
            compensations=list(self._compensations),
            runs=self._runs,
            next_attempt_at=self._next_attempt_at,
            last_refused=self._last_refused,
        )

    @workflow.signal(name="resolve_dispute")
    def resolve_dispute_signal(self, decision: ResolveDispute) -> None:
        # A signal cannot be refused; one that does not apply is logged and dropped.
        problem = self._decision_problem(decision)
        if problem:
            self._refused(f"resolve_dispute signal ({decision.action}): {problem}")
            return
        self._decision = decision

    @workflow.update(name="resolve_dispute")
    async def resolve_dispute_update(self, decision: ResolveDispute) -> ResolveAck:
        self._decision = decision
        return ResolveAck(accepted=True, action=decision.action)

    @resolve_dispute_update.validator
    def _validate_resolve(self, decision: ResolveDispute) -> None:
        problem = self._decision_problem(decision)
        if problem:
            # Not retryable: the same decision would be refused again.
            raise ApplicationError(problem, type="DecisionRefused", non_retryable=True)

    @workflow.signal(dynamic=True)
    def unknown_signal(self, name: str, args: Sequence[RawValue]) -> None:
        self._refused(
            f"signal {name!r} is not one this workflow handles "
            f"(resolve_dispute, inventory_conflict)"
        )

    def _refused(self, what: str) -> None:
        """An operator's message that cannot apply: it must not vanish without a trace."""
        self._last_refused = what[:300]
        workflow.logger.warning("refused: %s", what)

    @workflow.signal
    def inventory_conflict(self, notice: InventoryConflictNotice | None = None) -> None:
        if self._accepted:
            # Mahak took the order, so its stock already accounts for it: nothing to undo.
            workflow.logger.info("inventory_conflict after Mahak accepted the order: ignored")
            return
        if self._conflict is None:
            self._conflict = notice or InventoryConflictNotice(reason="signalled")

    def _decision_problem(self, decision: ResolveDispute) -> str | None:
        if decision.action not in DISPUTE_ACTIONS:
            return (
                f"unknown action {decision.action!r}; expected one of {', '.join(DISPUTE_ACTIONS)}"
            )
        if self._dispute is None:
            return "no dispute is pending for this order"
        if self._decision is not None:
            return "a decision is already being applied"
        return None

    # --- Main line ---------------------------------------------------------------------------

    @workflow.run
    async def run(self, inp: OrderSyncInput) -> OrderSyncResult:
        self._v2 = workflow.patched(PATCH_SAGA)
        self._fast = self._v2 and workflow.patched(PATCH_FAST_SEND)
        self._order_id = inp.order_id
        self._policy = inp.policy
        try:
            return await self._run(inp)
        except _ShopRefused as refused:
            return await self._follow_the_shop(str(refused))

    async def _run(self, inp: OrderSyncInput) -> OrderSyncResult:
        if inp.carry is not None:
            # Continued as new while retrying: the order was loaded and checked by the first
            # run, and the search attributes come along; go straight back to sending.
            self._resume(inp.carry)
            return await self._sync()
        if self._fast:
            # One search-attribute update where there were two.
            self._set_status("pending", "loading", ORDER_ID_ATTR.value_set(inp.order_id))
        else:
            workflow.upsert_search_attributes([ORDER_ID_ATTR.value_set(inp.order_id)])
            self._set_status("pending", "loading")

        order: OrderSummary | None = await (
            self._local(OrderActivities.load, inp.order_id)
            if self._fast
            else self._db(OrderActivities.load, inp.order_id)
        )
        if order is None:
            raise ApplicationError(f"order {inp.order_id} does not exist", type="OrderNotFound")
        if self._v2 and (order.compensation_started or order.sync_status == "cancelled"):
            if order.mahak_leftovers is None:
                # A compensation began earlier (its run may have been terminated halfway), or
                # the shop cancelled the order itself: run the saga, never send. Its steps
                # are idempotent (the refund is owed once; Mahak is read, not remembered).
                return await self._compensate(
                    "finishing a compensation that began earlier"
                    if order.compensation_started
                    else "the shop cancelled the order before its sync began"
                )
            self._set_status("cancelled", "cancelled")
            return self._result(
                "cancelled",
                note="cancelled earlier; a staff task owns what "
                f"Mahak kept: {order.mahak_leftovers}",
            )
        # Mahak's ids alone (a run that died before marking it synced) prove nothing about
        # lines and receipt: such an order goes through the send, whose probe confirms it.
        if order.synced_to_mahak and (order.sync_status == "synced" or not self._v2):
            self._mahak_order_id = order.mahak_order_id
            self._set_status("synced", "already_synced")
            return self._result("already_synced", note="the order was already in Mahak")
        if order.sync_status == "cancelled":
            self._set_status("cancelled", "cancelled")
            return self._result("cancelled", note="the order was already cancelled")
        if not order.paid:
            # Failing (not completing) leaves the workflow id free for a start after payment.
            raise ApplicationError(
                f"order {inp.order_id} is not paid (payment status {order.payable_status!r})",
                type="OrderNotPaid",
            )
        self._mahak_order_id = order.mahak_order_id
        return await self._sync()

    async def _sync(self) -> OrderSyncResult:
        while True:
            outcome = await self._send_until_answered()
            if outcome is None:  # an inventory conflict arrived before Mahak took the order
                return await self._compensate("inventory conflict before Mahak accepted the order")

            if outcome.kind == "accepted":
                return await self._finish_synced(
                    outcome.mahak_order_id, None, marked=outcome.marked_synced
                )

            if outcome.kind == "already_registered":
                check = await self._activity(
                    OrderActivities.check_in_mahak, self._order_id, timeout=_MAHAK_TIMEOUT
                )
                if check.found and check.mahak_order_id is not None:
                    self._mahak_order_id = check.mahak_order_id
                if check.found and check.matches:
                    return await self._finish_synced(
                        check.mahak_order_id, "already registered in Mahak; contents confirmed"
                    )
                decision = await self._dispute_wait(
                    f"Mahak says the order is already registered but {check.detail or 'it differs'}",
                    outcome.failures,
                )
            elif outcome.kind == "inventory":
                return await self._compensate("Mahak refused a line for stock")
            elif outcome.kind == "stale_reference" and (
                self._stale_refreshes < self._policy.max_stale_refreshes
            ):
                await self._refresh_and_wait(outcome)
                continue
            else:
                decision = await self._dispute_wait(self._dispute_reason(outcome), outcome.failures)

            if decision is None:  # inventory conflict while waiting for the operator
                return await self._compensate("inventory conflict while in dispute")
            if decision.action == "mark_synced":
                return await self._finish_synced(
                    self._mahak_order_id,
                    _by_operator("marked synced", decision.note),
                )
            if decision.action == "cancel":
                return await self._compensate(_by_operator("cancelled", decision.note))
            self._stale_refreshes = 0  # resend: a fresh round

    async def _send_until_answered(self) -> SendOutcome | None:
        """Send until Mahak gives a business answer; transient failures are retried with
        exponential backoff until the retry window closes (then an operator decides).
        Returns None when an inventory conflict should stop the order first."""
        policy = self._policy
        deadline, delay = self._carried_window or (
            workflow.now() + policy.send_retry_for,
            policy.first_retry_delay,
        )
        self._carried_window = None
        while True:
            if self._conflict is not None:
                return None
            self._set_status("sending", "sending")
            if not self._fast:
                began = await self._db(OrderActivities.begin_send, self._order_id)
                if self._v2 and began is False:
                    raise _ShopRefused("begin_send")
            answer: SendOutcome | None = None
            try:
                answer = await workflow.execute_activity_method(
                    OrderActivities.send,
                    SendRequest(
                        order_id=self._order_id,
                        probe_first=self._attempts > 0,
                        claim=self._fast,
                        attempt=self._attempts + 1 if self._fast else None,
                    ),
                    start_to_close_timeout=policy.send_timeout,
                    heartbeat_timeout=policy.send_heartbeat_timeout,
                    # One try per activity: the retry loop is here, so every attempt is
                    # counted, recorded on the order and visible in `status`.
                    retry_policy=RetryPolicy(maximum_attempts=1),
                )
                if not answer.claimed:
                    raise _ShopRefused("begin_send")
                error = None if answer.kind == "accepted" else answer.summary()
            except ActivityError as err:
                error = _describe(err)
                kind = _error_type(err)
                if kind is not None and kind not in RETRYABLE_TYPES:
                    # Mahak refused the whole request (not one record): an operator looks.
                    answer = SendOutcome(
                        kind="rejected",
                        failures=[MahakFailure(collection="request", message=error)],
                    )
                elif self._v2:
                    answer = await self._on_retryable(kind, error)
            self._attempts += 1
            self._attempts_this_run += 1
            self._last_error = error
            note = AttemptNote(order_id=self._order_id, error=error, attempt=self._attempts)
            if not self._fast:
                await self._db(OrderActivities.record_attempt, note)
            elif answer is None or not answer.attempt_recorded:
                # The send failed (its own transaction may not have run): record it here.
                await self._local(OrderActivities.record_attempt, note)
            if answer is not None:
                self._absorb(answer)
                return answer

            if workflow.now() + delay > deadline:
                return SendOutcome(
                    kind="rejected",
                    failures=[
                        MahakFailure(
                            collection="request",
                            message=f"still failing after {self._attempts} attempts: {error}",
                        )
                    ],
                )
            self._set_status("retrying", "waiting_to_retry")
            self._next_attempt_at = workflow.now() + delay
            self._describe_current()
            try:
                await workflow.wait_condition(lambda: self._conflict is not None, timeout=delay)
            except TimeoutError:
                pass
            self._next_attempt_at = None
            delay = min(delay * 2, policy.max_retry_delay)
            if self._history_is_long() and workflow.patched(PATCH_CONTINUE_AS_NEW):
                await self._continue_as_new(deadline, delay)

    async def _on_retryable(self, kind: str | None, error: str) -> SendOutcome | None:
        """Bad credentials: staff hear of it once, the order keeps retrying. Bodies that are
        not Mahak's envelope: retried, then an operator decides. None: just retry."""
        if kind == ErrorType.MAHAK_AUTH and not self._credentials_notified:
            self._credentials_notified = True
            await self._notify_staff(
                "mahak_credentials",
                f"Mahak refused the login while sending order {self._order_id}: check "
                "MAHAK_USERNAME / MAHAK_PASSWORD. Orders wait and are retried meanwhile.",
            )
        if kind != ErrorType.MAHAK_BAD_RESPONSE:
            self._bad_responses = 0
            return None
        self._bad_responses += 1
        if self._bad_responses < self._policy.max_bad_responses:
            return None
        self._bad_responses = 0
        return SendOutcome(
            kind="rejected",
            failures=[
                MahakFailure(
                    collection="request",
                    message=f"Mahak answered {self._policy.max_bad_responses} times in a row with a "
                    f"body that is not its envelope; last: {error}"[:500],
                )
            ],
        )

    def _history_is_long(self) -> bool:
        return self._conflict is None and (
            self._attempts_this_run >= self._policy.attempts_per_run
            or workflow.info().is_continue_as_new_suggested()
        )

    async def _continue_as_new(self, deadline: datetime, delay: timedelta) -> None:
        """Hand the retry over to a fresh run (same workflow id, status and search
        attributes), unless a conflict arrived meanwhile: then this run handles it."""
        await workflow.wait_condition(workflow.all_handlers_finished)
        if self._conflict is not None:
            return
        workflow.continue_as_new(
            OrderSyncInput(
                order_id=self._order_id,
                policy=self._policy,
                carry=OrderSyncCarry(
                    attempts=self._attempts,
                    retry_deadline=deadline,
                    next_delay=delay,
                    last_error=self._last_error,
                    mahak_order_id=self._mahak_order_id,
                    saved_line_client_ids=self._saved_lines,
                    stale_refreshes=self._stale_refreshes,
                    runs=self._runs + 1,
                    bad_responses=self._bad_responses,
                    credentials_notified=self._credentials_notified,
                ),
            )
        )

    def _resume(self, carry: OrderSyncCarry) -> None:
        self._attempts = carry.attempts
        self._last_error = carry.last_error
        self._mahak_order_id = carry.mahak_order_id
        self._saved_lines = list(carry.saved_line_client_ids)
        self._stale_refreshes = carry.stale_refreshes
        self._runs = carry.runs
        self._bad_responses = carry.bad_responses
        self._credentials_notified = carry.credentials_notified
        self._carried_window = (carry.retry_deadline, carry.next_delay)
        # The search attribute already says "retrying" (carried over by continue-as-new).
        self._sync_status, self._status_published = "retrying", True

    def _absorb(self, outcome: SendOutcome) -> None:
        if outcome.mahak_order_id is not None:
            self._mahak_order_id = outcome.mahak_order_id
        self._saved_lines = list(outcome.saved_line_client_ids)
        if outcome.kind == "accepted":
            self._accepted = True
            self._conflict = None

    async def _refresh_and_wait(self, outcome: SendOutcome) -> None:
        self._stale_refreshes += 1
        self._set_status("retrying", "refreshing_references")
        try:
            await workflow.get_external_workflow_handle(INCOMING_SYNC_WORKFLOW_ID).signal(
                "sync_now"
            )
        except Exception as err:  # noqa: BLE001 - the incoming sync may simply not be running
            workflow.logger.warning("could not signal the incoming sync: %s", err)
        workflow.logger.info(
            "stale references %s: refresh %d of %d",
            outcome.stale_entities,
            self._stale_refreshes,
            self._policy.max_stale_refreshes,
        )
        try:
            await workflow.wait_condition(
                lambda: self._conflict is not None, timeout=self._policy.stale_refresh_wait
            )
        except TimeoutError:
            pass

    # --- Disputes ----------------------------------------------------------------------------

    async def _dispute_wait(
        self, reason: str, failures: list[MahakFailure]
    ) -> ResolveDispute | None:
        self._dispute = DisputeInfo(reason=reason, failures=failures, since=workflow.now())
        self._set_status("dispute", "dispute")
        marked = await self._db(
            OrderActivities.mark_dispute, DisputeNote(order_id=self._order_id, reason=reason)
        )
        if self._v2 and marked is False:
            raise _ShopRefused("mark_dispute")

        def decided() -> bool:
            return self._decision is not None or self._conflict_blocks()

        try:
            await workflow.wait_condition(decided, timeout=self._policy.decision_timeout)
        except TimeoutError:
            self._dispute.escalated = True
            self._stage = "dispute_escalated"
            await self._db(
                OrderActivities.notify_staff,
                StaffNotice(
                    order_id=self._order_id,
                    kind="order_dispute_escalated",
                    message=f"order {self._order_id} has waited {self._policy.decision_timeout} "
                    f"for a decision: {reason}"[:1000],
                ),
            )
            await workflow.wait_condition(decided)

        decision, self._decision = self._decision, None
        self._dispute = None
        return decision

    def _conflict_blocks(self) -> bool:
        return self._conflict is not None and not self._accepted

    @staticmethod
    def _dispute_reason(outcome: SendOutcome) -> str:
        if outcome.kind == "stale_reference":
            return "references still unknown to Mahak after refreshing: " + outcome.summary()
        return outcome.summary()

    # --- Endings -----------------------------------------------------------------------------

    async def _finish_synced(
        self, mahak_order_id: int | None, note: str | None, *, marked: bool | None = None
    ) -> OrderSyncResult:
        """`marked`: what the send itself did about marking the order synced (None: not
        asked to, so it is marked here)."""
        self._accepted = True
        self._conflict = None
        if mahak_order_id is not None:
            self._mahak_order_id = mahak_order_id
        if marked is None:
            marked = await self._db(
                OrderActivities.mark_synced,
                SyncedNote(
                    order_id=self._order_id,
                    mahak_order_id=self._mahak_order_id,
                    note=note,
                ),
            )
        if self._v2 and marked is False:
            raise _ShopRefused("mark_synced")
        self._last_error = None
        self._set_status("synced", "synced")
        return self._result("synced", note=note)

    async def _follow_the_shop(self, refused: str) -> OrderSyncResult:
        """The database refused `refused`: reload the order and follow the shop's decision."""
        order: OrderSummary | None = await self._db(OrderActivities.load, self._order_id)
        if order is None:
            raise ApplicationError(
                f"order {self._order_id} no longer exists", type=ErrorType.ORDER_NOT_FOUND
            )
        if order.sync_status == "synced":
            self._mahak_order_id = order.mahak_order_id or self._mahak_order_id
            self._set_status("synced", "synced")
            return self._result("synced", note="the shop marks the order synced")
        if order.sync_status == "cancelled" or order.compensation_started or not order.paid:
            return await self._compensate(
                f"the shop cancelled the order or took back its payment ({refused} refused)"
            )
        # Sendable, yet refused: only a concurrent writer explains it. Loud, and the sweep
        # starts a fresh run that sees the settled state.
        raise ApplicationError(
            f"order {self._order_id}: {refused} refused with status {order.sync_status!r}",
            type=ErrorType.ORDER_STATE,
            non_retryable=True,
        )

    async def _compensate(self, reason: str) -> OrderSyncResult:
        if self._v2:
            return await self._saga(reason)
        return await self._compensate_before_saga(reason)

    async def _saga(self, reason: str) -> OrderSyncResult:
        """Record the decision, undo the shop side at once, then Mahak until done. A step
        that fails for good becomes a staff task and the saga goes on."""
        self._set_status(self._sync_status, "compensating")
        if not await self._db(
            OrderActivities.begin_compensation,
            CancelRequest(order_id=self._order_id, reason=reason),
        ):
            await self._staff_task(
                "compensation_refused",
                f"order {self._order_id} was to be cancelled ({reason}), but the shop marks it "
                "synced: nothing was undone. Check the order in Mahak and in the shop.",
            )
            self._set_status("synced", "synced")
            return self._result(
                "synced", note=f"not cancelled: the shop marks it synced ({reason})"
            )

        if (
            await self._saga_step(
                "cancel and restock the order in the shop",
                OrderActivities.cancel_and_restock,
                CancelRequest(order_id=self._order_id, reason=reason),
            )
            is not _FAILED
        ):
            self._compensations.append("cancelled_and_restocked")
        refund = await self._saga_step(
            "refund the payment", PaymentActivities.refund, self._order_id, timeout=_MAHAK_TIMEOUT
        )
        refunded = refund is not _FAILED and refund.refunded
        if refund is not _FAILED:
            if refund.refunded or not refund.required:
                self._compensations.append("refunded" if refund.refunded else "nothing_to_refund")
            else:
                self._compensations.append("refund_manual")
                await self._staff_task(
                    "refund_needed", f"refund order {self._order_id} by hand: {refund.detail}"
                )
        if (
            await self._saga_step(
                "tell the customer",
                OrderActivities.notify_customer,
                CustomerNotice(order_id=self._order_id, kind="order_cancelled", refunded=refunded),
            )
            is not _FAILED
        ):
            self._compensations.append("customer_notified")

        reversal = await self._saga_step(
            "delete the order from Mahak",
            OrderActivities.reverse_in_mahak,
            ReverseRequest(
                order_id=self._order_id,
                mahak_order_id=self._mahak_order_id,
                line_client_ids=list(self._saved_lines),
            ),
            timeout=_MAHAK_TIMEOUT,
        )
        if reversal is not _FAILED:
            if reversal.reversed:
                self._compensations.append(
                    "mahak_reversed" if reversal.found else "nothing_in_mahak"
                )
            else:
                self._compensations.append("mahak_reversal_manual")
                await self._staff_task(
                    "mahak_reversal_needed",
                    f"{' and '.join(reversal.leftovers)} could not be deleted: {reversal.detail}. "
                    f"Reverse them in Mahak by hand (web order {self._order_id}).",
                )

        self._last_error = reason
        self._set_status("cancelled", "cancelled")
        if self._staff_tasks:
            return self._result(
                "cancelled_with_staff_task",
                note=f"{reason}; staff: {'; '.join(self._staff_tasks)}"[:1000],
            )
        return self._result("cancelled", note=reason)

    async def _saga_step(
        self,
        what: str,
        method: MethodAsyncSingleParam[SelfType, ParamType, ReturnType],
        arg: ParamType,
        *,
        timeout: timedelta = _DB_TIMEOUT,
    ) -> ReturnType | Any:
        """One compensation step, retried until done; a permanent failure is a staff task
        (and `_FAILED` returned)."""
        try:
            return await self._activity(method, arg, timeout=timeout)
        except ActivityError as err:
            await self._staff_task(
                "compensation_step_failed",
                f"order {self._order_id}: could not {what}: {_describe(err)}",
            )
            return _FAILED

    async def _staff_task(self, kind: str, message: str) -> None:
        self._staff_tasks.append(message[:300])
        await self._notify_staff(kind, message)

    async def _notify_staff(self, kind: str, message: str) -> None:
        await self._db(
            OrderActivities.notify_staff,
            StaffNotice(order_id=self._order_id, kind=kind, message=message[:1000]),
        )

    async def _compensate_before_saga(self, reason: str) -> OrderSyncResult:
        """The compensation of runs recorded before `PATCH_SAGA` (kept for their replay)."""
        self._set_status(self._sync_status, "compensating")
        known_in_mahak = self._mahak_order_id is not None or bool(self._saved_lines)
        # A send that timed out or crashed may have reached Mahak all the same: with no ids
        # the reversal first looks the order up, and reverses only what Mahak holds.
        if known_in_mahak or (self._attempts > 0 and workflow.patched(PATCH_REVERSE_UNKNOWN_SEND)):
            reversed_ = await self._activity(
                OrderActivities.reverse_in_mahak,
                ReverseRequest(
                    order_id=self._order_id,
                    mahak_order_id=self._mahak_order_id,
                    line_client_ids=list(self._saved_lines),
                ),
                timeout=_MAHAK_TIMEOUT,
            )
            self._compensations.append(
                "mahak_reversal_manual"
                if not reversed_.reversed
                else "mahak_reversed"
                if reversed_.found
                else "nothing_in_mahak"
            )
            if not reversed_.reversed:
                await self._db(
                    OrderActivities.notify_staff,
                    StaffNotice(
                        order_id=self._order_id,
                        kind="mahak_reversal_needed",
                        message=f"reverse order {self._order_id} (Mahak id {self._mahak_order_id}) "
                        f"by hand in Mahak: {reversed_.detail}"[:1000],
                    ),
                )
        await self._db(
            OrderActivities.cancel_and_restock,
            CancelRequest(order_id=self._order_id, reason=reason),
        )
        self._compensations.append("cancelled_and_restocked")
        refund = await self._activity(
            PaymentActivities.refund, self._order_id, timeout=_MAHAK_TIMEOUT
        )
        if refund.refunded or not refund.required:
            self._compensations.append("refunded" if refund.refunded else "nothing_to_refund")
        else:
            self._compensations.append("refund_manual")
            await self._db(
                OrderActivities.notify_staff,
                StaffNotice(
                    order_id=self._order_id,
                    kind="refund_needed",
                    message=f"refund order {self._order_id} by hand: {refund.detail}"[:1000],
                ),
            )
        await self._db(
            OrderActivities.notify_customer,
            CustomerNotice(
                order_id=self._order_id,
                kind="order_cancelled",
                refunded=refund.refunded,
            ),
        )
        self._compensations.append("customer_notified")
        self._last_error = reason
        self._set_status("cancelled", "cancelled")
        return self._result("cancelled", note=reason)

    # --- Helpers -----------------------------------------------------------------------------

    def _set_status(
        self, status: SyncStatus, stage: str, *also: SearchAttributeUpdate[Any]
    ) -> None:
        """`also`: search attributes published in the same update as a changed status."""
        self._stage = stage
        if status != self._sync_status or not self._status_published:
            self._sync_status = status
            self._status_published = True
            workflow.upsert_search_attributes([*also, SYNC_STATUS_ATTR.value_set(status)])
        self._describe_current()

    def _describe_current(self) -> None:
        """The Web UI's "current details" of this order (metadata, not history)."""
        parts = [f"web order {self._order_id}: {self._stage}", f"attempts {self._attempts}"]
        if self._next_attempt_at is not None:
            parts.append(f"next attempt {self._next_attempt_at:%Y-%m-%d %H:%M:%S} UTC")
        if self._dispute is not None:
            parts.append(f"dispute: {self._dispute.reason}")
        elif self._last_error:
            parts.append(f"last error: {self._last_error}")
        workflow.set_current_details("; ".join(parts)[:1000])

    def _result(self, outcome: SyncOutcome, note: str | None = None) -> OrderSyncResult:
        metrics.count("mahak_sync_orders", outcome=outcome)  # the workflow's meter: not on replay
        return OrderSyncResult(
            order_id=self._order_id,
            outcome=outcome,
            mahak_order_id=self._mahak_order_id,
            attempts=self._attempts,
            note=note,
        )

    async def _db(
        self, method: MethodAsyncSingleParam[SelfType, ParamType, ReturnType], arg: ParamType
    ) -> ReturnType:
        return await self._activity(method, arg, timeout=_DB_TIMEOUT)

    async def _local(
        self, method: MethodAsyncSingleParam[SelfType, ParamType, ReturnType], arg: ParamType
    ) -> ReturnType:
        """A short database step as a local activity: run by this worker within the workflow
        task, no round trip through the server, one marker in history."""
        return await workflow.execute_local_activity_method(
            method, arg, start_to_close_timeout=_DB_TIMEOUT, retry_policy=_UNTIL_DONE
        )

    async def _activity(
        self,
        method: MethodAsyncSingleParam[SelfType, ParamType, ReturnType],
        arg: ParamType,
        *,
        timeout: timedelta,
    ) -> ReturnType:
        """An activity retried until it succeeds or fails for good (by the error table)."""
        return await workflow.execute_activity_method(
            method, arg, start_to_close_timeout=timeout, retry_policy=_UNTIL_DONE
        )


# A compensation step that failed for good (the staff task is already raised).
_FAILED: Any = object()


def _error_type(err: ActivityError) -> str | None:
    cause = err.cause
    if isinstance(cause, ApplicationError):
        return cause.type
    return None  # timeouts and cancellations: the worker died or hung; treat as transient


def _describe(err: ActivityError) -> str:
    cause = err.cause
    text = str(cause) if cause is not None else str(err)
    kind = type(cause).__name__ if cause is not None else "ActivityError"
    return f"{kind}: {text}"[:500]


def _by_operator(what: str, note: str | None) -> str:
    """`cancelled by operator: <note>`, or without the colon when there is no note."""
    note = (note or "").strip()
    return f"{what} by operator: {note}" if note else f"{what} by operator"
