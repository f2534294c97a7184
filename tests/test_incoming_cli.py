"""The operator entry points of the incoming sync outside a workflow: `mahak-sync sync once`
and the bundled dev server."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from mahak_client.models import INCOMING_ORDER
from mahak_simulator.control import SimControl
from mahak_simulator.server import SimulatorServer
from mahak_sync.config import Settings
from mahak_sync.temporal import (
    SEARCH_ATTRIBUTES,
    DevServer,
    connect,
    ensure_search_attributes,
    temporal_cli_path,
)
from tests.fixtures_temporal import STARTUP_TIMEOUT

pytestmark = pytest.mark.slow


async def sync_once(db_dsn: str, simulator: SimulatorServer) -> tuple[int, dict[str, Any]]:
    env = {
        **os.environ,
        "DATABASE_URL": db_dsn,
        "MIGRATE_ON_START": "false",
        "MAHAK_BASE_URL": simulator.base_url,
        "MAHAK_USERNAME": "shop",
        "MAHAK_PASSWORD": "secret",
        "MAHAK_PAGE_SIZE": "3",
        "LOG_LEVEL": "WARNING",
    }
    process = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "mahak-sync"),
        "sync",
        "once",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert b"secret" not in out + err, "the password never reaches the output"
    return process.returncode or 0, json.loads(out)


async def test_sync_once_prints_counts_and_fails_when_mahak_is_down(
    sim: SimControl,
    simulator: SimulatorServer,
    db_dsn: str,
    db_pool: asyncpg.Pool,
) -> None:
    seeded = await sim.seed(4, stores=2)
    code, summary = await sync_once(db_dsn, simulator)
    assert code == 0, summary
    assert summary["ok"] is True and summary["skipped"] == []
    assert list(summary["entities"]) == list(INCOMING_ORDER)
    assert summary["entities"]["products"]["counts"]["inserted"] == 4
    assert summary["entities"]["stores"]["counts"]["inserted"] == 2
    assert summary["totals"]["fetched"] == sum(
        e["counts"]["fetched"] for e in summary["entities"].values()
    )
    assert await db_pool.fetchval("SELECT count(*) FROM mahak_products") == len(seeded.products)

    await sim.add_fault(status_code=503)
    try:
        code, summary = await sync_once(db_dsn, simulator)
    finally:
        await sim.clear_faults()
    assert code == 1
    assert summary["ok"] is False
    assert "503" in summary["entities"]["stores"]["error"]
    assert summary["skipped"] == list(INCOMING_ORDER[1:])
    logged = await db_pool.fetchval(
        "SELECT error FROM mahak_sync_log WHERE run_id = $1 AND entity = 'stores'",
        summary["run_id"],
    )
    assert "503" in logged


async def test_dev_server_starts_on_free_ports_with_search_attributes() -> None:
    server = DevServer(headless=True)
    await asyncio.to_thread(server.start)
    try:
        client: Client = await connect(Settings(TEMPORAL_ADDRESS=server.address))
        assert await ensure_search_attributes(client, "default") == [], "registered at launch"
        listed = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace="default")
        )
        assert {key.name for key in SEARCH_ATTRIBUTES} <= set(listed.custom_attributes)
    finally:
        await asyncio.to_thread(server.stop)
    assert server.ui_url is None


async def test_ensure_search_attributes_registers_the_missing_ones_once() -> None:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_cli_path(),
        dev_server_log_level="error",
        dev_server_startup_timeout=STARTUP_TIMEOUT,
    )
    try:
        names = sorted(key.name for key in SEARCH_ATTRIBUTES)
        assert await ensure_search_attributes(env.client, env.client.namespace) == names
        assert await ensure_search_attributes(env.client, env.client.namespace) == []
        listed = await env.client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=env.client.namespace)
        )
        assert set(names) <= set(listed.custom_attributes)
    finally:
        await env.shutdown()
