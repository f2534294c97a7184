"""Regenerate the workflow histories that `tests/test_replay.py` replays.

    .venv/bin/python tests/histories/regenerate.py                  # every scenario
    .venv/bin/python tests/histories/regenerate.py order            # one group
    .venv/bin/python tests/histories/regenerate.py order_happy ...  # named scenarios

Runs the real worker (`worker.build_worker`) against a throw-away dev server, the Mahak
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
from temporalio.client import Client, WorkflowHandle  # noqa: E402

from activities.incoming_types import ResetCursorRequest, SyncConfig, SyncStatus  # noqa: E402
from activities.order_request import order_request  # noqa: E402
from mahak_client.client import MahakClient  # noqa: E402
from mahak_simulator.config import SimulatorConfig  # noqa: E402
from mahak_simulator.control import SimControl  # noqa: E402
from mahak_simulator.server import SimulatorServer  # noqa: E402
from mahak_sync.config import Settings  # noqa: E402
from mahak_sync.orders_api import start_order_sync  # noqa: E402
from mahak_sync.temporal import DevServer, connect, temporal_cli_path  # noqa: E402
from shopdb import orders  # noqa: E402
from shopdb.embedded import start_embedded  # noqa: E402
from shopdb.migrate import migrate  # noqa: E402
from shopdb.models import NewCustomer, NewOrder, NewOrderLine, ShopOrder  # noqa: E402
from shopdb.pool import create_pool  # noqa: E402
from starter import start_incoming  # noqa: E402
from worker import build_worker  # noqa: E402
from workflows.incoming_sync import IncomingSyncWorkflow  # noqa: E402
from workflows.order_sweep import OrderSweepInput, OrderSweepWorkflow  # noqa: E402
from workflows.order_sync import OrderSyncWorkflow  # noqa: E402
from workflows.order_types import (  # noqa: E402
    OrderSyncPolicy,
    OrderSyncResult,
    ResolveDispute,
    order_workflow_id,
)

HERE = Path(__file__).resolve().parent
Handle = WorkflowHandle[Any, Any]
CONFIG = SyncConfig(interval_seconds=3600, page_size=2, entity_timeout_seconds=3,
                    attempt_timeout_seconds=3, heartbeat_timeout_seconds=3,
                    retry_initial_seconds=0.2, retry_max_seconds=0.5)
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
CUSTOMER = NewCustomer(first_name="Negin", last_name="Karimi-Histories", mobile="09351234567",
                       phone="07132221100", email="negin.karimi@example.com",
                       address="Shiraz, Zand Blvd 42", postal_code="7134567890")
SHIPPING_ADDRESS = "Shiraz, Eram St. 7"
SHIPPING_PHONE = "07136660000"
SENSITIVE_VALUES: tuple[str, ...] = (
    MAHAK_PASSWORD, WEBHOOK_SECRET, SHIPPING_ADDRESS, SHIPPING_PHONE,
    *(v for v in CUSTOMER.model_dump(exclude={"mahak_person_id"}).values() if v),
)


async def paid_order(pool: Any, lines: list[tuple[int, int, float, int]], *,
                     mahak_person_id: int | None = None) -> ShopOrder:
    """A paid order of `CUSTOMER`; `lines` are (product detail id, store id, quantity, price)."""
    customer = await orders.create_customer(
        pool, CUSTOMER.model_copy(update={"mahak_person_id": mahak_person_id}))
    order = await orders.create_order(pool, NewOrder(
        customer_id=customer.id,
        lines=[NewOrderLine(product_detail_id=d, store_id=s, quantity=Decimal(q),
                            unit_price=Decimal(p)) for d, s, q, p in lines],
        shipping_address=SHIPPING_ADDRESS, shipping_phone=SHIPPING_PHONE,
    ))
    await orders.mark_paid(pool, order.id, order.amount, f"PAY-{order.id}")
    return order


class Scenario:
    def __init__(self, client: Client, settings: Settings, sim: SimControl, pool: Any,
                 name: str) -> None:
        self.client, self.settings, self.sim, self.pool = client, settings, sim, pool
        self.workflow_id = f"history-{name}"

    @property
    def handle(self) -> Handle:
        return self.client.get_workflow_handle(self.workflow_id)

    async def start(self, *, paused: bool = False) -> None:
        await start_incoming(self.client, self.settings, config=CONFIG, paused=paused,
                             workflow_id=self.workflow_id)

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
                workflow_id, run_id=run_ids[0]).fetch_history()
            previous = history.events[0].workflow_execution_started_event_attributes \
                .continued_execution_run_id
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
    await s.handle.execute_update(IncomingSyncWorkflow.reset_cursor,
                                  ResetCursorRequest(entity="*", row_version=0))
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


INCOMING_SCENARIOS: dict[str, Callable[[Scenario], Awaitable[int]]] = {
    "cycle_then_sync_now": cycle_then_sync_now,
    "operator_updates": operator_updates,
    "failures": failures,
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

    async def start(self, order: ShopOrder, policy: OrderSyncPolicy = ORDER_POLICY
                    ) -> Handle:
        workflow_id = await start_order_sync(self.client, order.id, self.settings, policy=policy)
        return self.client.get_workflow_handle(workflow_id, result_type=OrderSyncResult)

    async def until(self, handle: Handle, stage: str) -> None:
        for _ in range(300):
            if (await handle.query(OrderSyncWorkflow.status)).stage == stage:
                return
            await asyncio.sleep(0.1)
        raise TimeoutError(f"{handle.id}: never reached {stage}")

    async def finished(self, handle: Handle, outcome: str) -> Handle:
        result = await asyncio.wait_for(handle.result(), 60)
        if result.outcome != outcome:
            raise AssertionError(f"{handle.id}: {result} (expected {outcome})")
        return handle


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
        await mahak.save_all_data(order_request(
            await orders.get_order(s.pool, order.id), visitor_id=mahak.visitor_id,
            person_id=person))
    await s.sim.mark_imported(order.order_client_id)
    return await s.finished(await s.start(order), "synced")


async def order_dispute_cancel_update(s: OrderScenario) -> Handle:
    """An unknown product detail: refresh, resend, dispute; the operator's `resolve_dispute`
    update cancels, and the saga reverses the saved part in Mahak and refunds."""
    (d1, d2), store, person = await s.catalogue()
    await s.sim.delete("product_details", d2)
    order = await paid_order(s.pool, [(d1, store, 1, 150000), (d2, store, 1, 90000)],
                             mahak_person_id=person)
    handle = await s.start(order)
    await s.until(handle, "dispute")
    await handle.execute_update(OrderSyncWorkflow.resolve_dispute_update,
                                ResolveDispute(action="cancel", note="product withdrawn"))
    return await s.finished(handle, "cancelled")


async def order_dispute_escalated_signal(s: OrderScenario) -> Handle:
    """An unknown product detail, disputed; nobody decides in time, so staff are notified;
    then a `resolve_dispute` signal marks it synced (entered in Mahak by hand)."""
    (d1, _), store, person = await s.catalogue()
    await s.sim.delete("product_details", d1)
    order = await paid_order(s.pool, [(d1, store, 1, 50000)], mahak_person_id=person)
    handle = await s.start(order, ORDER_POLICY.model_copy(
        update={"decision_timeout": timedelta(seconds=1)}))
    await s.until(handle, "dispute_escalated")
    await handle.signal(OrderSyncWorkflow.resolve_dispute_signal,
                        ResolveDispute(action="mark_synced", note="entered by hand"))
    return await s.finished(handle, "synced")


async def order_inventory_saga(s: OrderScenario) -> Handle:
    """Mahak takes line 1 and refuses line 2 for stock: reverse in Mahak, cancel and restock,
    refund through the gateway, notify the customer."""
    (d1, d2), store, person = await s.catalogue(stock=5)
    await s.sim.set_stock(d2, store, 1)
    order = await paid_order(s.pool, [(d1, store, 2, 150000), (d2, store, 3, 90000)],
                             mahak_person_id=person)
    handle = await s.finished(await s.start(order), "cancelled")
    if len([r for r in await s.sim.refunds() if r["payment_ref"] == f"PAY-{order.id}"]) != 1:
        raise AssertionError(f"order {order.id} was not refunded once")
    return handle


async def order_sweep(s: OrderScenario) -> Handle:
    """The safety net: one sweep finds a paid order whose callback was lost and starts it."""
    (d1, _), store, person = await s.catalogue()
    waiting = [o.id for o in await orders.paid_orders_without_sync(s.pool)]
    if waiting:
        raise AssertionError(f"paid orders {waiting} would be swept too")
    lost = await paid_order(s.pool, [(d1, store, 1, 50000)], mahak_person_id=person)
    sweep = await s.client.start_workflow(
        OrderSweepWorkflow.run, OrderSweepInput(interval=timedelta(hours=1)),
        id="history-order-sweep", task_queue=s.settings.temporal_task_queue)
    for _ in range(300):
        if (await sweep.query(OrderSweepWorkflow.status)).cycles >= 1:
            break
        await asyncio.sleep(0.1)
    status = await sweep.query(OrderSweepWorkflow.status)
    if status.last_started != [lost.id]:
        raise AssertionError(f"the sweep started {status.last_started}, expected [{lost.id}]")
    await s.finished(s.client.get_workflow_handle(order_workflow_id(lost.id),
                                                  result_type=OrderSyncResult), "synced")
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
        "OrderSyncWorkflow", {"order_id": order.id, "policy": policy},
        id=order_workflow_id(order.id), task_queue=s.settings.temporal_task_queue,
        result_type=OrderSyncResult)
    return await s.finished(handle, "synced")


async def order_conflict_during_outage(s: OrderScenario) -> Handle:
    """A send fails (503) and, while the order waits to retry, the incoming sync signals an
    inventory conflict: the saga runs, looking in Mahak first since the send's fate is open."""
    (d1, _), store, person = await s.catalogue()
    await s.sim.add_fault(status_code=503, count=1, endpoints=["SaveAllDataV2"])
    order = await paid_order(s.pool, [(d1, store, 1, 50000)], mahak_person_id=person)
    handle = await s.start(order, ORDER_POLICY.model_copy(
        update={"first_retry_delay": timedelta(hours=1)}))
    await s.until(handle, "waiting_to_retry")
    await handle.signal("inventory_conflict", {"product_detail_id": d1, "store_id": store,
                                               "needed": 1, "available": 0})
    return await s.finished(handle, "cancelled")


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
}


