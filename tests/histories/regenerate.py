"""Regenerate the workflow histories that `tests/test_replay.py` replays.

    .venv/bin/python tests/histories/regenerate.py                  # every scenario
    .venv/bin/python tests/histories/regenerate.py order            # one group
    .venv/bin/python tests/histories/regenerate.py order_happy ...  # named scenarios

Runs the real worker (`mahak_sync.runtime.build_worker`) against a throw-away dev server, the Mahak
simulator and an embedded PostgreSQL, drives each scenario below the way an operator would,
and exports every finished run with `temporal workflow show --output json`.

Regenerate only on purpose: after a deliberate, versioned (`workflow.patched`) change, ADD
the new histories and keep the old ones, so the code keeps replaying runs still in flight.
Run only the scenarios you need: regenerating the others overwrites histories recorded by
older code.

Every customer is `CUSTOMER` and the Mahak password is `MAHAK_PASSWORD`: `test_replay.py`
checks that none of `SENSITIVE_VALUES` ever lands in a recorded history.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from pydantic import SecretStr  # noqa: E402
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle  # noqa: E402
from temporalio.exceptions import ApplicationError  # noqa: E402

from activities.order_request import order_request  # noqa: E402
from mahak_client.client import MahakClient  # noqa: E402
from mahak_simulator.config import SimulatorConfig  # noqa: E402
from mahak_simulator.control import SimControl  # noqa: E402
from mahak_simulator.server import SimulatorServer  # noqa: E402
from mahak_sync.config import Settings  # noqa: E402
from mahak_sync.launch import start_incoming  # noqa: E402
from mahak_sync.orders_api import start_order_sync  # noqa: E402
from mahak_sync.runtime import build_worker  # noqa: E402
from mahak_sync.temporal import DevServer, connect, temporal_cli_path  # noqa: E402
from shopdb import orders  # noqa: E402
from shopdb.embedded import start_embedded  # noqa: E402
from shopdb.migrate import migrate  # noqa: E402
from shopdb.models import NewCustomer, NewOrder, NewOrderLine, ShopOrder  # noqa: E402
from shopdb.pool import create_pool  # noqa: E402
from workflows.incoming_sync import IncomingSyncWorkflow  # noqa: E402
from workflows.incoming_types import ResetCursorRequest, SyncConfig, SyncStatus  # noqa: E402
from workflows.order_sweep import OrderSweepWorkflow  # noqa: E402
from workflows.order_sync import OrderSyncWorkflow  # noqa: E402
from workflows.order_types import (  # noqa: E402
    InventoryConflictNotice,
    OrderSyncInput,
    OrderSyncPolicy,
    OrderSyncResult,
    ResolveDispute,
    order_workflow_id,
)
from workflows.sweep_types import OrderSweepInput  # noqa: E402

HERE = Path(__file__).resolve().parent
Handle = WorkflowHandle[Any, Any]
CONFIG = SyncConfig(
    interval_seconds=3600,
    page_size=2,
    entity_timeout_seconds=3,
    attempt_timeout_seconds=3,
    heartbeat_timeout_seconds=3,
    retry_initial_seconds=0.2,
    retry_max_seconds=0.5,
)
# Short waits so each order scenario takes seconds; the decisions are those of production.
ORDER_POLICY = OrderSyncPolicy(
    first_retry_delay=timedelta(milliseconds=200),
    max_retry_delay=timedelta(seconds=1),
    max_stale_refreshes=1,
    stale_refresh_wait=timedelta(milliseconds=200),
    send_heartbeat_timeout=timedelta(seconds=2),
)

# Distinctive, so a leak into history cannot hide behind an everyday word.
MAHAK_PASSWORD = "mahak-pw-histories-7Qx2"
WEBHOOK_SECRET = "whsec-histories-not-for-history"
CUSTOMER = NewCustomer(
    first_name="Negin",
    last_name="Karimi-Histories",
    mobile="09351234567",
    phone="07132221100",
    email="negin.karimi@example.com",
    address="Shiraz, Zand Blvd 42",
    postal_code="7134567890",
)
SHIPPING_ADDRESS = "Shiraz, Eram St. 7"
SHIPPING_PHONE = "07136660000"
SENSITIVE_VALUES: tuple[str, ...] = (
    MAHAK_PASSWORD,
    WEBHOOK_SECRET,
    SHIPPING_ADDRESS,
    SHIPPING_PHONE,
    *(v for v in CUSTOMER.model_dump(exclude={"mahak_person_id"}).values() if v),
)


async def unpaid_order(
    pool: Any, lines: list[tuple[int, int, float, int]], *, mahak_person_id: int | None = None
) -> ShopOrder:
    """An order of `CUSTOMER`, not paid; `lines` are (product detail id, store id, quantity,
    price)."""
    customer = await orders.create_customer(
        pool, CUSTOMER.model_copy(update={"mahak_person_id": mahak_person_id})
    )
    return await orders.create_order(
        pool,
        NewOrder(
            customer_id=customer.id,
            lines=[
                NewOrderLine(
                    product_detail_id=d, store_id=s, quantity=Decimal(q), unit_price=Decimal(p)
                )
                for d, s, q, p in lines
            ],
            shipping_address=SHIPPING_ADDRESS,
            shipping_phone=SHIPPING_PHONE,
        ),
    )


async def paid_order(
    pool: Any, lines: list[tuple[int, int, float, int]], *, mahak_person_id: int | None = None
) -> ShopOrder:
    """A paid order of `CUSTOMER`; `lines` are (product detail id, store id, quantity, price)."""
    order = await unpaid_order(pool, lines, mahak_person_id=mahak_person_id)
    await orders.mark_paid(pool, order.id, order.amount, f"PAY-{order.id}")
    return order


class Scenario:
    def __init__(
        self, client: Client, settings: Settings, sim: SimControl, pool: Any, name: str
    ) -> None:
        self.client, self.settings, self.sim, self.pool = client, settings, sim, pool
        self.workflow_id = f"history-{name}"

    @property
    def handle(self) -> Handle:
        return self.client.get_workflow_handle(self.workflow_id)

    async def start(self, *, paused: bool = False) -> None:
        await start_incoming(
            self.client, self.settings, config=CONFIG, paused=paused, workflow_id=self.workflow_id
        )

    async def status(self) -> SyncStatus:
        return await self.handle.query(IncomingSyncWorkflow.status)

    async def cycles(self, n: int) -> None:
        for _ in range(600):
            if (await self.status()).cycles_done >= n:
                return
            await asyncio.sleep(0.1)
        raise TimeoutError(f"{self.workflow_id}: cycle {n} not done")

    async def settled(self, runs: int) -> list[str]:
        """Ids of this workflow's finished runs, oldest first, once there are `runs`."""
        for _ in range(600):
            chain = await self._chain()
            if len(chain) > runs:
                return chain[:runs]
            await asyncio.sleep(0.1)
        raise TimeoutError(f"{self.workflow_id}: {runs} runs not finished")

    async def _chain(self) -> list[str]:
        return [*(await self.chain_of(self.workflow_id))[:-1], "current"]

    async def chain_of(self, workflow_id: str) -> list[str]:
        """Run ids of the workflow's chain of continued runs, oldest first."""
        handle = self.client.get_workflow_handle(workflow_id)
        run_ids = [(await handle.describe()).run_id]
        while True:
            history = await self.client.get_workflow_handle(
                workflow_id, run_id=run_ids[0]
            ).fetch_history()
            previous = history.events[
                0
            ].workflow_execution_started_event_attributes.continued_execution_run_id
            if not previous:
                return run_ids
            run_ids.insert(0, previous)


