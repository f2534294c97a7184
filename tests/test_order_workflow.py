"""`OrderSyncWorkflow`'s decisions, with scripted activities on the time-skipping test server.

The activities are fakes registered under the real activity names; each test scripts what
Mahak answers and asserts what the workflow did about it (which activities ran, in which
order, with what) and what an operator sees (query, search attributes, update refusals).
"""

from __future__ import annotations

import contextlib
import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from temporalio import activity, workflow
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import Client, WorkflowFailureError, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from mahak_sync.config import Settings
from mahak_sync.orders_api import start_order_sync
from tests.fixtures_temporal import time_skipping_env
from workflows.order_sync import OrderSyncWorkflow
from workflows.order_types import (
    INCOMING_SYNC_WORKFLOW_ID,
    ORDER_ID_ATTR,
    SYNC_STATUS_ATTR,
    AttemptNote,
    CancelRequest,
    CustomerNotice,
    DisputeNote,
    MahakFailure,
    MahakOrderCheck,
    OrderSummary,
    OrderSyncInput,
    OrderSyncPolicy,
    OrderSyncResult,
    OrderSyncStatus,
    RefundOutcome,
    ResolveDispute,
    ReverseOutcome,
    ReverseRequest,
    SendOutcome,
    SendRequest,
    StaffNotice,
    SyncedNote,
    order_workflow_id,
)


class A:
    """The activity names the order workflow schedules: a contract with every recorded
    history (tests/test_replay.py fails if the workflow schedules another), so the stubs
    below register under them."""

    load = "order.load"
    begin_send = "order.begin_send"
    begin_compensation = "order.begin_compensation"
    send = "order.send"
    check_in_mahak = "order.check_in_mahak"
    record_attempt = "order.record_attempt"
    mark_synced = "order.mark_synced"
    mark_dispute = "order.mark_dispute"
    notify_staff = "order.notify_staff"
    reverse_in_mahak = "order.reverse_in_mahak"
    cancel_and_restock = "order.cancel_and_restock"
    notify_customer = "order.notify_customer"
    refund = "payment.refund"


POLICY = OrderSyncPolicy(
    send_retry_for=timedelta(hours=2),
    first_retry_delay=timedelta(seconds=10),
    max_retry_delay=timedelta(minutes=5),
    decision_timeout=timedelta(hours=24),
    max_stale_refreshes=2,
    stale_refresh_wait=timedelta(seconds=30),
)


@pytest.fixture(scope="module")
async def env():
    async with time_skipping_env() as env:
        await env.client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(
                namespace=env.client.namespace,
                search_attributes={
                    ORDER_ID_ATTR.name: IndexedValueType.INDEXED_VALUE_TYPE_INT,
                    SYNC_STATUS_ATTR.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
                },
            )
        )
        yield env


Answer = SendOutcome | Exception


