"""Prometheus metrics and health (issue 17): one endpoint per process with the SDK's metrics
and the project's (`mahak_sync.metrics.METRICS`), scraped after a real incoming cycle run
through the production worker on the session dev server; the worker's /healthz and /readyz."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
import uuid
from typing import Any

import asyncpg
import httpx
import pytest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from mahak_client.client import MahakClient
from mahak_simulator.control import SimControl
from mahak_simulator.server import SimulatorServer
from mahak_sync.config import Settings
from mahak_sync.launch import start_incoming
from mahak_sync.metrics import METRICS, collect_state, mahak_observer, runtime_for
from mahak_sync.orders_api import start_order_sync
from mahak_sync.runtime import build_worker, run_worker
from mahak_sync.temporal import free_port
from mahak_sync.webhook import create_app, sign
from shopdb import orders
from tests.order_helpers import make_order
from tests.test_deploy import _dashboard_metrics
from tests.test_incoming_e2e import fast_config
from tests.test_worker_startup import LateTcpProxy, late_postgres  # noqa: F401 - a fixture
from workflows.incoming_sync import IncomingSyncWorkflow
from workflows.order_types import OrderSyncResult, order_workflow_id

pytestmark = pytest.mark.slow


def _samples(text: str, name: str) -> dict[str, float]:
    """`{labels: value}` of one metric in Prometheus' text format."""
    found = {}
    for line in text.splitlines():
        match = re.match(rf"^{name}(\{{[^}}]*\}})? ([0-9.e+-]+)$", line)
        if match:
            found[match.group(1) or ""] = float(match.group(2))
    return found


async def test_one_endpoint_exports_the_sdks_and_the_projects_metrics(
    temporal_client: Client,
    db_pool: asyncpg.Pool,
    simulator: SimulatorServer,
    sim: SimControl,
) -> None:
    seeded = await sim.seed(3)
    address = f"127.0.0.1:{free_port()}"
    queue = f"metrics-{uuid.uuid4().hex[:8]}"
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        METRICS_ADDRESS=address,
        TEMPORAL_TASK_QUEUE=queue,
        MAHAK_BASE_URL=simulator.base_url,
        MAHAK_USERNAME="shop",
        MAHAK_PASSWORD="secret",
        WEBHOOK_SECRET="metrics-secret",
    )
    runtime = runtime_for(settings)
    assert runtime is not None and runtime_for(settings) is runtime  # one per address
    client = await Client.connect(
        temporal_client.service_client.config.target_host,
        namespace=temporal_client.namespace,
        data_converter=pydantic_data_converter,
        runtime=runtime,
    )
    workflow_id = f"mahak-incoming-sync-{uuid.uuid4().hex[:8]}"
    async with (
        MahakClient.from_settings(settings, observe=mahak_observer(settings)) as mahak,
        httpx.AsyncClient() as gateway,
        build_worker(client, settings, pool=db_pool, mahak=mahak, gateway=gateway),
    ):
        handle, _ = await start_incoming(
            client, settings, config=fast_config(), workflow_id=workflow_id
        )
        try:
            await handle.execute_update(IncomingSyncWorkflow.run_cycle)
            # An order paid through the webhook (same process, same endpoint) and synced.
            order = await make_order(
                db_pool, [(seeded.product_details[0], seeded.stores[0], 1, 1000)]
            )
            body = json.dumps(
                {
                    "order_id": order.id,
                    "amount": str(order.amount),
                    "payment_ref": f"PAY-{order.id}",
                }
            ).encode()
            stamp = int(time.time())
            headers = {
                "X-Timestamp": str(stamp),
                "Content-Type": "application/json",
                "X-Signature": sign("metrics-secret", stamp, body),
            }
            app = create_app(settings, pool=db_pool, client=client)
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://shop"
            ) as shop:
                paid = await shop.post("/payments/callback", content=body, headers=headers)
            assert paid.status_code == 202, paid.text
            result = await client.get_workflow_handle(
                order_workflow_id(order.id), result_type=OrderSyncResult
            ).result()
            assert result.outcome == "synced"
            # A second order Mahak's stock cannot cover: the saga cancels it, and with no
            # payment gateway configured the refund becomes a staff task.
            detail, store = seeded.product_details[1], seeded.stores[0]
            await sim.set_stock(detail, store, 0)
            short = await make_order(db_pool, [(detail, store, 1, 1000)])
            await orders.mark_paid(db_pool, short.id, short.amount, f"PAY-{short.id}")
            cancelled = await client.get_workflow_handle(
                await start_order_sync(client, short.id, settings), result_type=OrderSyncResult
            ).result()
            assert cancelled.outcome == "cancelled_with_staff_task", cancelled
            await collect_state(db_pool, runtime.metric_meter)  # the worker does it every 30 s
            async with httpx.AsyncClient() as http:
                text = (await http.get(f"http://{address}/metrics")).text
        finally:
            await handle.terminate("test over")

    # The SDK's own (worker and client), from the same endpoint.
    assert re.search(r"^temporal_activity_execution_latency", text, re.M), text[:2000]
    assert re.search(r"^temporal_workflow_completed", text, re.M) or re.search(
        r"^temporal_workflow_task_execution_latency", text, re.M
    )
    # The project's: rows per entity and result, cursors, Mahak requests, cycle duration.
    rows = _samples(text, "mahak_sync_rows")
    products = [
        v
        for labels, v in rows.items()
        if 'entity="products"' in labels and 'result="inserted"' in labels
    ]
    assert products == [3.0], rows
    cursors = _samples(text, "mahak_sync_cursor")
    assert any('entity="products"' in labels and v > 0 for labels, v in cursors.items())
    requests = _samples(text, "mahak_sync_mahak_requests")
    assert any('endpoint="GetAllDataV2"' in k and 'outcome="ok"' in k for k in requests), requests
    assert _samples(text, "mahak_sync_incoming_cycle_seconds_count")
    # The order: one callback answered 202, one send accepted, one order synced.
    webhook = _samples(text, "mahak_sync_webhook_requests")
    assert [v for k, v in webhook.items() if 'result="202"' in k] == [1.0], webhook
    sends = _samples(text, "mahak_sync_send_attempts")
    assert [v for k, v in sends.items() if 'result="accepted"' in k] == [1.0], sends
    finished = _samples(text, "mahak_sync_orders")
    assert [v for k, v in finished.items() if 'outcome="synced"' in k] == [1.0], finished
    assert [v for k, v in finished.items() if 'outcome="cancelled_with_staff_task"' in k] == [
        1.0
    ], finished
    assert [v for k, v in sends.items() if 'result="inventory"' in k] == [1.0], sends
    staff = _samples(text, "mahak_sync_staff_tasks")
    assert [v for k, v in staff.items() if 'kind="refund_needed"' in k] == [1.0], staff
    latency = _samples(text, "mahak_sync_mahak_request_seconds_count")
    assert any('endpoint="SaveAllDataV2"' in k and v >= 2 for k, v in latency.items()), latency
    assert any('endpoint="SaveAllDataV2"' in k for k in requests), requests
    # What the database holds: paid orders by status (no dispute open), entity lag.
    paid = _samples(text, "mahak_sync_paid_orders")
    assert [v for k, v in paid.items() if 'status="synced"' in k] == [1.0], paid
    assert [v for k, v in paid.items() if 'status="cancelled"' in k] == [1.0], paid
    assert [v for k, v in paid.items() if 'status="dispute"' in k] == [0.0], paid
    lag = _samples(text, "mahak_sync_entity_lag_seconds")
    assert any('entity="products"' in k and 0 <= v < 300 for k, v in lag.items()), lag
    # Every SDK metric the Grafana dashboard queries is one this endpoint exports.
    sdk = {n for n in _dashboard_metrics() if n.startswith("temporal_")}
    missing = [n for n in sdk if not re.search(rf"^{n}(_bucket|_count|_sum)?[{{ ]", text, re.M)]
    assert missing == [], missing
    assert set(METRICS) >= {"mahak_sync_rows", "mahak_sync_cursor"}