async def cycle_then_sync_now(s: Scenario) -> int:
    """Run 1: the first (timer) cycle. Run 2: woken early by `sync_now`."""
    await s.sim.seed(3, stores=2)
    await s.start()
    await s.cycles(1)
    await s.sim.set_price((await s.sim.entities("product_details"))[0]["ProductDetailId"], 1, 5)
    await s.handle.signal(IncomingSyncWorkflow.sync_now)
    await s.cycles(2)
    return 2


async def operator_updates(s: Scenario) -> int:
    """Run 1: started paused, cursor reset by update, resumed, cycle. Run 2: `run_cycle`
    update, and a pause/resume while waiting."""
    await s.start(paused=True)
    await s.handle.execute_update(
        IncomingSyncWorkflow.reset_cursor, ResetCursorRequest(entity="*", row_version=0)
    )
    await s.handle.signal(IncomingSyncWorkflow.resume)
    await s.cycles(1)
    await s.settled(1)
    await s.handle.signal(IncomingSyncWorkflow.pause)
    await s.handle.signal(IncomingSyncWorkflow.resume)
    await s.handle.execute_update(IncomingSyncWorkflow.run_cycle)
    return 2


async def failures(s: Scenario) -> int:
    """Run 1: a malformed answer (permanent error) for one entity, and an inventory conflict
    signalled to an order workflow that does not exist. Run 2: Mahak down past the entity's
    budget, so the rest of the cycle is skipped."""
    stock = (await s.sim.entities("product_detail_store_assets"))[0]
    detail, store = stock["ProductDetailId"], stock["StoreId"]
    order = await paid_order(s.pool, [(detail, store, stock["Count1"] + 5, 1000)])
    await s.sim.add_fault(malformed="html", count=1)
    await s.start()
    await s.cycles(1)
    await s.sim.add_fault(status_code=503)
    await s.handle.signal(IncomingSyncWorkflow.sync_now)
    await s.cycles(2)
    await s.sim.clear_faults()
    # The conflict is settled by hand, so no later scenario (the sweep) picks this order up.
    await orders.cancel_and_restock(s.pool, order.id, "history scenario over")
    return 2


async def paused_mid_cycle(s: Scenario) -> int:
    """Run 1: paused while the cycle is in the middle of the catalogue: the rest of the cycle
    is skipped, and no inventory conflict is checked on that partial picture. Run 2: resumed
    and woken by `sync_now`, a whole cycle with the check after the orders."""
    await s.sim.seed(6, stores=2)
    await s.sim.add_fault(latency_ms=150)  # slow pages, so the pause lands mid-cycle
    await s.start()
    for _ in range(600):
        if (await s.status()).current_entity in ("product_details", "visitor_products"):
            break
        await asyncio.sleep(0.05)
    else:
        raise TimeoutError(f"{s.workflow_id}: the cycle never reached the product details")
    await s.handle.signal(IncomingSyncWorkflow.pause)
    await s.cycles(1)
    first = (await s.status()).last_cycle
    if first is None or not first.skipped or first.conflicts_checked:
        raise AssertionError(f"{s.workflow_id}: not paused mid-cycle: {first}")
    await s.sim.clear_faults()
    await s.settled(1)
    await s.handle.signal(IncomingSyncWorkflow.resume)
    await s.handle.signal(IncomingSyncWorkflow.sync_now)
    await s.cycles(2)
    return 2