class FakeShop:
    """The activities, scripted: `answers` are Mahak's replies to successive sends."""

    def __init__(
        self,
        answers: list[Answer],
        *,
        paid: bool = True,
        synced: bool = False,
        check: MahakOrderCheck | None = None,
        sync_status: str = "pending",
        claims: list[bool] | None = None,
        mark_refused: bool = False,
    ) -> None:
        self.answers = list(answers)
        # Successive answers of `begin_send` (the database's compare-and-set); True after.
        self.claims = list(claims or [])
        # `mark_synced` refuses: the shop cancelled the order while Mahak took it.
        self.mark_refused = mark_refused
        self.paid = paid
        self.synced = synced
        self.sync_status = sync_status
        self.check = check or MahakOrderCheck(found=False, detail="not found")
        self.calls: list[tuple[str, Any]] = []
        self.sends: list[SendRequest] = []

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]

    def args(self, name: str) -> list[Any]:
        return [arg for n, arg in self.calls if n == name]

    def claim(self, order_id: int) -> bool:
        self.calls.append((A.begin_send, order_id))
        claimed = self.claims.pop(0) if self.claims else True
        if not claimed:
            self.sync_status = "cancelled"  # refused: the shop cancelled the order
        return claimed

    def mark(self, note: SyncedNote) -> bool:
        self.calls.append((A.mark_synced, note))
        if self.mark_refused:
            self.sync_status = "cancelled"
        return not self.mark_refused

    def activities(self) -> list[Any]:
        shop = self

        @activity.defn(name=A.load)
        async def load(order_id: int) -> OrderSummary:
            shop.calls.append((A.load, order_id))
            return OrderSummary(
                order_id=order_id,
                paid=shop.paid,
                payable_status="paid" if shop.paid else "unpaid",
                sync_status=shop.sync_status,
                synced_to_mahak=shop.synced,
                mahak_order_id=555 if shop.synced else None,
                order_client_id=9_000_000 + order_id,
                line_count=2,
            )

        @activity.defn(name=A.begin_send)
        async def begin_send(order_id: int) -> bool:
            return shop.claim(order_id)

        @activity.defn(name=A.send)
        async def send(req: SendRequest) -> SendOutcome:
            # With `claim` (PATCH_FAST_SEND), the real send's bookkeeping is its own: the
            # steps are recorded under their names, in the order the real one runs them.
            if req.claim and not shop.claim(req.order_id):
                return SendOutcome(kind="rejected", claimed=False)
            shop.calls.append((A.send, req))
            shop.sends.append(req)
            answer = shop.answers.pop(0)
            if isinstance(answer, Exception):
                raise answer
            if not req.claim:
                return answer
            error = None if answer.kind == "accepted" else answer.summary()
            shop.calls.append(
                (
                    A.record_attempt,
                    AttemptNote(order_id=req.order_id, error=error, attempt=req.attempt),
                )
            )
            marked = None
            if answer.kind == "accepted":
                marked = shop.mark(
                    SyncedNote(order_id=req.order_id, mahak_order_id=answer.mahak_order_id)
                )
            return answer.model_copy(update={"attempt_recorded": True, "marked_synced": marked})

        @activity.defn(name=A.record_attempt)
        async def record_attempt(note: AttemptNote) -> None:
            shop.calls.append((A.record_attempt, note))

        @activity.defn(name=A.mark_synced)
        async def mark_synced(note: SyncedNote) -> bool:
            return shop.mark(note)

        @activity.defn(name=A.mark_dispute)
        async def mark_dispute(note: DisputeNote) -> bool:
            shop.calls.append((A.mark_dispute, note))
            return True

        @activity.defn(name=A.begin_compensation)
        async def begin_compensation(req: CancelRequest) -> bool:
            shop.calls.append((A.begin_compensation, req))
            return True

        @activity.defn(name=A.notify_staff)
        async def notify_staff(notice: StaffNotice) -> None:
            shop.calls.append((A.notify_staff, notice))

        @activity.defn(name=A.check_in_mahak)
        async def check_in_mahak(order_id: int) -> MahakOrderCheck:
            shop.calls.append((A.check_in_mahak, order_id))
            return shop.check

        @activity.defn(name=A.reverse_in_mahak)
        async def reverse(req: ReverseRequest) -> ReverseOutcome:
            shop.calls.append((A.reverse_in_mahak, req))
            return ReverseOutcome(reversed=True)

        @activity.defn(name=A.cancel_and_restock)
        async def cancel(req: CancelRequest) -> bool:
            shop.calls.append((A.cancel_and_restock, req))
            return True

        @activity.defn(name=A.refund)
        async def refund(order_id: int) -> RefundOutcome:
            shop.calls.append((A.refund, order_id))
            return RefundOutcome(refunded=True, refund_id="r-1", amount=Decimal("1500"))

        @activity.defn(name=A.notify_customer)
        async def notify_customer(notice: CustomerNotice) -> None:
            shop.calls.append((A.notify_customer, notice))

        return [
            load,
            begin_send,
            send,
            record_attempt,
            mark_synced,
            mark_dispute,
            notify_staff,
            check_in_mahak,
            reverse,
            cancel,
            refund,
            notify_customer,
            begin_compensation,
        ]