async def test_the_workers_health_and_readiness_name_each_check(
    temporal_env: Any, late_postgres: tuple[LateTcpProxy, str], task_queue: str
) -> None:
    proxy, url = late_postgres
    await proxy.open()
    port = free_port()
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        DATABASE_URL=url,
        TEMPORAL_TASK_QUEUE=task_queue,
        TEMPORAL_ADDRESS=temporal_env.client.service_client.config.target_host,
        MAHAK_BASE_URL="http://127.0.0.1:9/API/v3",
        HEALTH_PORT=str(port),
        INCOMING_SYNC_INTERVAL_SECONDS="60",
    )
    stop = asyncio.Event()
    task = asyncio.create_task(run_worker(settings, stop=stop))

    async def readiness(http: httpx.AsyncClient, status: int) -> dict[str, Any]:
        for _ in range(300):
            with contextlib.suppress(httpx.TransportError):
                answer = await http.get("/readyz")
                if answer.status_code == status:
                    return {c["name"]: c for c in answer.json()["checks"]}
            await asyncio.sleep(0.05)
        raise AssertionError(f"/readyz never answered {status}")

    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            checks = await readiness(http, 200)
            assert (await http.get("/healthz")).json() == {"status": "ok"}
            assert set(checks) == {"postgresql", "temporal", "worker", "incoming_cycle"}
            assert all(c["ok"] for c in checks.values())
            assert checks["worker"]["detail"] == f"polling {task_queue}"

            # PostgreSQL down: red, naming it; back: green again.
            await proxy.close()
            down = await readiness(http, 503)
            assert not down["postgresql"]["ok"] and down["temporal"]["ok"]
            await proxy.open()
            await readiness(http, 200)

            # A last cycle older than 3 intervals (3 min here) makes the worker not ready.
            conn = await asyncpg.connect(url)
            try:
                await conn.execute(
                    "INSERT INTO mahak_sync_log (run_id, entity, started_at, finished_at) "
                    "VALUES ('old', 'stores', now() - interval '1 hour', now() - interval '1 hour')"
                )
            finally:
                await conn.close()
            stale = await readiness(http, 503)
            assert not stale["incoming_cycle"]["ok"]
            assert "more than 180 s" in stale["incoming_cycle"]["detail"]
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