async def conflict_after_orders(s: Scenario) -> int:
    """Run 1: an in-store sale leaves too little for one paid web order: the check after the
    orders finds it short, re-reads stock and orders from Mahak, and signals its order
    workflow (none runs, so that is logged); another paid order Mahak already saved (its
    answer lost) is Mahak's own and no conflict."""
    seeded = await s.sim.seed(2, stock=5)
    (d1, d2), store, person = seeded.product_details, seeded.stores[0], seeded.people[0]
    short = await paid_order(s.pool, [(d1, store, 4, 1000)])
    held = await paid_order(s.pool, [(d2, store, 4, 1000)], mahak_person_id=person)
    async with MahakClient.from_settings(s.settings) as mahak:
        await mahak.login()
        await mahak.save_all_data(
            order_request(
                await orders.get_order(s.pool, held.id),
                visitor_id=mahak.visitor_id,
                person_id=person,
            )
        )
    await s.sim.sale(d1, store, 3)  # 2 left for an order of 4
    await s.start()
    await s.cycles(1)
    cycle = (await s.status()).last_cycle
    if cycle is None or not cycle.conflicts_checked or cycle.inventory_conflicts != 1:
        raise AssertionError(f"{s.workflow_id}: expected one conflict: {cycle}")
    # Settled by hand, so no later scenario (the sweep) picks these orders up.
    await orders.cancel_and_restock(s.pool, short.id, "history scenario over")
    await orders.cancel_and_restock(s.pool, held.id, "history scenario over")
    return 1


async def reconcile(s: Scenario) -> int:
    """Run 1: a cycle, then a row the shop lost, then `reconcile_now` while waiting.
    Run 2: the reconciliation (every entity from RowVersion 0), which restores the row."""
    seeded = await s.sim.seed(3)
    await s.start()
    await s.cycles(1)
    await s.settled(1)
    await s.pool.execute("DELETE FROM mahak_products WHERE id = $1", seeded.products[0])
    await s.handle.signal(IncomingSyncWorkflow.reconcile_now)
    await s.cycles(2)
    cycle = (await s.status()).last_cycle
    if cycle is None or not cycle.reconcile or cycle.entities["products"].counts.inserted != 1:
        raise AssertionError(
            f"{s.workflow_id}: expected a reconciliation restoring one row: {cycle}"
        )
    return 2


async def quick_entities(s: Scenario) -> int:
    """Recorded with `PATCH_QUICK_ENTITIES`. Run 1: the first cycle starts with the entities
    in one activity (`incoming.sync_entities`) while they are quick, the rest one activity
    each. Run 2: Mahak refuses the quick activity's first request (a 503), so every entity
    goes through its own activity, retried."""
    await s.sim.seed(2)
    await start_incoming(
        s.client,
        s.settings,
        config=CONFIG.model_copy(update={"cycles_per_run": 1}),
        workflow_id=s.workflow_id,
    )
    await s.cycles(1)
    await s.settled(1)
    await s.sim.add_fault(status_code=503, count=1)
    await s.handle.signal(IncomingSyncWorkflow.sync_now)
    await s.settled(2)
    cycle = (await s.status()).last_cycle
    if cycle is None or not cycle.ok:
        raise AssertionError(f"{s.workflow_id}: expected the second cycle to recover: {cycle}")
    return 2


async def storefront(s: Scenario) -> int:
    """Run 1: a cycle of the storefront entities too (`PATCH_STOREFRONT_ENTITIES`, with the
    quick path): variants with their attributes, price-level names, settings, units, person
    groups and addresses, promotions."""
    await s.sim.seed(2, details_per_product=4, wholesale_group=True)
    # One cycle per run, so the run ends (continues as new) and can be exported.
    await start_incoming(
        s.client,
        s.settings,
        config=CONFIG.model_copy(update={"cycles_per_run": 1}),
        workflow_id=s.workflow_id,
    )
    await s.cycles(1)
    cycle = (await s.status()).last_cycle
    if cycle is None or not cycle.ok or "property_descriptions" not in cycle.entities:
        raise AssertionError(
            f"{s.workflow_id}: expected a cycle of the storefront entities: {cycle}"
        )
    return 1


INCOMING_SCENARIOS: dict[str, Callable[[Scenario], Awaitable[int]]] = {
    # Recorded before `PATCH_CONFLICTS_AFTER_ORDERS`: they replay the check after the stock.
    # Regenerating them records the new path instead; keep the old files (rename them
    # `*_before_patch_run<n>.json`) while runs of the old code may still be in flight.
    "cycle_then_sync_now": cycle_then_sync_now,
    "operator_updates": operator_updates,
    "failures": failures,
    # Recorded with the check after the orders.
    "paused_mid_cycle": paused_mid_cycle,
    "conflict_after_orders": conflict_after_orders,
    "reconcile": reconcile,
    # Recorded with `PATCH_QUICK_ENTITIES` (quiet cycles in one activity).
    "quick_entities": quick_entities,
    # Recorded with the storefront entities (issue 18); the ones above replay without them.
    "storefront": storefront,
}