@workflow.defn(name="FakeIncomingSync")
class FakeIncomingSync:
    """Stands in for `mahak-incoming-sync`: counts the refreshes asked of it."""

    def __init__(self) -> None:
        self.requests = 0

    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: False)

    @workflow.signal
    def sync_now(self) -> None:
        self.requests += 1

    @workflow.query
    def refreshes(self) -> int:
        return self.requests


def accepted(mahak_id: int = 777, lines: tuple[int, ...] = (1, 2)) -> SendOutcome:
    return SendOutcome(kind="accepted", mahak_order_id=mahak_id, saved_line_client_ids=list(lines))


def refused(kind: str, message: str, **extra: Any) -> SendOutcome:
    return SendOutcome(
        kind=kind,
        failures=[
            MahakFailure(collection="OrderDetails", client_id=2, property="Count1", message=message)
        ],
        **extra,
    )


def transient(text: str = "Mahak unavailable (503)") -> ApplicationError:
    return ApplicationError(text, type="MahakTransientError")


class Run:
    """One workflow under test, with its own task queue and order id."""

    def __init__(self, env: WorkflowEnvironment, shop: FakeShop) -> None:
        self.env = env
        self.client: Client = env.client
        self.shop = shop
        self.queue = f"orders-{uuid.uuid4().hex[:8]}"
        self.order_id = int(uuid.uuid4().int % 1_000_000_000)
        self.worker = Worker(
            self.client,
            task_queue=self.queue,
            workflows=[OrderSyncWorkflow, FakeIncomingSync],
            activities=shop.activities(),
        )

    async def __aenter__(self) -> Run:
        await self.worker.__aenter__()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.worker.__aexit__(*exc)

    async def start(self, policy: OrderSyncPolicy = POLICY):
        self.handle = await self.client.start_workflow(
            OrderSyncWorkflow.run,
            OrderSyncInput(order_id=self.order_id, policy=policy),
            id=order_workflow_id(self.order_id),
            task_queue=self.queue,
        )
        return self.handle

    async def status(self) -> OrderSyncStatus:
        return await self.handle.query(OrderSyncWorkflow.status)

    async def until_stage(self, *stages: str) -> OrderSyncStatus:
        # Time moves on only while the test waits (in small steps, so no timer of interest
        # is jumped over): backoff delays pass, the 24 h dispute timeout does not.
        for _ in range(200):
            st = await self.status()
            if st.stage in stages:
                return st
            await self.env.sleep(timedelta(seconds=5))
        raise AssertionError(f"never reached {stages}; last {st}")

    async def search_attributes(self) -> tuple[int | None, str | None]:
        desc = await self.handle.describe()
        sa = desc.typed_search_attributes
        return sa.get(ORDER_ID_ATTR), sa.get(SYNC_STATUS_ATTR)


async def test_happy_path_sends_once_and_records_the_mahak_id(env):
    shop = FakeShop([accepted(777)])
    async with Run(env, shop) as run:
        await run.start()
        result: OrderSyncResult = await run.handle.result()
        assert result.outcome == "synced" and result.mahak_order_id == 777 and result.attempts == 1
        assert shop.names() == [A.load, A.begin_send, A.send, A.record_attempt, A.mark_synced]
        assert shop.sends == [
            SendRequest(order_id=run.order_id, probe_first=False, claim=True, attempt=1)
        ]
        assert shop.args(A.record_attempt) == [
            AttemptNote(order_id=run.order_id, error=None, attempt=1)
        ]
        assert shop.args(A.mark_synced)[0].mahak_order_id == 777
        assert await run.search_attributes() == (run.order_id, "synced")
        assert (await run.status()).stage == "synced"


