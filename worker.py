"""The Temporal worker: runs every workflow and activity of mahak-sync on one task queue.

    python worker.py            # TEMPORAL_ADDRESS, DATABASE_URL, MAHAK_* from the environment

Start-up order: settings -> shop database (migrated when MIGRATE_ON_START) -> Mahak client ->
activity instances -> worker. SIGINT/SIGTERM drain in-flight tasks and exit cleanly.
"""

from __future__ import annotations

import asyncio
import signal
from datetime import timedelta

import asyncpg
import httpx
from temporalio.client import Client
from temporalio.worker import Worker

from activities.incoming import IncomingActivities
from activities.orders import OrderActivities, OrderSweepActivities
from activities.payments import PaymentActivities
from mahak_client.client import MahakClient
from mahak_sync.config import Settings, get_settings
from mahak_sync.logging import configure_logging, get_logger, register_secret
from mahak_sync.temporal import connect, ensure_search_attributes
from shopdb.pool import open_database
from workflows.incoming_sync import IncomingSyncWorkflow
from workflows.order_sweep import OrderSweepWorkflow
from workflows.order_sync import OrderSyncWorkflow

log = get_logger(__name__)

# Every workflow type this service runs (the replay test replays histories against these).
WORKFLOWS: list[type] = [IncomingSyncWorkflow, OrderSyncWorkflow, OrderSweepWorkflow]


def build_worker(client: Client, settings: Settings, *, pool: asyncpg.Pool,
                 mahak: MahakClient, gateway: httpx.AsyncClient) -> Worker:
    """The one list of what this service runs; tests build their workers here too."""
    incoming = IncomingActivities(pool, mahak)
    orders = OrderActivities(pool, mahak, page_size=settings.mahak_page_size)
    payments = PaymentActivities(pool, gateway, settings.payment_gateway_url)
    sweep = OrderSweepActivities(pool, client, settings)
    return Worker(
        client,
        task_queue=settings.temporal_task_queue,
        # On shutdown, give a running page time to commit before activities are cancelled
        # (a cancelled page rolls back whole, so this only saves repeating it).
        graceful_shutdown_timeout=timedelta(seconds=30),
        workflows=WORKFLOWS,
        activities=[
            *incoming.all(),
            *orders.all(),
            *payments.all(),
            *sweep.all(),
        ],
    )


async def run_worker(settings: Settings, *, stop: asyncio.Event | None = None) -> None:
    """Run until `stop` is set (or the process is told to stop)."""
    stop = stop or asyncio.Event()
    client = await connect(settings)
    await ensure_search_attributes(client, settings.temporal_namespace)
    async with (
        open_database(settings) as pool,
        MahakClient.from_settings(settings) as mahak,
        httpx.AsyncClient(timeout=30.0) as gateway,
    ):
        worker = build_worker(client, settings, pool=pool, mahak=mahak, gateway=gateway)
        async with worker:
            log.info("worker_started", task_queue=settings.temporal_task_queue,
                     namespace=settings.temporal_namespace)
            await stop.wait()
            log.info("worker_stopping")


async def main() -> None:
    settings = get_settings()
    configure_logging(settings.log_format, settings.log_level)
    register_secret(settings.mahak_password.get_secret_value())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await run_worker(settings, stop=stop)


if __name__ == "__main__":
    asyncio.run(main())