class OrderScenario:
    """One order scenario: its own catalogue in the simulator, orders of `CUSTOMER`, and the
    order workflows it drives."""

    def __init__(self, client: Client, settings: Settings, sim: SimControl, pool: Any) -> None:
        self.client, self.settings, self.sim, self.pool = client, settings, sim, pool

    async def catalogue(self, stock: float = 10) -> tuple[list[int], int, int]:
        """Fresh product details, their store and a Mahak person (stock untouched by others)."""
        seeded = await self.sim.seed(2, stock=stock)
        return seeded.product_details, seeded.stores[0], seeded.people[0]

    async def start(self, order: ShopOrder, policy: OrderSyncPolicy = ORDER_POLICY) -> Handle:
        workflow_id = await start_order_sync(self.client, order.id, self.settings, policy=policy)
        return self.client.get_workflow_handle(workflow_id, result_type=OrderSyncResult)

    async def until(self, handle: Handle, stage: str, *, attempts: int = 0) -> None:
        """Wait for `stage`, reached after at least `attempts` sends."""
        for _ in range(300):
            status = await handle.query(OrderSyncWorkflow.status)
            if status.stage == stage and status.attempts >= attempts:
                return
            await asyncio.sleep(0.1)
        raise TimeoutError(f"{handle.id}: never reached {stage} after {attempts} attempts")

    async def finished(self, handle: Handle, outcome: str) -> Handle:
        result = await asyncio.wait_for(handle.result(), 60)
        if result.outcome != outcome:
            raise AssertionError(f"{handle.id}: {result} (expected {outcome})")
        return handle

    async def failed(self, handle: Handle, error_type: str) -> Handle:
        """The run failed with an `ApplicationError` of `error_type` (exported all the same)."""
        try:
            result = await asyncio.wait_for(handle.result(), 60)
        except WorkflowFailureError as err:
            cause = err.cause
            if not isinstance(cause, ApplicationError) or cause.type != error_type:
                raise AssertionError(
                    f"{handle.id}: failed with {cause!r}, expected {error_type}"
                ) from err
            return handle
        raise AssertionError(f"{handle.id}: {result} (expected a failure {error_type})")

    async def save_in_mahak(self, order: ShopOrder, person: int) -> None:
        """An earlier process sent the order to Mahak and lost its own bookkeeping."""
        async with MahakClient.from_settings(self.settings) as mahak:
            await mahak.login()
            await mahak.save_all_data(
                order_request(
                    await orders.get_order(self.pool, order.id),
                    visitor_id=mahak.visitor_id,
                    person_id=person,
                )
            )

    async def held(self, order: ShopOrder) -> Any:
        """What Mahak holds of the order (`SimOrder`), or None."""
        return await self.sim.order(order.order_client_id)


async def order_happy(s: OrderScenario) -> Handle:
    """A new customer (People + VisitorPeople first), the order and its receipt, synced."""
    (d1, d2), store, _ = await s.catalogue()
    order = await paid_order(s.pool, [(d1, store, 2, 150000), (d2, store, 1, 90000)])
    return await s.finished(await s.start(order), "synced")


async def order_mahak_down(s: OrderScenario) -> Handle:
    """Two 503s, backed off and retried, then synced on the third attempt."""
    (d1, _), store, person = await s.catalogue()
    await s.sim.add_fault(status_code=503, count=2, endpoints=["SaveAllDataV2"])
    order = await paid_order(s.pool, [(d1, store, 1, 50000)], mahak_person_id=person)
    return await s.finished(await s.start(order), "synced")


async def order_answer_lost(s: OrderScenario) -> Handle:
    """Mahak saves the order and the answer is lost; the next attempt looks it up first and
    finds it, so nothing is sent twice."""
    (d1, _), store, person = await s.catalogue()
    await s.sim.add_fault(drop_after_processing=True, count=1, endpoints=["SaveAllDataV2"])
    order = await paid_order(s.pool, [(d1, store, 1, 50000)], mahak_person_id=person)
    handle = await s.finished(await s.start(order), "synced")
    held = await s.sim.order(order.order_client_id)
    if held is None or held.submissions != 1:
        raise AssertionError(f"order {order.id} reached Mahak {held and held.submissions} times")
    return handle


async def order_already_registered(s: OrderScenario) -> Handle:
    """An earlier process sent the order and lost its bookkeeping, and Mahak desktop imported
    it: Mahak answers "already registered", the lookup confirms the contents, synced."""
    (d1, _), store, person = await s.catalogue()
    order = await paid_order(s.pool, [(d1, store, 1, 50000)], mahak_person_id=person)
    async with MahakClient.from_settings(s.settings) as mahak:
        await mahak.login()
        await mahak.save_all_data(
            order_request(
                await orders.get_order(s.pool, order.id),
                visitor_id=mahak.visitor_id,
                person_id=person,
            )
        )
    await s.sim.mark_imported(order.order_client_id)
    return await s.finished(await s.start(order), "synced")


async def order_dispute_cancel_update(s: OrderScenario) -> Handle:
    """An unknown product detail: refresh, resend, dispute; the operator's `resolve_dispute`
    update cancels, and the saga reverses the saved part in Mahak and refunds."""
    (d1, d2), store, person = await s.catalogue()
    await s.sim.delete("product_details", d2)
    order = await paid_order(
        s.pool, [(d1, store, 1, 150000), (d2, store, 1, 90000)], mahak_person_id=person
    )
    handle = await s.start(order)
    await s.until(handle, "dispute")
    await handle.execute_update(
        OrderSyncWorkflow.resolve_dispute_update,
        ResolveDispute(action="cancel", note="product withdrawn"),
    )
    return await s.finished(handle, "cancelled")