async def test_transient_failures_back_off_record_each_attempt_and_probe_before_resending(env):
    shop = FakeShop([transient(), transient("timed out"), accepted(778)])
    async with Run(env, shop) as run:
        await run.start()
        result = await run.handle.result()
        assert result.outcome == "synced" and result.attempts == 3
        assert [s.probe_first for s in shop.sends] == [False, True, True]
        errors = [n.error for n in shop.args(A.record_attempt)]
        assert "Mahak unavailable (503)" in errors[0] and "timed out" in errors[1]
        assert errors[2] is None
        assert len(shop.args(A.mark_synced)) == 1


async def test_transient_failures_past_the_retry_window_become_a_dispute(env):
    policy = POLICY.model_copy(update={"send_retry_for": timedelta(minutes=1)})
    shop = FakeShop([transient() for _ in range(4)] + [accepted()])
    async with Run(env, shop) as run:
        await run.start(policy)
        st = await run.until_stage("dispute")
        assert st.sync_status == "dispute" and "still failing after" in st.dispute.reason
        assert await run.search_attributes() == (run.order_id, "dispute")
        await run.handle.execute_update(
            OrderSyncWorkflow.resolve_dispute_update,
            ResolveDispute(action="resend", note="Mahak back"),
        )
        result = await run.handle.result()
        assert result.outcome == "synced"


async def test_already_registered_and_matching_counts_as_synced_without_a_dispute(env):
    shop = FakeShop(
        [refused("already_registered", "already registered")],
        check=MahakOrderCheck(found=True, matches=True, mahak_order_id=901),
    )
    async with Run(env, shop) as run:
        await run.start()
        result = await run.handle.result()
        assert result.outcome == "synced" and result.mahak_order_id == 901
        assert A.mark_dispute not in shop.names()
        assert shop.args(A.mark_synced)[0].mahak_order_id == 901


async def test_already_registered_but_different_is_a_dispute_resolved_by_signal(env):
    shop = FakeShop(
        [refused("already_registered", "already registered")],
        check=MahakOrderCheck(
            found=True, matches=False, mahak_order_id=902, detail="line 2 has count 3, ours 1"
        ),
    )
    async with Run(env, shop) as run:
        await run.start()
        st = await run.until_stage("dispute")
        assert "line 2 has count 3" in st.dispute.reason
        await run.handle.signal(
            OrderSyncWorkflow.resolve_dispute_signal,
            ResolveDispute(action="mark_synced", note="checked by hand"),
        )
        result = await run.handle.result()
        assert result.outcome == "synced" and result.mahak_order_id == 902
        assert "checked by hand" in shop.args(A.mark_synced)[0].note


async def test_stale_reference_asks_the_incoming_sync_to_refresh_then_resends(env):
    stale = refused(
        "stale_reference", "ProductDetailId not found", stale_entities=["product_details"]
    )
    shop = FakeShop([stale, stale, accepted(779)])
    async with Run(env, shop) as run:
        incoming = await env.client.start_workflow(
            FakeIncomingSync.run, id=INCOMING_SYNC_WORKFLOW_ID, task_queue=run.queue
        )
        try:
            await run.start()
            result = await run.handle.result()
            assert result.outcome == "synced" and result.attempts == 3
            assert await incoming.query(FakeIncomingSync.refreshes) == 2
            assert A.mark_dispute not in shop.names()
        finally:
            # Clean-up only: under load the time-skipping server has been seen to close the
            # idle stand-in before this (RPCError "Completed workflow"); the checks above ran.
            with contextlib.suppress(RPCError):
                await incoming.terminate()


async def test_stale_reference_beyond_the_bound_is_a_dispute_even_without_an_incoming_sync(env):
    stale = refused("stale_reference", "StoreId not found", stale_entities=["stores"])
    shop = FakeShop([stale, stale, stale])
    async with Run(env, shop) as run:
        await run.start()
        st = await run.until_stage("dispute")
        assert st.stale_refreshes == 2 and len(shop.sends) == 3
        assert "after refreshing" in st.dispute.reason
        await run.handle.execute_update(
            OrderSyncWorkflow.resolve_dispute_update,
            ResolveDispute(action="cancel", note="product withdrawn"),
        )
        result = await run.handle.result()
        assert result.outcome == "cancelled"


