"""The order saga under the interleavings that once left money or stock wrong.

Each test reproduces one reported defect against the real Temporal dev server, the real
shop database and the Mahak simulator, and asserts what Mahak holds (orders, lines and the
receipt), what the database says and how the workflow ended.
"""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from activities.order_request import order_request
from mahak_client.client import MahakClient
from shopdb import orders
from tests.test_order_e2e import Stack, order_sim, sim, stack  # noqa: F401 - fixtures
from workflows.order_sync import OrderSyncWorkflow
from workflows.order_types import ResolveDispute

pytestmark = pytest.mark.slow


async def receipts_for(stack: Stack, order) -> list[dict]:
    return [
        r
        for r in await stack.sim.entities("receipts")
        if r.get("ReceiptClientId") == order.order_client_id
    ]


async def live_receipts(stack: Stack, order) -> list[dict]:
    return [r for r in await receipts_for(stack, order) if not r.get("Deleted")]


async def saved_behind_our_back(
    stack: Stack, order, *, receipt: bool = True, price_factor: float = 1.0
) -> None:
    """An earlier process saved the order in Mahak (maybe without its receipt, maybe with a
    line that differs) and lost its bookkeeping; it counted one attempt."""
    person_id = await stack.known_customer(order)
    request = order_request(order, visitor_id=10101, person_id=person_id)
    if not receipt:
        request.receipts = None
        request.orders[0].receipt_client_id = None
    if price_factor != 1.0:
        request.order_details[0].price = request.order_details[0].price * price_factor
    async with MahakClient(stack.server.base_url, "shop", "secret") as mahak:
        await mahak.login()
        await mahak.save_all_data(request)
    await orders.record_attempt(stack.pool, order.id, "worker lost")


# --- 1. Reversal removes the receipt too ------------------------------------------------------


async def test_reversal_deletes_the_receipt_with_the_order_and_reads_mahak_back(stack):
    (d1, d2), store = await stack.seed(stock=5)
    await stack.sim.set_stock(d2, store, 1)
    order = await stack.paid_order([(d1, store, 2, 150000), (d2, store, 3, 90000)])
    await stack.known_customer(order)
    handle = await stack.start(order.id)
    result = await asyncio.wait_for(handle.result(), 60)

    assert result.outcome == "cancelled"
    [held] = await stack.sim.orders()
    assert held.order["Deleted"] is True and all(d["Deleted"] for d in held.details)
    # The send created a receipt of the payment; the reversal removed it too.
    assert await receipts_for(stack, order), "the send saved a receipt"
    assert await live_receipts(stack, order) == []
    status = await handle.query(OrderSyncWorkflow.status)
    assert "mahak_reversed" in status.compensations
    row = await orders.get_order(stack.pool, order.id)
    assert row.sync_status == "cancelled" and row.payment_status == "refunded"
    assert row.mahak_leftovers is None


# --- 2. Confirmation compares lines and receipt -------------------------------------------------


async def test_probe_finds_the_order_without_its_receipt_and_sends_the_receipt_alone(stack):
    (d1, _), store = await stack.seed()
    order = await stack.paid_order([(d1, store, 2, 50000)])
    await saved_behind_our_back(stack, order, receipt=False)
    assert await receipts_for(stack, order) == []

    result = await asyncio.wait_for((await stack.start(order.id)).result(), 60)

    assert result.outcome == "synced"
    [held] = await stack.sim.orders()
    assert held.submissions == 1, "the order itself is not sent again"
    [receipt] = await live_receipts(stack, order)
    assert receipt["CashAmount"] == float(order.amount)
    assert receipt["PersonId"] == held.order["PersonId"]
    row = await orders.get_order(stack.pool, order.id)
    assert row.sync_status == "synced" and row.mahak_receipt_id == receipt["ReceiptId"]


async def test_probe_finds_a_line_with_another_price_and_disputes_naming_it(stack):
    (d1, d2), store = await stack.seed()
    order = await stack.paid_order([(d1, store, 1, 50000), (d2, store, 1, 70000)])
    await saved_behind_our_back(stack, order, price_factor=2.0)

    handle = await stack.start(order.id)
    status = await stack.until(handle, "dispute", "synced")

    assert status.stage == "dispute", status
    assert (
        "price" in status.dispute.reason
        and str(order.lines[0].order_detail_client_id) in status.dispute.reason
    )
    row = await stack.row_in(order.id, "dispute")
    assert row.sync_status == "dispute" and not row.synced_to_mahak
    [held] = await stack.sim.orders()
    assert held.submissions == 1
    await handle.terminate("test over")


# --- 5. A compensation never stops halfway ------------------------------------------------------