async def order_dispute_escalated_signal(s: OrderScenario) -> Handle:
    """An unknown product detail, disputed; nobody decides in time, so staff are notified;
    then a `resolve_dispute` signal marks it synced (entered in Mahak by hand)."""
    (d1, _), store, person = await s.catalogue()
    await s.sim.delete("product_details", d1)
    order = await paid_order(s.pool, [(d1, store, 1, 50000)], mahak_person_id=person)
    handle = await s.start(
        order, ORDER_POLICY.model_copy(update={"decision_timeout": timedelta(seconds=1)})
    )
    await s.until(handle, "dispute_escalated")
    await handle.signal(
        OrderSyncWorkflow.resolve_dispute_signal,
        ResolveDispute(action="mark_synced", note="entered by hand"),
    )
    return await s.finished(handle, "synced")


async def order_inventory_saga(s: OrderScenario) -> Handle:
    """Mahak takes line 1 and refuses line 2 for stock: reverse in Mahak, cancel and restock,
    refund through the gateway, notify the customer."""
    (d1, d2), store, person = await s.catalogue(stock=5)
    await s.sim.set_stock(d2, store, 1)
    order = await paid_order(
        s.pool, [(d1, store, 2, 150000), (d2, store, 3, 90000)], mahak_person_id=person
    )
    handle = await s.finished(await s.start(order), "cancelled")
    if len([r for r in await s.sim.refunds() if r["payment_ref"] == f"PAY-{order.id}"]) != 1:
        raise AssertionError(f"order {order.id} was not refunded once")
    return handle


async def order_sweep(s: OrderScenario) -> Handle:
    """The safety net, paging one order at a time: run 1 starts a paid order whose callback
    was lost, then (woken by `sweep_now`) the next one after its cursor, and continues as new
    carrying the cursor; run 2 goes on after it, wraps round to the oldest, starts nothing.

    `order_sweep.json` is a run recorded before paging (`PAGED_SWEEP_PATCH`): keep it."""
    (d1, _), store, person = await s.catalogue()
    waiting = [o.id for o in await orders.paid_orders_without_sync(s.pool)]
    if waiting:
        raise AssertionError(f"paid orders {waiting} would be swept too")
    lost = [
        (await paid_order(s.pool, [(d1, store, 1, 50000)], mahak_person_id=person)).id
        for _ in range(2)
    ]
    sweep = await s.client.start_workflow(
        OrderSweepWorkflow.run,
        OrderSweepInput(interval=timedelta(hours=1), batch_limit=1, cycles_per_run=2),
        id="history-order-sweep",
        task_queue=s.settings.temporal_task_queue,
    )
    run1 = s.client.get_workflow_handle(sweep.id, run_id=sweep.result_run_id)

    async def swept(handle: Handle, cycles: int) -> list[int]:
        for _ in range(300):
            status = await handle.query(OrderSweepWorkflow.status)
            if status.cycles >= cycles:
                return status.last_started
            await asyncio.sleep(0.1)
        raise TimeoutError(f"{handle.id}: sweep {cycles} not done")

    for cycle, expected in ((1, [lost[0]]), (2, [lost[1]])):
        if cycle > 1:
            await sweep.signal(OrderSweepWorkflow.sweep_now)
        started = await swept(run1, cycle)
        if started != expected:
            raise AssertionError(f"sweep {cycle} started {started}, expected {expected}")
    for _ in range(300):
        run2 = (await sweep.describe()).run_id
        if run2 != sweep.result_run_id:
            break
        await asyncio.sleep(0.1)
    await swept(s.client.get_workflow_handle(sweep.id, run_id=run2), 1)
    for order_id in lost:
        await s.finished(
            s.client.get_workflow_handle(order_workflow_id(order_id), result_type=OrderSyncResult),
            "synced",
        )
    await sweep.terminate("history captured")
    return sweep


async def order_long_outage(s: OrderScenario) -> Handle:
    """Five 503s with two attempts per run: the retry continues as new twice, then synced.

    The input is sent as plain JSON so code from before `attempts_per_run` records it too
    (as `*_before_patch.json`): replaying that history checks the `workflow.patched` guard."""
    (d1, _), store, person = await s.catalogue()
    await s.sim.add_fault(status_code=503, count=5, endpoints=["SaveAllDataV2"])
    order = await paid_order(s.pool, [(d1, store, 1, 50000)], mahak_person_id=person)
    policy = {**ORDER_POLICY.model_dump(mode="json"), "attempts_per_run": 2}
    handle = await s.client.start_workflow(
        "OrderSyncWorkflow",
        {"order_id": order.id, "policy": policy},
        id=order_workflow_id(order.id),
        task_queue=s.settings.temporal_task_queue,
        result_type=OrderSyncResult,
    )
    return await s.finished(handle, "synced")