async def test_update_refuses_unknown_actions_and_decisions_when_nothing_is_disputed(env):
    shop = FakeShop(
        [refused("rejected", "person group does not exist"), transient(), accepted(780)]
    )
    policy = POLICY.model_copy(update={"first_retry_delay": timedelta(hours=1)})
    async with Run(env, shop) as run:
        await run.start(policy)
        await run.until_stage("dispute")
        with pytest.raises(WorkflowUpdateFailedError) as bad:
            await run.handle.execute_update(
                OrderSyncWorkflow.resolve_dispute_update, ResolveDispute(action="ignore")
            )
        assert "unknown action" in str(bad.value.cause)
        ack = await run.handle.execute_update(
            OrderSyncWorkflow.resolve_dispute_update, ResolveDispute(action="resend")
        )
        assert ack.accepted and ack.action == "resend"
        # The resend meets an outage: the workflow waits to retry, nothing is disputed now.
        await run.until_stage("waiting_to_retry")
        with pytest.raises(WorkflowUpdateFailedError) as late:
            await run.handle.execute_update(
                OrderSyncWorkflow.resolve_dispute_update, ResolveDispute(action="cancel")
            )
        assert "no dispute is pending" in str(late.value.cause)
        # A signal that does not apply is dropped, not acted on.
        await run.handle.signal(
            OrderSyncWorkflow.resolve_dispute_signal, ResolveDispute(action="cancel")
        )
        result = await run.handle.result()
        assert result.outcome == "synced" and A.cancel_and_restock not in shop.names()


async def test_undecided_dispute_is_escalated_after_the_timeout_and_keeps_waiting(env):
    shop = FakeShop([refused("rejected", "visitor is not active")])
    async with Run(env, shop) as run:
        await run.start()
        await run.until_stage("dispute")
        assert A.notify_staff not in shop.names()
        await env.sleep(timedelta(hours=25))
        st = await run.until_stage("dispute_escalated")
        assert st.dispute.escalated and st.sync_status == "dispute"
        [notice] = shop.args(A.notify_staff)
        assert (
            notice.kind == "order_dispute_escalated" and "visitor is not active" in notice.message
        )
        await env.sleep(timedelta(days=3))  # still waiting, escalated once only
        assert len(shop.args(A.notify_staff)) == 1
        shop.answers.append(accepted(781))
        await run.handle.signal(
            OrderSyncWorkflow.resolve_dispute_signal, ResolveDispute(action="resend")
        )
        result = await run.handle.result()
        assert result.outcome == "synced" and result.mahak_order_id == 781


# The decision is recorded first; the shop side is not held behind Mahak; Mahak comes last.
SAGA = [A.begin_compensation, A.cancel_and_restock, A.refund, A.notify_customer, A.reverse_in_mahak]


async def test_stock_refusal_after_a_partial_save_runs_the_saga_shop_side_first(env):
    partial = SendOutcome(
        kind="inventory",
        mahak_order_id=888,
        saved_line_client_ids=[11],
        failures=[
            MahakFailure(
                collection="OrderDetails", client_id=12, property="Count1", message="stock too low"
            )
        ],
    )
    shop = FakeShop([partial])
    async with Run(env, shop) as run:
        await run.start()
        result = await run.handle.result()
        assert result.outcome == "cancelled"
        assert [n for n in shop.names() if n in SAGA] == SAGA
        [rev] = shop.args(A.reverse_in_mahak)
        assert rev.mahak_order_id == 888 and rev.line_client_ids == [11]
        assert shop.args(A.notify_customer)[0].refunded is True
        st = await run.status()
        assert st.compensations == [
            "cancelled_and_restocked",
            "refunded",
            "customer_notified",
            "mahak_reversed",
        ]
        assert await run.search_attributes() == (run.order_id, "cancelled")


