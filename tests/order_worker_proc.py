"""A worker process with the order workflow and its real activities, for tests that kill it.

    python -m tests.order_worker_proc ADDRESS TASK_QUEUE DSN MAHAK_BASE_URL GATEWAY_URL

Prints `ready` once polling; runs until killed.
"""

from __future__ import annotations

import asyncio
import sys

import httpx
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Worker

from activities.orders import OrderActivities
from activities.payments import PaymentActivities
from mahak_client.client import MahakClient
from mahak_sync.config import Settings
from mahak_sync.runtime import INTERCEPTORS
from shopdb.pool import create_pool
from workflows.order_sync import OrderSyncWorkflow


async def main(address: str, queue: str, dsn: str, mahak_url: str, gateway_url: str) -> None:
    client = await Client.connect(address, data_converter=pydantic_data_converter)
    pool = await create_pool(dsn)
    settings = Settings(
        _env_file=None,
        TEMPORAL_TASK_QUEUE=queue,  # type: ignore[call-arg]
        MAHAK_BASE_URL=mahak_url,
        MAHAK_USERNAME="shop",
        MAHAK_PASSWORD="secret",
    )
    async with MahakClient(mahak_url, "shop", "secret") as mahak, httpx.AsyncClient() as http:
        worker = Worker(
            client,
            task_queue=queue,
            workflows=[OrderSyncWorkflow],
            interceptors=INTERCEPTORS,
            activities=[
                *OrderActivities(pool, mahak, settings).all(),
                *PaymentActivities(pool, http, gateway_url).all(),
            ],
        )
        async with worker:
            print("ready", flush=True)
            await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:6]))
