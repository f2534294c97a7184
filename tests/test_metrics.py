"""Prometheus metrics and health (issue 17): one endpoint per process with the SDK's metrics
and the project's (`mahak_sync.metrics.METRICS`), scraped after a real incoming cycle run
through the production worker on the session dev server; the worker's /healthz and /readyz."""

from __future__ import annotations

import asyncio
import contextlib
import re
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
from mahak_sync.metrics import METRICS, mahak_observer, runtime_for
from mahak_sync.runtime import build_worker, run_worker
from mahak_sync.temporal import free_port
from tests.test_deploy import _dashboard_metrics
from tests.test_incoming_e2e import fast_config
from workflows.incoming_sync import IncomingSyncWorkflow

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
    await sim.seed(3)
    address = f"127.0.0.1:{free_port()}"
    queue = f"metrics-{uuid.uuid4().hex[:8]}"
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        METRICS_ADDRESS=address,
        TEMPORAL_TASK_QUEUE=queue,
        MAHAK_BASE_URL=simulator.base_url,
        MAHAK_USERNAME="shop",
        MAHAK_PASSWORD="secret",
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
    # Every SDK metric the Grafana dashboard queries is one this endpoint exports.
    sdk = {n for n in _dashboard_metrics() if n.startswith("temporal_")}
    missing = [n for n in sdk if not re.search(rf"^{n}(_bucket|_count|_sum)?[{{ ]", text, re.M)]
    assert missing == [], missing
    assert set(METRICS) >= {"mahak_sync_rows", "mahak_sync_cursor"}


async def test_the_workers_health_and_readiness_name_each_check(
    temporal_env: Any, db_dsn: str, task_queue: str, db_pool: asyncpg.Pool
) -> None:
    port = free_port()
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        DATABASE_URL=db_dsn,
        TEMPORAL_TASK_QUEUE=task_queue,
        TEMPORAL_ADDRESS=temporal_env.client.service_client.config.target_host,
        MAHAK_BASE_URL="http://127.0.0.1:9/API/v3",
        HEALTH_PORT=str(port),
        INCOMING_SYNC_INTERVAL_SECONDS="60",
    )
    stop = asyncio.Event()
    task = asyncio.create_task(run_worker(settings, stop=stop))
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            for _ in range(200):
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get("/readyz")).status_code == 200:
                        break
                await asyncio.sleep(0.05)
            assert (await http.get("/healthz")).json() == {"status": "ok"}
            ready = await http.get("/readyz")
            assert ready.status_code == 200, ready.text
            checks = {c["name"]: c for c in ready.json()["checks"]}
            assert set(checks) == {"postgresql", "temporal", "worker", "incoming_cycle"}
            assert all(c["ok"] for c in checks.values())
            assert checks["worker"]["detail"] == f"polling {task_queue}"

            # A last cycle older than 3 intervals (3 min here) makes the worker not ready.
            await db_pool.execute(
                "INSERT INTO mahak_sync_log (run_id, entity, started_at, finished_at) "
                "VALUES ('old', 'stores', now() - interval '1 hour', now() - interval '1 hour')"
            )
            stale = await http.get("/readyz")
            assert stale.status_code == 503
            [cycle] = [c for c in stale.json()["checks"] if c["name"] == "incoming_cycle"]
            assert not cycle["ok"] and "more than 180 s" in cycle["detail"]
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