async def test_inventory_conflict_during_an_outage_cancels_and_reverses_whatever_reached_mahak(env):
    policy = POLICY.model_copy(update={"first_retry_delay": timedelta(hours=1)})
    shop = FakeShop([transient("read timed out"), accepted()])
    async with Run(env, shop) as run:
        await run.start(policy)
        await run.until_stage("waiting_to_retry")
        await run.handle.signal(
            OrderSyncWorkflow.inventory_conflict,
            {"product_detail_id": 5, "needed": 2, "available": 0},
        )
        result = await run.handle.result()
        assert result.outcome == "cancelled" and len(shop.sends) == 1
        # The timed-out send may have reached Mahak: the reversal (with no ids) looks first.
        assert [n for n in shop.names() if n in SAGA] == SAGA
        [rev] = shop.args(A.reverse_in_mahak)
        assert rev.mahak_order_id is None and rev.line_client_ids == []
        assert (await run.status()).inventory_conflict.product_detail_id == 5


async def test_a_long_outage_continues_as_new_with_its_state_and_small_runs(env):
    policy = POLICY.model_copy(update={"attempts_per_run": 2})
    shop = FakeShop([transient(f"outage {n}") for n in range(5)] + [accepted(782)])
    async with Run(env, shop) as run:
        await run.start(policy)
        result = await run.handle.result()  # follows the chain of runs
        assert result.outcome == "synced" and result.mahak_order_id == 782
        assert result.attempts == 6, "attempts are counted across runs"
        assert [s.probe_first for s in shop.sends] == [False] + [True] * 5
        assert len(shop.args(A.load)) == 1, "a continued run does not reload the order"
        assert len(shop.args(A.record_attempt)) == 6 and len(shop.args(A.mark_synced)) == 1
        assert (await run.status()).runs == 3
        assert await run.search_attributes() == (run.order_id, "synced")
        lengths = []
        history = await run.handle.fetch_history()
        while True:
            lengths.append(len(history.events))
            previous = history.events[
                0
            ].workflow_execution_started_event_attributes.continued_execution_run_id
            if not previous:
                break
            history = await env.client.get_workflow_handle(
                run.handle.id, run_id=previous
            ).fetch_history()
        assert len(lengths) == 3 and max(lengths) < 80, lengths


async def test_inventory_conflict_after_mahak_accepted_is_ignored(env):
    shop = FakeShop([refused("rejected", "needs a look")], check=MahakOrderCheck(found=False))
    async with Run(env, shop) as run:
        await run.start()
        await run.until_stage("dispute")
        await run.handle.execute_update(
            OrderSyncWorkflow.resolve_dispute_update, ResolveDispute(action="mark_synced")
        )
        await run.handle.result()
        assert A.cancel_and_restock not in shop.names()


async def test_unpaid_order_fails_cleanly_and_synced_order_completes_without_sending(env):
    shop = FakeShop([], paid=False)
    async with Run(env, shop) as run:
        await run.start()
        with pytest.raises(WorkflowFailureError) as failed:
            await run.handle.result()
        assert failed.value.cause.type == "OrderNotPaid"
        assert shop.names() == [A.load]
    shop = FakeShop([], synced=True, sync_status="synced")
    async with Run(env, shop) as run:
        await run.start()
        result = await run.handle.result()
        assert result.outcome == "already_synced" and result.mahak_order_id == 555
        assert shop.names() == [A.load]