async def order_conflict_during_outage(s: OrderScenario) -> Handle:
    """A send fails (503) and, while the order waits to retry, the incoming sync signals an
    inventory conflict: the saga runs, looking in Mahak first since the send's fate is open."""
    (d1, _), store, person = await s.catalogue()
    await s.sim.add_fault(status_code=503, count=1, endpoints=["SaveAllDataV2"])
    order = await paid_order(s.pool, [(d1, store, 1, 50000)], mahak_person_id=person)
    handle = await s.start(
        order, ORDER_POLICY.model_copy(update={"first_retry_delay": timedelta(hours=1)})
    )
    await s.until(handle, "waiting_to_retry")
    await handle.signal(
        "inventory_conflict",
        {"product_detail_id": d1, "store_id": store, "needed": 1, "available": 0},
    )
    return await s.finished(handle, "cancelled")


def conflict_notice(detail: int, store: int) -> InventoryConflictNotice:
    """What the incoming sync signals when Mahak's stock no longer covers an unsent order."""
    return InventoryConflictNotice(product_detail_id=detail, store_id=store, needed=1, available=0)


async def order_resend_after_dispute(s: OrderScenario) -> Handle:
    """Mahak refuses the whole request (HTTP 400: a closed fiscal period, say): a dispute. The
    operator's `resolve_dispute` update says resend; Mahak refuses again: a second dispute.
    A `resolve_dispute` signal says resend once more, and the order syncs (looked up first,
    then sent once)."""
    (d1, _), store, person = await s.catalogue()
    await s.sim.add_fault(status_code=400, count=2, endpoints=["SaveAllDataV2"])
    order = await paid_order(s.pool, [(d1, store, 1, 50000)], mahak_person_id=person)
    handle = await s.start(order)
    await s.until(handle, "dispute", attempts=1)
    await handle.execute_update(
        OrderSyncWorkflow.resolve_dispute_update,
        ResolveDispute(action="resend", note="fiscal period reopened"),
    )
    await s.until(handle, "dispute", attempts=2)
    await handle.signal(
        OrderSyncWorkflow.resolve_dispute_signal,
        ResolveDispute(action="resend", note="really reopened"),
    )
    await s.finished(handle, "synced")
    held = await s.held(order)
    if held is None or held.submissions != 1:
        raise AssertionError(f"order {order.id} reached Mahak {held and held.submissions} times")
    return handle


async def order_conflict_before_first_send(s: OrderScenario) -> Handle:
    """The incoming sync finds the stock short before the order was ever sent, and its
    `inventory_conflict` signal starts the workflow (signal-with-start): nothing is sent; the
    saga cancels and restocks, refunds, tells the customer, and reads Mahak (nothing there)."""
    (d1, _), store, person = await s.catalogue()
    order = await paid_order(s.pool, [(d1, store, 1, 50000)], mahak_person_id=person)
    handle = await s.client.start_workflow(
        "OrderSyncWorkflow",
        OrderSyncInput(order_id=order.id, policy=ORDER_POLICY),
        id=order_workflow_id(order.id),
        task_queue=s.settings.temporal_task_queue,
        start_signal="inventory_conflict",
        start_signal_args=[conflict_notice(d1, store)],
        result_type=OrderSyncResult,
    )
    await s.finished(handle, "cancelled")
    if await s.held(order) is not None:
        raise AssertionError(f"order {order.id} reached Mahak")
    return handle


async def order_conflict_during_dispute(s: OrderScenario) -> Handle:
    """An unknown product detail: refresh, resend, dispute; while the order waits for the
    operator, an inventory conflict: the saga runs and deletes what Mahak saved (the order,
    line 1 and the receipt)."""
    (d1, d2), store, person = await s.catalogue()
    await s.sim.delete("product_details", d2)
    order = await paid_order(
        s.pool, [(d1, store, 1, 150000), (d2, store, 1, 90000)], mahak_person_id=person
    )
    handle = await s.start(order)
    await s.until(handle, "dispute")
    await handle.signal(OrderSyncWorkflow.inventory_conflict, conflict_notice(d1, store))
    await s.finished(handle, "cancelled")
    held = await s.held(order)
    if held is None or not held.order["Deleted"]:
        raise AssertionError(f"order {order.id}: what Mahak saved was not deleted: {held}")
    return handle


async def order_conflict_after_lost_answer(s: OrderScenario) -> Handle:
    """Mahak stores the order, but its answer comes back cut in half; while the order waits
    to retry, an inventory conflict: the saga reads Mahak, finds the order the workflow never
    heard of, and deletes it."""
    (d1, _), store, person = await s.catalogue()
    await s.sim.add_fault(malformed="truncated", count=1, endpoints=["SaveAllDataV2"])
    order = await paid_order(s.pool, [(d1, store, 1, 50000)], mahak_person_id=person)
    handle = await s.start(
        order, ORDER_POLICY.model_copy(update={"first_retry_delay": timedelta(hours=1)})
    )
    await s.until(handle, "waiting_to_retry")
    await handle.signal(OrderSyncWorkflow.inventory_conflict, conflict_notice(d1, store))
    await s.finished(handle, "cancelled")
    held = await s.held(order)
    if held is None or not held.order["Deleted"] or held.submissions - held.deletions != 1:
        raise AssertionError(f"order {order.id}: the saga did not delete it from Mahak: {held}")
    return handle


