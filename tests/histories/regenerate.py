"""Regenerate the workflow histories that `tests/test_replay.py` replays.

    .venv/bin/python tests/histories/regenerate.py

Runs the real worker (`worker.build_worker`) against a throw-away dev server, the Mahak
simulator and an embedded PostgreSQL, drives each scenario below the way an operator would,
and exports every finished run with `temporal workflow show --output json`.

Regenerate only on purpose: after a deliberate, versioned (`workflow.patched`) change, ADD
the new histories and keep the old ones, so the code keeps replaying runs still in flight.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from temporalio.client import Client, WorkflowHandle  # noqa: E402

from activities.incoming_types import ResetCursorRequest, SyncConfig, SyncStatus  # noqa: E402
from mahak_client.client import MahakClient  # noqa: E402
from mahak_simulator.control import SimControl  # noqa: E402
from mahak_simulator.server import SimulatorServer  # noqa: E402
from mahak_sync.config import Settings  # noqa: E402
from mahak_sync.temporal import DevServer, connect, temporal_cli_path  # noqa: E402
from shopdb import orders  # noqa: E402
from shopdb.embedded import start_embedded  # noqa: E402
from shopdb.migrate import migrate  # noqa: E402
from shopdb.pool import create_pool  # noqa: E402
from starter import start_incoming  # noqa: E402
from tests.order_helpers import make_order  # noqa: E402
from worker import build_worker  # noqa: E402
from workflows.incoming_sync import IncomingSyncWorkflow  # noqa: E402

HERE = Path(__file__).resolve().parent
CONFIG = SyncConfig(interval_seconds=3600, page_size=2, entity_timeout_seconds=3,
                    attempt_timeout_seconds=3, heartbeat_timeout_seconds=3,
                    retry_initial_seconds=0.2, retry_max_seconds=0.5)


class Scenario:
    def __init__(self, client: Client, settings: Settings, sim: SimControl, pool: Any,
                 name: str) -> None:
        self.client, self.settings, self.sim, self.pool = client, settings, sim, pool
        self.workflow_id = f"history-{name}"

    @property
    def handle(self) -> WorkflowHandle[Any, Any]:
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
        history = await self.handle.fetch_history()
        run_ids: list[str] = []
        started = history.events[0].workflow_execution_started_event_attributes
        current = self.handle
        while True:
            previous = started.continued_execution_run_id
            if not previous:
                break
            run_ids.insert(0, previous)
            current = self.client.get_workflow_handle(self.workflow_id, run_id=previous)
            started = (await current.fetch_history()).events[0] \
                .workflow_execution_started_event_attributes
        return [*run_ids, "current"]


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
    order = await make_order(s.pool, [(detail, store, stock["Count1"] + 5, 1000)])
    await orders.mark_paid(s.pool, order.id, order.amount, f"PAY-{order.id}")
    await s.sim.add_fault(malformed="html", count=1)
    await s.start()
    await s.cycles(1)
    await s.sim.add_fault(status_code=503)
    await s.handle.signal(IncomingSyncWorkflow.sync_now)
    await s.cycles(2)
    await s.sim.clear_faults()
    return 2


SCENARIOS: dict[str, Callable[[Scenario], Awaitable[int]]] = {
    "cycle_then_sync_now": cycle_then_sync_now,
    "operator_updates": operator_updates,
    "failures": failures,
}


def export(server: DevServer, workflow_id: str, run_id: str, path: Path) -> None:
    shown = subprocess.run(
        [temporal_cli_path(), "workflow", "show", "--address", server.address,
         "--workflow-id", workflow_id, "--run-id", run_id, "--output", "json"],
        check=True, capture_output=True, text=True,
    )
    path.write_text(shown.stdout)


async def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="mahak-histories-"))
    server = DevServer(headless=True)
    simulator = SimulatorServer()
    embedded = None
    try:
        await asyncio.to_thread(server.start)
        await asyncio.to_thread(simulator.start)
        embedded, dsn = await start_embedded(work / "postgres")
        await migrate(dsn)
        pool = await create_pool(dsn)
        settings = Settings(TEMPORAL_ADDRESS=server.address, TEMPORAL_TASK_QUEUE="histories",
                            MAHAK_BASE_URL=simulator.base_url, MAHAK_USERNAME="shop",
                            MAHAK_PASSWORD="secret")
        client = await connect(settings)
        async with SimControl(simulator.root_url) as sim, \
                MahakClient.from_settings(settings) as mahak, \
                httpx.AsyncClient() as gateway, \
                build_worker(client, settings, pool=pool, mahak=mahak, gateway=gateway):
            for name, scenario in SCENARIOS.items():
                s = Scenario(client, settings, sim, pool, name)
                runs = await scenario(s)
                for index, run_id in enumerate(await s.settled(runs), start=1):
                    target = HERE / f"incoming_{name}_run{index}.json"
                    export(server, s.workflow_id, run_id, target)
                    print(f"wrote {target.relative_to(ROOT)}")
                await s.handle.terminate("history captured")
        await pool.close()
    finally:
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)
        await asyncio.to_thread(simulator.stop)
        await asyncio.to_thread(server.stop)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