async def test_duplicate_start_attaches_and_a_completed_sync_is_never_run_again(env):
    shop = FakeShop([refused("rejected", "held for review"), accepted(790)])
    async with Run(env, shop) as run:
        settings = Settings(TEMPORAL_TASK_QUEUE=run.queue)
        first = await start_order_sync(env.client, run.order_id, settings, policy=POLICY)
        run.handle = env.client.get_workflow_handle(first, result_type=OrderSyncResult)
        await run.until_stage("dispute")
        run_id = (await run.handle.describe()).run_id
        again = await start_order_sync(env.client, run.order_id, settings, policy=POLICY)
        assert again == first and (await run.handle.describe()).run_id == run_id
        await run.handle.execute_update(
            OrderSyncWorkflow.resolve_dispute_update, ResolveDispute(action="resend")
        )
        assert (await run.handle.result()).outcome == "synced"
        after = await start_order_sync(env.client, run.order_id, settings, policy=POLICY)
        assert after == first
        assert (await run.handle.describe()).run_id == run_id
        assert len(shop.sends) == 2 and len(shop.args(A.load)) == 1


# --- Issue 11: one error table, every database refusal honoured --------------------------------


def failing(type_: str, text: str = "failed") -> ApplicationError:
    return ApplicationError(text, type=type_)


async def test_a_database_outage_during_send_is_retried_with_a_probe_never_disputed(env):
    shop = FakeShop([failing("DatabaseUnavailable", "database connection failed"), accepted(790)])
    async with Run(env, shop) as run:
        await run.start()
        result = await run.handle.result()
        assert result.outcome == "synced" and result.attempts == 2
        assert [s.probe_first for s in shop.sends] == [False, True]
        assert A.mark_dispute not in shop.names()


async def test_bad_credentials_are_retried_with_one_staff_notice_and_never_fail(env):
    shop = FakeShop([failing("MahakAuthError", "login refused")] * 3 + [accepted(791)])
    async with Run(env, shop) as run:
        await run.start()
        result = await run.handle.result()
        assert result.outcome == "synced" and result.attempts == 4
        [notice] = shop.args(A.notify_staff)
        assert notice.kind == "mahak_credentials" and "MAHAK_PASSWORD" in notice.message


async def test_a_body_that_is_not_mahaks_envelope_is_retried_then_disputed(env):
    shop = FakeShop([failing("MahakProtocolError", "truncated JSON")] * 5 + [accepted(792)])
    async with Run(env, shop) as run:
        await run.start()
        status = await run.until_stage("dispute")
        assert status.attempts == POLICY.max_bad_responses == 5
        assert (
            "not its envelope" in status.dispute.reason
            and "truncated JSON" in status.dispute.reason
        )
        await run.handle.signal(OrderSyncWorkflow.resolve_dispute_signal, {"action": "resend"})
        assert (await run.handle.result()).outcome == "synced"
        assert shop.sends[-1].probe_first, "a resend after unknown outcomes looks first"


async def test_begin_send_refused_because_the_shop_cancelled_runs_the_saga_and_sends_nothing(env):
    shop = FakeShop([accepted()], claims=[False])
    async with Run(env, shop) as run:
        await run.start()
        result = await run.handle.result()
        assert result.outcome == "cancelled" and shop.sends == []
        assert [n for n in shop.names() if n in SAGA] == SAGA


async def test_mark_synced_refused_because_the_shop_cancelled_reverses_mahak(env):
    shop = FakeShop([accepted(793)], mark_refused=True)
    async with Run(env, shop) as run:
        await run.start()
        result = await run.handle.result()
        assert result.outcome == "cancelled"
        assert shop.names()[:5] == [A.load, A.begin_send, A.send, A.record_attempt, A.mark_synced]
        assert [n for n in shop.names() if n in SAGA] == SAGA


async def test_mahak_ids_without_a_synced_status_are_confirmed_by_a_probe_not_trusted(env):
    # A run died after keeping Mahak's ids and before marking the order synced.
    shop = FakeShop([accepted(555)], synced=True, sync_status="sending")
    async with Run(env, shop) as run:
        await run.start()
        result = await run.handle.result()
        assert result.outcome == "synced" and len(shop.sends) == 1
        assert shop.args(A.mark_synced)[0].mahak_order_id == 555