def export(server: DevServer, workflow_id: str, run_id: str | None, path: Path) -> None:
    shown = subprocess.run(
        [temporal_cli_path(), "workflow", "show", "--address", server.address,
         "--workflow-id", workflow_id, *(["--run-id", run_id] if run_id else []),
         "--output", "json"],
        check=True, capture_output=True, text=True,
    )
    path.write_text(shown.stdout)
    print(f"wrote {path.relative_to(ROOT)}")


def selected(argv: list[str]) -> tuple[list[str], list[str]]:
    """The incoming and order scenarios named on the command line (all when none is)."""
    names = {**{f"incoming_{n}": n for n in INCOMING_SCENARIOS},
             **{f"order_{n}": n for n in ORDER_SCENARIOS}}
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenarios", nargs="*", metavar="SCENARIO",
                        help="incoming, order, or any of: " + ", ".join(names))
    wanted = parser.parse_args(argv).scenarios or ["incoming", "order"]
    unknown = set(wanted) - {"incoming", "order", *names}
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    chosen = [full for full in names if full in wanted or full.split("_", 1)[0] in wanted]
    return ([names[f] for f in chosen if f.startswith("incoming_")],
            [names[f] for f in chosen if f.startswith("order_")])


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
        settings = Settings(TEMPORAL_ADDRESS=server.address, TEMPORAL_TASK_QUEUE="histories",
                            MAHAK_BASE_URL=simulator.base_url, MAHAK_USERNAME="shop",
                            MAHAK_PASSWORD=MAHAK_PASSWORD, WEBHOOK_SECRET=WEBHOOK_SECRET,
                            PAYMENT_GATEWAY_URL=f"{simulator.root_url}/_gateway")
        client = await connect(settings)
        async with SimControl(simulator.root_url) as sim, \
                MahakClient.from_settings(settings) as mahak, \
                httpx.AsyncClient() as gateway, \
                build_worker(client, settings, pool=pool, mahak=mahak, gateway=gateway):
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
