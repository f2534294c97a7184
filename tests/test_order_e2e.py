"""`OrderSyncWorkflow` end to end: a real Temporal dev server, the Mahak simulator over HTTP,
the real shop database, and the real activities.

Each test asserts what reached Mahak (`/_sim/orders`, duplicate submissions), what the
database holds and what the workflow reports.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError
from temporalio.worker import Replayer, Worker

from activities import mahak_lookup
from activities.incoming import IncomingSync
from activities.order_request import order_request
from activities.order_sweep import OrderSweepActivities
from activities.orders import OrderActivities
from activities.payments import PaymentActivities, refund_idempotency_key
from mahak_client.client import MahakClient
from mahak_simulator.control import SimControl
from mahak_simulator.server import SimulatorServer
from mahak_sync.config import Settings
from mahak_sync.orders_api import order_sync_status, resolve_order_dispute, start_order_sync
from mahak_sync.runtime import INTERCEPTORS
from mahak_sync.temporal import temporal_cli_path
from shopdb import orders
from tests.order_helpers import make_order
from workflows.incoming_types import SyncEntityInput
from workflows.order_sweep import OrderSweepWorkflow
from workflows.order_sync import OrderSyncWorkflow
from workflows.order_types import (
    ORDER_ID_ATTR,
    SYNC_STATUS_ATTR,
    OrderSyncPolicy,
    OrderSyncResult,
    OrderSyncStatus,
    order_workflow_id,
)
from workflows.sweep_types import OrderSweepInput

pytestmark = pytest.mark.slow

FAST = OrderSyncPolicy(
    first_retry_delay=timedelta(milliseconds=200),
    max_retry_delay=timedelta(seconds=1),
    max_stale_refreshes=1,
    stale_refresh_wait=timedelta(milliseconds=200),
    send_heartbeat_timeout=timedelta(seconds=2),
)


@pytest_asyncio.fixture(scope="module")
async def order_sim() -> AsyncIterator[SimulatorServer]:
    server = SimulatorServer()
    await asyncio.to_thread(server.start)
    try:
        yield server
    finally:
        await asyncio.to_thread(server.stop)


@pytest_asyncio.fixture
async def sim(order_sim: SimulatorServer) -> AsyncIterator[SimControl]:
    async with SimControl(order_sim.root_url) as control:
        await control.reset()
        yield control


class Stack:
    """A worker with the real activities, and the ways a test drives and inspects an order."""

    def __init__(
        self, client: Client, pool, sim: SimControl, server: SimulatorServer, queue: str
    ) -> None:
        self.client = client
        self.pool = pool
        self.sim = sim
        self.server = server
        self.settings = Settings(
            TEMPORAL_TASK_QUEUE=queue,
            MAHAK_BASE_URL=server.base_url,
            MAHAK_USERNAME="shop",
            MAHAK_PASSWORD="secret",
        )
        self.queue = queue
        self.started: list[str] = []

    async def seed(self, products: int = 2, stock: float = 10) -> tuple[list[int], int]:
        seeded = await self.sim.seed(products, stock=stock)
        return seeded.product_details, seeded.stores[0]

    async def paid_order(self, lines, *, amount: Decimal | None = None):
        order = await make_order(self.pool, lines)
        await orders.mark_paid(self.pool, order.id, amount or order.amount, f"PAY-{order.id}")
        return await orders.get_order(self.pool, order.id)

    async def known_customer(self, order) -> int:
        """Map the order's customer to a person Mahak has, so every save is the order itself."""
        person_id = (await self.sim.entities("people"))[0]["PersonId"]
        await self.pool.execute(
            "UPDATE shop_customers SET mahak_person_id = $1 WHERE id = $2",
            person_id,
            order.customer_id,
        )
        return person_id

    async def sent_behind_our_back(self, order) -> None:
        """An earlier process saved the order in Mahak and lost its own bookkeeping."""
        person_id = await self.known_customer(order)
        async with MahakClient(self.server.base_url, "shop", "secret") as mahak:
            await mahak.login()
            await mahak.save_all_data(
                order_request(order, visitor_id=mahak.visitor_id, person_id=person_id)
            )

    async def waiting_after_a_lost_answer(self, lines) -> tuple[Any, WorkflowHandle]:
        """A paid order of a known customer whose first save Mahak stored while the answer was
        lost; its workflow now waits an hour before retrying."""
        await self.sim.add_fault(malformed="truncated", count=1, endpoints=["SaveAllDataV2"])
        order = await self.paid_order(lines)
        await self.known_customer(order)
        handle = await self.start(
            order.id, FAST.model_copy(update={"first_retry_delay": timedelta(hours=1)})
        )
        await self.until(handle, "waiting_to_retry")
        return order, handle

    async def start(self, order_id: int, policy: OrderSyncPolicy = FAST) -> WorkflowHandle:
        workflow_id = await start_order_sync(self.client, order_id, self.settings, policy=policy)
        self.started.append(workflow_id)
        return self.client.get_workflow_handle(workflow_id, result_type=OrderSyncResult)

    async def replay_all(self) -> None:
        """Every history this test produced replays against the current workflow code."""
        replayer = Replayer(workflows=[OrderSyncWorkflow], data_converter=pydantic_data_converter)
        for workflow_id in self.started:
            history = await self.client.get_workflow_handle(workflow_id).fetch_history()
            await replayer.replay_workflow(history)

    async def until(
        self, handle: WorkflowHandle, *stages: str, timeout: float = 20
    ) -> OrderSyncStatus:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            status = await handle.query(OrderSyncWorkflow.status)
            if status.stage in stages:
                return status
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"never reached {stages}: {status}")
            await asyncio.sleep(0.1)

    async def row_in(self, order_id: int, status: str, timeout: float = 20):
        """The order row once the database says `status`: the workflow's stage changes a moment
        before its activity records it."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            row = await orders.get_order(self.pool, order_id)
            if row.sync_status == status or asyncio.get_running_loop().time() > deadline:
                return row
            await asyncio.sleep(0.05)

    async def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """The `temporal` CLI, as an operator runs it (in a thread: the worker under test
        shares this event loop and must keep running meanwhile)."""
        host = self.client.service_client.config.target_host
        return await asyncio.to_thread(
            subprocess.run,
            [temporal_cli_path(), *args, "--address", host],
            capture_output=True,
            text=True,
            timeout=60,
        )


@pytest_asyncio.fixture
async def stack(temporal_client, db_pool, sim, order_sim, task_queue) -> AsyncIterator[Stack]:
    stack = Stack(temporal_client, db_pool, sim, order_sim, task_queue)
    async with (
        MahakClient(order_sim.base_url, "shop", "secret") as mahak,
        httpx.AsyncClient(timeout=10) as http,
    ):
        activities = [
            *OrderActivities(db_pool, mahak, stack.settings).all(),
            *PaymentActivities(db_pool, http, f"{order_sim.root_url}/_gateway").all(),
            *OrderSweepActivities(db_pool, temporal_client, stack.settings).all(),
        ]
        async with Worker(
            temporal_client,
            task_queue=task_queue,
            interceptors=INTERCEPTORS,
            workflows=[OrderSyncWorkflow, OrderSweepWorkflow],
            activities=activities,
        ):
            yield stack
    await stack.replay_all()


async def test_happy_path_reaches_mahak_once_with_customer_receipt_and_ids(stack):
    (d1, d2), store = await stack.seed()
    order = await stack.paid_order([(d1, store, 2, 150000), (d2, store, 1, 90000)])
    handle = await stack.start(order.id)
    result = await handle.result()

    assert result.outcome == "synced" and result.attempts == 1
    [held] = await stack.sim.orders()
    assert held.order_client_id == order.order_client_id and held.submissions == 1
    assert held.order["OrderType"] == 201 and held.order["VisitorId"] == 10101
    assert {
        (d["OrderDetailClientId"], d["ProductDetailId"], d["Count1"], d["StoreId"])
        for d in held.details
    } == {
        (ln.order_detail_client_id, ln.product_detail_id, float(ln.quantity), store)
        for ln in order.lines
    }
    [receipt] = [
        r
        for r in await stack.sim.entities("receipts")
        if r.get("OrderClientId") == order.order_client_id
    ]
    assert receipt["CashAmount"] == float(order.amount)
    person = held.order["PersonId"]
    assert person is not None

    row = await orders.get_order(stack.pool, order.id)
    assert row.sync_status == "synced" and row.synced_to_mahak and row.mahak_synced_at
    assert row.mahak_order_id == held.order_id == result.mahak_order_id
    assert {ln.mahak_order_detail_id for ln in row.lines} == {
        d["OrderDetailId"] for d in held.details
    }
    assert row.sync_attempts == 1 and row.last_mahak_error is None
    assert (
        await stack.pool.fetchval(
            "SELECT mahak_id FROM mahak_mapping WHERE entity = 'people' AND shop_id = $1",
            order.customer_id,
        )
        == person
    )
    desc = await handle.describe()
    assert await desc.static_summary() == f"web order {order.id}"
    assert desc.typed_search_attributes.get(SYNC_STATUS_ATTR) == "synced"
    assert desc.typed_search_attributes.get(ORDER_ID_ATTR) == order.id
    assert (await stack.sim.stats()).duplicate_submissions == 0
    # One round trip through Temporal (issue 16): the send is the only regular activity;
    # loading, claiming, recording the attempt and marking synced run beside or inside it.
    scheduled = [
        e.activity_task_scheduled_event_attributes.activity_type.name
        for e in (await handle.fetch_history()).events
        if e.HasField("activity_task_scheduled_event_attributes")
    ]
    assert scheduled == ["order.send"]

    # A duplicate callback / `starter.py order` afterwards starts nothing and sends nothing.
    run_id = desc.run_id
    for _ in range(2):
        assert await start_order_sync(stack.client, order.id, stack.settings) == handle.id
    assert (await handle.describe()).run_id == run_id
    stats = await stack.sim.stats()
    assert stats.orders == 1 and stats.duplicate_submissions == 0


async def test_lines_carry_their_products_tax_and_charge_from_the_mirror(stack):
    # Issue 12 (§10 (d)): the product's own % (as the incoming sync mirrored it), -1 as 0,
    # and the setting where the product says 0.
    (d1, d2), store = await stack.seed()
    details = {r["ProductDetailId"]: r for r in await stack.sim.entities("ProductDetails")}
    products = {r["ProductId"]: r for r in await stack.sim.entities("Products")}
    taxed = products[details[d1]["ProductId"]]
    await stack.sim.inject_row("Products", {**taxed, "TaxPercent": 9, "ChargePercent": -1})
    async with MahakClient(stack.server.base_url, "shop", "secret") as mahak:
        incoming = IncomingSync(stack.pool, mahak, lookback=0)
        for entity in ("products", "product_details"):
            await incoming.sync_entity(SyncEntityInput(entity=entity, run_id="mirror"))
    order = await stack.paid_order([(d1, store, 1, 1000), (d2, store, 1, 1000)])
    assert (await (await stack.start(order.id)).result()).outcome == "synced"
    [held] = await stack.sim.orders()
    sent = {d["ProductDetailId"]: (d["TaxPercent"], d["ChargePercent"]) for d in held.details}
    assert sent == {d1: (9, 0), d2: (0, 0)}


async def test_mahak_down_then_back_syncs_once_and_records_every_attempt(stack):
    (d1, _), store = await stack.seed()
    await stack.sim.add_fault(status_code=503, count=3, endpoints=["SaveAllDataV2"])
    order = await stack.paid_order([(d1, store, 1, 50000)])
    # The customer is known already, so every SaveAllData is the order itself.
    await stack.known_customer(order)
    result = await (await stack.start(order.id)).result()
    assert result.outcome == "synced" and result.attempts == 4
    [held] = await stack.sim.orders()
    assert held.submissions == 1 and (await stack.sim.stats()).duplicate_submissions == 0
    row = await orders.get_order(stack.pool, order.id)
    assert row.sync_attempts == 4 and row.sync_status == "synced" and row.last_mahak_error is None


async def test_answer_lost_after_mahak_saved_is_found_not_resent(stack):
    (d1, _), store = await stack.seed()
    # Mahak commits, then the answer is cut in half: the client cannot know it worked.
    await stack.sim.add_fault(malformed="truncated", count=1, endpoints=["SaveAllDataV2"])
    order = await stack.paid_order([(d1, store, 1, 50000)])
    await stack.known_customer(order)
    result = await (await stack.start(order.id)).result()
    assert result.outcome == "synced" and result.attempts == 2
    [held] = await stack.sim.orders()
    assert held.submissions == 1 and (await stack.sim.stats()).duplicate_submissions == 0
    assert (await orders.get_order(stack.pool, order.id)).mahak_order_id == held.order_id


async def test_already_registered_in_mahak_and_identical_counts_as_synced(stack):
    (d1, _), store = await stack.seed()
    order = await stack.paid_order([(d1, store, 1, 50000)])
    # An earlier process sent the order and lost its bookkeeping; Mahak desktop imported it.
    await stack.sent_behind_our_back(order)
    await stack.sim.mark_imported(order.order_client_id)
    result = await (await stack.start(order.id)).result()
    assert result.outcome == "synced"
    [held] = await stack.sim.orders()
    assert result.mahak_order_id == held.order_id and held.imported
    assert "already registered" in (result.note or "")
    assert (await orders.get_order(stack.pool, order.id)).sync_status == "synced"


async def test_a_new_run_after_a_failed_one_looks_before_sending_again(stack):
    (d1, _), store = await stack.seed()
    order = await stack.paid_order([(d1, store, 1, 50000)])
    # An earlier workflow run sent the order, counted the attempt, then failed (terminated)
    # before recording Mahak's answer; the sweep starts a new run.
    await stack.sent_behind_our_back(order)
    await orders.record_attempt(stack.pool, order.id, "worker lost")
    result = await (await stack.start(order.id)).result()
    assert result.outcome == "synced" and result.attempts == 1
    [held] = await stack.sim.orders()
    assert held.submissions == 1, "found by the lookup, not sent a second time"
    assert (await orders.get_order(stack.pool, order.id)).mahak_order_id == held.order_id


async def test_conflict_after_a_lost_answer_reverses_the_order_mahak_saved(stack):
    (d1, _), store = await stack.seed()
    order, handle = await stack.waiting_after_a_lost_answer([(d1, store, 1, 50000)])
    await handle.signal(OrderSyncWorkflow.inventory_conflict, {"reason": "stock gone"})
    result = await handle.result()
    assert result.outcome == "cancelled"
    # Mahak saved the order although its answer was lost: the saga found it and deleted it.
    [held] = await stack.sim.orders()
    assert held.order["Deleted"] is True and all(d["Deleted"] for d in held.details)
    # Mahak comes last in the saga: the shop side never waits behind it.
    assert (await handle.query(OrderSyncWorkflow.status)).compensations[-1] == "mahak_reversed"


async def test_partial_save_for_stock_runs_the_saga_and_reverses_mahak(stack):
    (d1, d2), store = await stack.seed(stock=5)
    await stack.sim.set_stock(d2, store, 1)
    order = await stack.paid_order([(d1, store, 2, 150000), (d2, store, 3, 90000)])
    result = await (await stack.start(order.id)).result()
    assert result.outcome == "cancelled"

    [held] = await stack.sim.orders()
    # Mahak took the order and line 1, refused line 2; the reversal deleted what it took and
    # gave its stock back.
    assert held.order["Deleted"] is True
    assert all(d["Deleted"] for d in held.details)
    assets = {
        (a["ProductDetailId"], a["StoreId"]): a["Count1"]
        for a in await stack.sim.entities("product_detail_store_assets")
    }
    assert assets[(d1, store)] == 5 and assets[(d2, store)] == 1

    row = await orders.get_order(stack.pool, order.id)
    assert row.sync_status == "cancelled" and row.payment_status == "refunded"
    assert not row.synced_to_mahak
    movements = await stack.pool.fetch(
        "SELECT order_line_id, delta FROM shop_stock_movements WHERE order_id = $1", order.id
    )
    assert {(m["order_line_id"], m["delta"]) for m in movements} == {
        (ln.id, ln.quantity) for ln in order.lines
    }
    [refund] = await stack.sim.refunds()
    assert refund["idempotency_key"] == refund_idempotency_key(order.id)
    assert refund["payment_ref"] == order.payment_ref and refund["amount"] == float(order.amount)
    kinds = [
        r["kind"]
        for r in await stack.pool.fetch(
            "SELECT kind FROM notification_outbox WHERE order_id = $1", order.id
        )
    ]
    assert kinds == ["order_cancelled"]


async def test_unknown_product_is_refreshed_then_disputed_and_cancelled_with_the_temporal_cli(
    stack,
):
    (d1, d2), store = await stack.seed()
    order = await stack.paid_order([(d1, store, 1, 150000), (d2, store, 1, 90000)])
    await stack.sim.delete("product_details", d2)
    handle = await stack.start(order.id)
    status = await stack.until(handle, "dispute")
    assert status.stale_refreshes == 1 and status.attempts == 2
    assert "ProductDetailId" in status.dispute.reason
    row = await stack.row_in(order.id, "dispute")
    assert row.sync_status == "dispute" and "ProductDetailId" in row.last_mahak_error

    listed = await stack.cli(
        "workflow",
        "list",
        "--query",
        f'MahakSyncStatus = "dispute" AND OrderId = {order.id}',
        "--output",
        "json",
    )
    assert listed.returncode == 0 and handle.id in listed.stdout, listed.stderr

    refused = await stack.cli(
        "workflow",
        "update",
        "execute",
        "--workflow-id",
        handle.id,
        "--name",
        "resolve_dispute",
        "--input",
        json.dumps({"action": "shrug"}),
    )
    assert refused.returncode != 0 and "unknown action" in refused.stderr + refused.stdout
    sent = await stack.cli(
        "workflow",
        "update",
        "execute",
        "--workflow-id",
        handle.id,
        "--name",
        "resolve_dispute",
        "--input",
        json.dumps({"action": "cancel", "note": "product withdrawn"}),
    )
    assert sent.returncode == 0, sent.stderr
    result = await handle.result()
    assert result.outcome == "cancelled" and "product withdrawn" in result.note
    [held] = await stack.sim.orders()  # line 1 and the order were saved, then reversed
    assert held.order["Deleted"] is True
    row = await orders.get_order(stack.pool, order.id)
    assert row.sync_status == "cancelled" and row.payment_status == "refunded"


async def test_rejected_customer_is_disputed_and_marked_synced_by_a_cli_signal(stack):
    (d1, _), store = await stack.seed()
    for group in await stack.sim.entities("person_groups"):
        await stack.sim.delete("person_groups", group["PersonGroupId"])
    order = await stack.paid_order([(d1, store, 1, 50000)])
    handle = await stack.start(order.id)
    status = await stack.until(handle, "dispute")
    assert "PersonGroupId" in status.dispute.reason and status.stale_refreshes == 0
    sent = await stack.cli(
        "workflow",
        "signal",
        "--workflow-id",
        handle.id,
        "--name",
        "resolve_dispute",
        "--input",
        json.dumps({"action": "mark_synced", "note": "entered by hand"}),
    )
    assert sent.returncode == 0, sent.stderr
    result = await handle.result()
    assert result.outcome == "synced" and result.mahak_order_id is None
    row = await orders.get_order(stack.pool, order.id)
    assert row.sync_status == "synced" and row.synced_to_mahak
    assert await stack.sim.orders() == []


async def test_an_operator_reads_and_resolves_a_dispute_through_the_orders_api(stack):
    # What `mahak-sync order status|resolve` call: the workflow's query and update, by method.
    (d1, _), store = await stack.seed()
    for group in await stack.sim.entities("person_groups"):
        await stack.sim.delete("person_groups", group["PersonGroupId"])
    order = await stack.paid_order([(d1, store, 1, 50000)])
    handle = await stack.start(order.id)
    await stack.until(handle, "dispute")
    status = await order_sync_status(stack.client, order.id)
    assert status.stage == "dispute" and "PersonGroupId" in status.dispute.reason
    with pytest.raises(WorkflowUpdateFailedError):
        await resolve_order_dispute(stack.client, order.id, "undo")  # the validator refuses
    ack = await resolve_order_dispute(stack.client, order.id, "cancel", "customer asked")
    assert ack.accepted and ack.action == "cancel"
    result = await handle.result()
    assert result.outcome == "cancelled" and "customer asked" in (result.note or "")
    assert (await orders.get_order(stack.pool, order.id)).sync_status == "cancelled"


async def test_operator_messages_that_do_not_apply_leave_a_trace(stack):
    # Issue 15: a signal cannot be refused, so one that does not apply is kept in `status`
    # (and logged); an update is refused outright, for good.
    (d1, _), store = await stack.seed()
    for group in await stack.sim.entities("person_groups"):
        await stack.sim.delete("person_groups", group["PersonGroupId"])
    order = await stack.paid_order([(d1, store, 1, 50000)])
    handle = await stack.start(order.id)
    await stack.until(handle, "dispute")

    async def refused() -> str:
        for _ in range(100):
            if (status := await handle.query(OrderSyncWorkflow.status)).last_refused:
                return status.last_refused
            await asyncio.sleep(0.05)
        raise AssertionError("no refusal recorded")

    sent = await stack.cli(
        "workflow",
        "signal",
        "--workflow-id",
        handle.id,
        "--name",
        "resolve_dispute",
        "--input",
        json.dumps({"action": "undo"}),
    )
    assert sent.returncode == 0, sent.stderr
    assert "resolve_dispute signal (undo): unknown action 'undo'" in await refused()
    sent = await stack.cli(
        "workflow", "signal", "--workflow-id", handle.id, "--name", "resolve_disput"
    )
    assert sent.returncode == 0, sent.stderr
    for _ in range(100):
        if "resolve_disput'" in await refused():
            break
        await asyncio.sleep(0.05)
    assert "signal 'resolve_disput' is not one this workflow handles" in await refused()

    with pytest.raises(WorkflowUpdateFailedError) as failed:
        await resolve_order_dispute(stack.client, order.id, "undo")
    cause = failed.value.cause
    assert isinstance(cause, ApplicationError)
    assert cause.type == "DecisionRefused" and cause.non_retryable

    # The Web UI's current details tell the story without opening payloads.
    meta = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
    assert meta.current_details.startswith(f"web order {order.id}: dispute")
    assert "PersonGroupId" in meta.current_details
    await resolve_order_dispute(stack.client, order.id, "cancel")
    assert (await handle.result()).outcome == "cancelled"
    # No note given: the reason reads whole, without a dangling colon.
    reason = await stack.pool.fetchval(
        "SELECT cancel_reason FROM shop_orders WHERE id = $1", order.id
    )
    assert reason == "cancelled by operator"


async def test_an_order_waiting_to_retry_says_when_it_tries_again(stack):
    (d1, _), store = await stack.seed()
    order, handle = await stack.waiting_after_a_lost_answer([(d1, store, 1, 1000)])
    status = await handle.query(OrderSyncWorkflow.status)
    assert status.stage == "waiting_to_retry" and status.next_attempt_at is not None
    wait = status.next_attempt_at - datetime.now(UTC)
    assert timedelta(minutes=55) < wait <= timedelta(hours=1)
    await handle.terminate("test over")


async def test_sweep_starts_paid_orders_whose_callback_was_lost(stack):
    (d1, d2), store = await stack.seed()
    # One paid order whose sync is in flight (waiting in dispute): the sweep leaves it alone.
    busy = await stack.paid_order([(d2, store, 1, 70000)])
    await stack.sim.delete("product_details", d2)
    busy_handle = await stack.start(busy.id)
    await stack.until(busy_handle, "dispute")
    busy_run = (await busy_handle.describe()).run_id
    lost = await stack.paid_order([(d1, store, 1, 50000)])
    unpaid = await make_order(stack.pool, [(d1, store, 1, 50000)])
    sweep = await stack.client.start_workflow(
        OrderSweepWorkflow.run,
        OrderSweepInput(interval=timedelta(seconds=30)),
        id=f"sweep-{uuid.uuid4().hex[:8]}",
        task_queue=stack.queue,
    )
    try:
        handle = stack.client.get_workflow_handle(
            order_workflow_id(lost.id), result_type=OrderSyncResult
        )
        for _ in range(100):
            try:
                await handle.describe()
                break
            except Exception:  # noqa: BLE001 - not started yet
                await asyncio.sleep(0.1)
        assert (await handle.result()).outcome == "synced"
        # The in-flight order was not started (nor attached to) again.
        assert (await sweep.query(OrderSweepWorkflow.status)).last_started == [lost.id]
        # The next sweep finds nothing left to do and starts nothing.
        await sweep.signal(OrderSweepWorkflow.sweep_now)
        for _ in range(100):
            status = await sweep.query(OrderSweepWorkflow.status)
            if status.cycles >= 2:
                break
            await asyncio.sleep(0.1)
        assert status.last_started == []
        assert (await busy_handle.describe()).run_id == busy_run
        held = {o.order_client_id: o.submissions for o in await stack.sim.orders()}
        assert held[lost.order_client_id] == 1
        assert (await orders.get_order(stack.pool, unpaid.id)).sync_status == "pending"
    finally:
        await sweep.terminate("test over")


class WorkerProcess:
    """The order worker as a separate OS process, so it can be SIGKILLed mid-activity."""

    def __init__(self, stack: Stack, dsn: str) -> None:
        self.args = [
            sys.executable,
            "-m",
            "tests.order_worker_proc",
            stack.client.service_client.config.target_host,
            stack.queue,
            dsn,
            stack.server.base_url,
            f"{stack.server.root_url}/_gateway",
        ]
        self.proc: subprocess.Popen[str] | None = None

    async def start(self) -> None:
        self.proc = subprocess.Popen(
            self.args,
            cwd=Path(__file__).resolve().parents[1],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        line = await asyncio.wait_for(asyncio.to_thread(self.proc.stdout.readline), 60)
        assert line.strip() == "ready", line

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.kill()


async def test_worker_killed_after_mahak_accepted_before_the_db_update(
    temporal_client, db_pool, db_dsn, sim, order_sim, task_queue
):
    stack = Stack(temporal_client, db_pool, sim, order_sim, task_queue)
    (d1, _), store = await stack.seed()
    order = await stack.paid_order([(d1, store, 2, 50000)])
    await db_pool.execute(
        "UPDATE shop_customers SET mahak_person_id = $1 WHERE id = $2",
        (await sim.entities("people"))[0]["PersonId"],
        order.customer_id,
    )
    # Hold the send in Mahak long enough to lock the order row behind it.
    await sim.add_fault(latency_ms=1500, count=1, endpoints=["SaveAllDataV2"])
    worker = WorkerProcess(stack, db_dsn)
    lock = await db_pool.acquire()
    try:
        await worker.start()
        handle = await stack.start(order.id)
        for _ in range(200):
            if (
                await db_pool.fetchval(
                    "SELECT sync_status FROM shop_orders WHERE id = $1", order.id
                )
                == "sending"
            ):
                break
            await asyncio.sleep(0.02)
        tx = lock.transaction()
        await tx.start()
        await lock.execute("SELECT 1 FROM shop_orders WHERE id = $1 FOR UPDATE", order.id)
        # Mahak accepts; the worker's write of Mahak's ids now waits on our lock.
        waiting: list[int] = []
        for _ in range(300):
            waiting = [
                r["pid"]
                for r in await db_pool.fetch(
                    "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND datname = current_database()"
                )
            ]
            if waiting and await sim.orders():
                break
            await asyncio.sleep(0.02)
        assert waiting and len(await sim.orders()) == 1
        worker.kill()
        for pid in waiting:  # the dead process's statement never lands
            await db_pool.execute("SELECT pg_terminate_backend($1)", pid)
        await tx.rollback()
        row = await orders.get_order(db_pool, order.id)
        assert (
            not row.synced_to_mahak and row.mahak_order_id is None and row.sync_status == "sending"
        )

        await worker.start()
        result = await asyncio.wait_for(handle.result(), 60)
        await stack.replay_all()
    finally:
        await db_pool.release(lock)
        worker.stop()

    assert result.outcome == "synced" and result.attempts == 2
    [held] = await sim.orders()
    assert held.submissions == 1 and (await sim.stats()).duplicate_submissions == 0
    row = await orders.get_order(db_pool, order.id)
    assert (
        row.sync_status == "synced" and row.synced_to_mahak and row.mahak_order_id == held.order_id
    )
    history = await handle.fetch_history()
    assert any(e.HasField("activity_task_timed_out_event_attributes") for e in history.events)


async def test_the_lookup_finds_what_mahak_holds_with_or_without_a_page_size(stack, monkeypatch):
    """The probe before a resend reads orders, lines and receipts from Mahak: with a page size,
    page by page; without one, whole answers read leanly and parsed a part at a time (parts
    of one row here), with the same finding."""
    monkeypatch.setattr(mahak_lookup, "DEFAULT_MAHAK_PAGE_SIZE", 1)
    (d1, d2), store = await stack.seed()
    order = await stack.paid_order([(d1, store, 1, 50000), (d2, store, 2, 1000)])
    await stack.sent_behind_our_back(order)
    [sent] = await stack.sim.orders()
    found = []
    async with MahakClient(stack.server.base_url, "shop", "secret") as mahak:
        for page_size in (None, 2):
            found.append(
                await mahak_lookup.MahakOrderLookup(stack.pool, mahak, page_size).holding(order)
            )
    whole, paged = found
    assert whole.order is not None and whole.order.order_id == sent.order_id
    assert sorted(whole.lines) == sorted(ln.order_detail_client_id for ln in order.lines)
    assert whole == paged
