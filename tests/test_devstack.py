"""The README's bring-up command, end to end: `mahak-sync dev` on a fresh data directory brings
up every component, the incoming sync fills the shop database, a signed payment callback gets
the order into Mahak, and Ctrl-C stops everything cleanly."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import asyncpg
import httpx
import pytest

from mahak_simulator.control import SimControl
from mahak_sync.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from shopdb import orders
from shopdb.models import NewCustomer, NewOrder, NewOrderLine

SEEDED_PRODUCTS = 6


async def _until(predicate, *, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.3)


@pytest.fixture
def dev_stack(tmp_path: Path):
    data = tmp_path / "data"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MAHAK_", "DATABASE_URL", "TEMPORAL_", "WEBHOOK_"))
    }
    env |= {
        "MAHAK_SYNC_DATA_DIR": str(data),
        "INCOMING_SYNC_INTERVAL_SECONDS": "300",
        "LOG_FORMAT": "json",
    }
    exe = Path(sys.executable).with_name("mahak-sync")
    log = (tmp_path / "dev.log").open("w+")
    proc = subprocess.Popen(
        [
            str(exe),
            "dev",
            "--temporal-port",
            "0",
            "--ui-port",
            "0",
            "--webhook-port",
            "0",
            "--simulator-port",
            "0",
            "--seed-products",
            str(SEEDED_PRODUCTS),
        ],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    ready = data / "dev-ready.json"
    try:
        deadline = time.monotonic() + 90
        while not ready.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                pytest.fail(f"dev stack did not come up:\n{log.read()[-3000:]}")
            time.sleep(0.2)
        yield proc, json.loads(ready.read_text()), data
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        log.close()


@pytest.mark.slow
async def test_dev_stack_syncs_both_ways_and_stops_cleanly(dev_stack) -> None:
    proc, info, data = dev_stack
    assert {"temporal_ui", "temporal_address", "simulator", "webhook", "database"} <= set(info)
    async with httpx.AsyncClient() as http:
        assert (await http.get(info["temporal_ui"])).status_code == 200

    pool = await asyncpg.create_pool(info["database"], min_size=1, max_size=2)
    try:
        # Incoming: the first cycle runs right after start-up.
        async def details_mirrored():
            n = await pool.fetchval("SELECT count(*) FROM mahak_product_details")
            return n == SEEDED_PRODUCTS and await pool.fetchval("SELECT count(*) FROM mahak_stock")

        await _until(details_mirrored, timeout=60, what="the incoming sync")

        # Outgoing: a paid order reaches Mahak through the signed callback.
        async with SimControl(info["simulator"]) as sim:
            stock = [
                s for s in await sim.entities("product_detail_store_assets") if s["Count1"] >= 1
            ]
            customer = await orders.create_customer(
                pool, NewCustomer(first_name="Dev", last_name="Test")
            )
            order = await orders.create_order(
                pool,
                NewOrder(
                    customer_id=customer.id,
                    lines=[
                        NewOrderLine(
                            product_detail_id=stock[0]["ProductDetailId"],
                            store_id=stock[0]["StoreId"],
                            quantity=Decimal(1),
                            unit_price=Decimal(120000),
                        )
                    ],
                ),
            )
            body = json.dumps(
                {"order_id": order.id, "amount": str(order.amount), "payment_ref": "dev-pay-1"}
            ).encode()
            secret = Path(info["webhook_secret_file"]).read_text().strip()
            ts = int(time.time())
            async with httpx.AsyncClient() as http:
                answer = await http.post(
                    info["webhook"],
                    content=body,
                    headers={
                        "Content-Type": "application/json",
                        TIMESTAMP_HEADER: str(ts),
                        SIGNATURE_HEADER: sign(secret, ts, body),
                    },
                )
            assert answer.status_code == 202, answer.text
            assert answer.json()["workflow_id"] == f"order-sync-{order.id}"

            async def synced():
                row = await orders.get_order(pool, order.id)
                return row if row.sync_status == "synced" else None

            row = await _until(synced, timeout=60, what="the order to reach Mahak")
            held = await sim.order(order.order_client_id)
            assert held is not None and held.order_id == row.mahak_order_id
            assert (await sim.stats()).duplicate_submissions == 0
    finally:
        await pool.close()

    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 0
    assert not (data / "dev-ready.json").exists()