async def order_reversal_refused(s: OrderScenario) -> Handle:
    """As `conflict_after_lost_answer`, but Mahak desktop imports the order before the
    conflict arrives, so Mahak refuses the delete: the shop side is undone all the same and a
    staff notice names what is left in Mahak (`cancelled_with_staff_task`)."""
    (d1, _), store, person = await s.catalogue()
    await s.sim.add_fault(malformed="truncated", count=1, endpoints=["SaveAllDataV2"])
    order = await paid_order(s.pool, [(d1, store, 1, 50000)], mahak_person_id=person)
    handle = await s.start(
        order, ORDER_POLICY.model_copy(update={"first_retry_delay": timedelta(hours=1)})
    )
    await s.until(handle, "waiting_to_retry")
    await s.sim.mark_imported(order.order_client_id)
    await handle.signal(OrderSyncWorkflow.inventory_conflict, conflict_notice(d1, store))
    await s.finished(handle, "cancelled_with_staff_task")
    held = await s.held(order)
    if held is None or held.order["Deleted"]:
        raise AssertionError(f"order {order.id}: Mahak was expected to keep it: {held}")
    row = await orders.get_order(s.pool, order.id)
    if row is None or row.sync_status != "cancelled" or row.payment_status != "refunded":
        raise AssertionError(f"order {order.id}: the shop side was not undone: {row}")
    return handle


async def order_shop_cancelled_in_dispute(s: OrderScenario) -> Handle:
    """An unknown product detail, disputed; meanwhile the shop cancels the order in its
    database; then the operator says resend: `begin_send` refuses, the workflow reloads the
    order and follows the shop into the saga: nothing is sent again, what Mahak saved is
    deleted, the payment refunded."""
    (d1, d2), store, person = await s.catalogue()
    await s.sim.delete("product_details", d2)
    order = await paid_order(
        s.pool, [(d1, store, 1, 150000), (d2, store, 1, 90000)], mahak_person_id=person
    )
    handle = await s.start(order)
    await s.until(handle, "dispute")
    sent = await s.held(order)
    if not await orders.cancel_and_restock(s.pool, order.id, "customer called the shop"):
        raise AssertionError(f"order {order.id} could not be cancelled in the shop")
    await handle.signal(
        OrderSyncWorkflow.resolve_dispute_signal,
        ResolveDispute(action="resend", note="product re-linked"),
    )
    await s.finished(handle, "cancelled")
    held = await s.held(order)
    if (
        sent is None
        or held is None
        or not held.order["Deleted"]
        or held.submissions - held.deletions != sent.submissions - sent.deletions
    ):
        raise AssertionError(f"order {order.id}: sent again or not deleted: {sent} -> {held}")
    row = await orders.get_order(s.pool, order.id)
    if row is None or row.payment_status != "refunded":
        raise AssertionError(f"order {order.id} was not refunded: {row}")
    return handle


async def order_already_synced(s: OrderScenario) -> Handle:
    """The shop already marks the order synced (a run that recorded it was terminated before
    it completed; `starter.py order` starts a new one): it returns at once, sending nothing."""
    (d1, _), store, person = await s.catalogue()
    order = await paid_order(s.pool, [(d1, store, 1, 50000)], mahak_person_id=person)
    await s.save_in_mahak(order, person)
    held = await s.held(order)
    assert held is not None
    await orders.record_mahak_ids(s.pool, order.id, held.order_id)
    if not await orders.transition_status(s.pool, order.id, orders.SENDABLE, "synced"):
        raise AssertionError(f"order {order.id} could not be marked synced")
    handle = await s.finished(await s.start(order), "already_synced")
    if (await s.held(order)).submissions != 1:
        raise AssertionError(f"order {order.id} was sent again")
    return handle


async def order_already_cancelled(s: OrderScenario) -> Handle:
    """An order cancelled by an earlier saga whose Mahak leftovers a staff task owns (its run
    was terminated afterwards, say): the workflow returns at once, touching nothing."""
    (d1, _), store, person = await s.catalogue()
    order = await paid_order(s.pool, [(d1, store, 1, 50000)], mahak_person_id=person)
    await orders.begin_compensation(s.pool, order.id, "cancelled earlier")
    await orders.cancel_and_restock(s.pool, order.id, "cancelled earlier")
    await orders.record_leftovers(s.pool, order.id, "Mahak order 1")
    handle = await s.finished(await s.start(order), "cancelled")
    if await s.held(order) is not None:
        raise AssertionError(f"order {order.id} reached Mahak")
    return handle


async def order_cancelled_by_shop_before_start(s: OrderScenario) -> Handle:
    """The shop cancelled the paid order before its sync started (a late callback): the saga
    runs (the refund is owed), Mahak is looked at, nothing is sent."""
    (d1, _), store, person = await s.catalogue()
    order = await paid_order(s.pool, [(d1, store, 1, 50000)], mahak_person_id=person)
    await orders.cancel_and_restock(s.pool, order.id, "cancelled by the shop")
    handle = await s.finished(await s.start(order), "cancelled")
    if await s.held(order) is not None:
        raise AssertionError(f"order {order.id} reached Mahak")
    row = await orders.get_order(s.pool, order.id)
    if row is None or row.payment_status != "refunded":
        raise AssertionError(f"order {order.id} was not refunded")
    return handle


async def order_not_paid(s: OrderScenario) -> Handle:
    """A start for an order whose payment never went through: the workflow fails with
    `OrderNotPaid` (failing leaves the workflow id free for a start once it is paid)."""
    (d1, _), store, person = await s.catalogue()
    order = await unpaid_order(s.pool, [(d1, store, 1, 50000)], mahak_person_id=person)
    return await s.failed(await s.start(order), "OrderNotPaid")