async def test_compensation_whose_mahak_reversal_is_refused_ends_with_a_staff_task(stack):
    (d1, _), store = await stack.seed()
    order, handle = await stack.waiting_after_a_lost_answer([(d1, store, 1, 50000)])
    # From now on Mahak refuses every save outright (a closed fiscal period, say).
    await stack.sim.add_fault(status_code=400, endpoints=["SaveAllDataV2"])
    await handle.signal(OrderSyncWorkflow.inventory_conflict, {"reason": "stock gone"})

    result = await asyncio.wait_for(handle.result(), 60)

    assert result.outcome == "cancelled_with_staff_task"
    [held] = await stack.sim.orders()
    assert held.order["Deleted"] is False, "Mahak refused the delete"
    row = await orders.get_order(stack.pool, order.id)
    # The shop side ran in full regardless.
    assert row.sync_status == "cancelled" and row.payment_status == "refunded"
    assert row.compensation_started_at is not None
    assert str(held.order_id) in row.mahak_leftovers
    notices = await stack.pool.fetch(
        "SELECT kind, payload->>'message' AS message FROM notification_outbox "
        "WHERE order_id = $1 AND recipient = 'staff'",
        order.id,
    )
    assert [n["kind"] for n in notices] == ["mahak_reversal_needed"]
    assert f"Mahak order {held.order_id}" in notices[0]["message"]
    assert (await stack.sim.refunds())[0]["amount"] == float(order.amount)

    # A duplicate callback attaches to the finished run: nothing more reaches Mahak.
    await stack.sim.clear_faults()
    again = await stack.start(order.id)
    assert (await asyncio.wait_for(again.result(), 60)).outcome == "cancelled_with_staff_task"
    [held] = await stack.sim.orders()
    assert held.submissions - held.deletions == 1


async def test_a_compensation_terminated_halfway_is_finished_by_the_next_run_never_sent(stack):
    (d1, _), store = await stack.seed()
    order, handle = await stack.waiting_after_a_lost_answer([(d1, store, 1, 50000)])
    # Mahak is down while the saga runs: the shop side completes, the Mahak part waits.
    await stack.sim.add_fault(status_code=503, endpoints=["SaveAllDataV2"])
    await handle.signal(OrderSyncWorkflow.inventory_conflict, {"reason": "stock gone"})
    for _ in range(300):
        row = await orders.get_order(stack.pool, order.id)
        if row.payment_status == "refunded":
            break
        await asyncio.sleep(0.05)
    assert row.sync_status == "cancelled" and row.compensation_started_at is not None
    await handle.terminate("operator pulled the plug mid-saga")
    await stack.sim.clear_faults()

    # The sweep (or a callback) starts a new run: it finishes the saga and sends nothing.
    again = await stack.start(order.id)
    result = await asyncio.wait_for(again.result(), 60)

    assert result.outcome == "cancelled"
    [held] = await stack.sim.orders()
    assert held.submissions - held.deletions == 1, "the cancelled order was sent again"
    assert held.order["Deleted"] is True and await live_receipts(stack, order) == []
    row = await orders.get_order(stack.pool, order.id)
    assert row.sync_status == "cancelled" and not row.synced_to_mahak
    assert len(await stack.sim.refunds()) == 1


# --- 6. The database's compare-and-set is honoured ------------------------------------------------


async def test_an_order_the_shop_cancelled_during_a_dispute_is_not_sent_on_resend(stack):
    (d1, d2), store = await stack.seed()
    order = await stack.paid_order([(d1, store, 1, 150000), (d2, store, 1, 90000)])
    await stack.known_customer(order)
    await stack.sim.delete("product_details", d2)
    handle = await stack.start(order.id)
    await stack.until(handle, "dispute")
    [held] = await stack.sim.orders()
    sent_before = held.submissions - held.deletions

    # The shop cancels the order behind the workflow's back; then an operator says "resend".
    assert await orders.cancel_and_restock(stack.pool, order.id, "customer called the shop")
    await handle.signal(OrderSyncWorkflow.resolve_dispute_signal, ResolveDispute(action="resend"))
    result = await asyncio.wait_for(handle.result(), 60)

    assert result.outcome == "cancelled"
    [held] = await stack.sim.orders()
    assert held.submissions - held.deletions == sent_before, "a cancelled order was sent to Mahak"
    # What the first attempt left in Mahak (order, line 1, receipt) was reversed.
    assert held.order["Deleted"] is True and await live_receipts(stack, order) == []
    row = await orders.get_order(stack.pool, order.id)
    assert row.sync_status == "cancelled" and row.payment_status == "refunded"


# --- 7. A PostgreSQL outage is not a Mahak refusal ------------------------------------------------


async def test_postgres_outage_during_send_is_retried_not_disputed(stack, pg_server):
    (d1, _), store = await stack.seed()
    order = await stack.paid_order([(d1, store, 1, 50000)])
    await stack.known_customer(order)
    database = await stack.pool.fetchval("SELECT current_database()")
    # Mahak takes its time; meanwhile PostgreSQL goes away and comes back.
    await stack.sim.add_fault(latency_ms=1500, count=1, endpoints=["SaveAllDataV2"])
    handle = await stack.start(order.id)
    for _ in range(300):
        if (
            await stack.pool.fetchval("SELECT sync_status FROM shop_orders WHERE id = $1", order.id)
            == "sending"
        ):
            break
        await asyncio.sleep(0.01)
    admin = await asyncpg.connect(pg_server)
    try:
        await admin.execute(f'ALTER DATABASE "{database}" WITH ALLOW_CONNECTIONS false')
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", database
        )
        await asyncio.sleep(3)
        await admin.execute(f'ALTER DATABASE "{database}" WITH ALLOW_CONNECTIONS true')
    finally:
        await admin.close()

    status = await stack.until(handle, "synced", "dispute", timeout=60)

    assert status.stage == "synced", status
    [held] = await stack.sim.orders()
    assert held.submissions == 1 and (await stack.sim.stats()).duplicate_submissions == 0
    row = await orders.get_order(stack.pool, order.id)
    assert row.sync_status == "synced" and row.mahak_order_id == held.order_id