ORDER_SCENARIOS: dict[str, Callable[[OrderScenario], Awaitable[Handle]]] = {
    "happy": order_happy,
    "mahak_down": order_mahak_down,
    "answer_lost": order_answer_lost,
    "already_registered": order_already_registered,
    "dispute_cancel_update": order_dispute_cancel_update,
    "dispute_escalated_signal": order_dispute_escalated_signal,
    "inventory_saga": order_inventory_saga,
    "sweep": order_sweep,
    "long_outage": order_long_outage,
    "conflict_during_outage": order_conflict_during_outage,
    # Recorded after `PATCH_SAGA` ("order-saga-v2"), as are the scenarios above except the
    # sweep: their runs from before it are kept as `order_<name>_before_saga.json` (and the
    # still older `*_before_patch.json`); `tests/test_replay_harness.py` maps each path below
    # to its history. Every scenario but the sweep was recorded again after
    # `PATCH_FAST_SEND` ("order-fast-send"); the runs recorded between the two patches are
    # kept as `order_<name>_before_fast.json` (`_run<i>_before_fast.json`).
    "resend_after_dispute": order_resend_after_dispute,
    "conflict_before_first_send": order_conflict_before_first_send,
    "conflict_during_dispute": order_conflict_during_dispute,
    "conflict_after_lost_answer": order_conflict_after_lost_answer,
    "reversal_refused": order_reversal_refused,
    "shop_cancelled_in_dispute": order_shop_cancelled_in_dispute,
    "already_synced": order_already_synced,
    "already_cancelled": order_already_cancelled,
    "not_paid": order_not_paid,
    "cancelled_by_shop_before_start": order_cancelled_by_shop_before_start,
}


def export(server: DevServer, workflow_id: str, run_id: str | None, path: Path) -> None:
    shown = subprocess.run(
        [
            temporal_cli_path(),
            "workflow",
            "show",
            "--address",
            server.address,
            "--workflow-id",
            workflow_id,
            *(["--run-id", run_id] if run_id else []),
            "--output",
            "json",
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    path.write_text(shown.stdout)
    print(f"wrote {path.relative_to(ROOT)}")


def selected(argv: list[str]) -> tuple[list[str], list[str]]:
    """The incoming and order scenarios named on the command line (all when none is)."""
    names = {
        **{f"incoming_{n}": n for n in INCOMING_SCENARIOS},
        **{f"order_{n}": n for n in ORDER_SCENARIOS},
    }
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "scenarios",
        nargs="*",
        metavar="SCENARIO",
        help="incoming, order, or any of: " + ", ".join(names),
    )
    wanted = parser.parse_args(argv).scenarios or ["incoming", "order"]
    unknown = set(wanted) - {"incoming", "order", *names}
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    chosen = [full for full in names if full in wanted or full.split("_", 1)[0] in wanted]
    return (
        [names[f] for f in chosen if f.startswith("incoming_")],
        [names[f] for f in chosen if f.startswith("order_")],
    )


async def main(argv: list[str]) -> None:
    incoming, order = selected(argv)
    work = Path(tempfile.mkdtemp(prefix="mahak-histories-"))
    server = DevServer(headless=True)
    simulator = SimulatorServer(SimulatorConfig(password=SecretStr(MAHAK_PASSWORD)))
    embedded = pool = None
    try:
        await asyncio.to_thread(server.start)
        await asyncio.to_thread(simulator.start)
        embedded, dsn = await start_embedded(work / "postgres")
        await migrate(dsn)
        pool = await create_pool(dsn)
        settings = Settings(
            TEMPORAL_ADDRESS=server.address,
            TEMPORAL_TASK_QUEUE="histories",
            MAHAK_BASE_URL=simulator.base_url,
            MAHAK_USERNAME="shop",
            MAHAK_PASSWORD=MAHAK_PASSWORD,
            WEBHOOK_SECRET=WEBHOOK_SECRET,
            PAYMENT_GATEWAY_URL=f"{simulator.root_url}/_gateway",
        )
        client = await connect(settings)
        async with (
            SimControl(simulator.root_url) as sim,
            MahakClient.from_settings(settings) as mahak,
            httpx.AsyncClient() as gateway,
            build_worker(client, settings, pool=pool, mahak=mahak, gateway=gateway),
        ):
            for name in incoming:
                s = Scenario(client, settings, sim, pool, name)
                runs = await INCOMING_SCENARIOS[name](s)
                for index, run_id in enumerate(await s.settled(runs), start=1):
                    export(server, s.workflow_id, run_id, HERE / f"incoming_{name}_run{index}.json")
                await s.handle.terminate("history captured")
            for name in order:
                handle = await ORDER_SCENARIOS[name](OrderScenario(client, settings, sim, pool))
                runs = await Scenario(client, settings, sim, pool, "").chain_of(handle.id)
                for index, run_id in enumerate(runs, start=1):
                    suffix = f"_run{index}" if len(runs) > 1 else ""
                    export(server, handle.id, run_id, HERE / f"order_{name}{suffix}.json")
    finally:
        if pool is not None:
            await pool.close()
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)
        await asyncio.to_thread(simulator.stop)
        await asyncio.to_thread(server.stop)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
