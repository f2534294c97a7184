"""Mahak misbehaving at a seeded rate (the simulator's fault dice use the run's seed) while
orders are sent and a full incoming sync (a reconciliation from RowVersion 0) runs: 5xx, 429
with Retry-After, dropped connections, answers lost after Mahak stored the request, HTML and
truncated bodies, answers slower than the client's timeout, and tokens that expire every few
seconds. Every order ends in Mahak exactly once; the shop's catalog ends identical to Mahak's."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from mahak_simulator.faults import FaultSpec
from workflows.order_types import OrderSyncPolicy

from .checks import catalog_differences, check_all
from .cluster import Cluster, Plan

pytestmark = pytest.mark.slow

RATE = 0.3  # of every Sync request, spread over the kinds below
# The shop starts these syncs in-process (README: `start_order_sync`) with short retry delays:
# under 30 % faults the production backoff (5 s doubling to 10 min) would outlast the CI budget.
SHOP_POLICY = OrderSyncPolicy(
    first_retry_delay=timedelta(milliseconds=500),
    max_retry_delay=timedelta(seconds=3),
    send_heartbeat_timeout=timedelta(seconds=10),
)


def fault_mix(rate: float) -> list[FaultSpec]:
    kinds = [
        dict(status_code=503),
        dict(status_code=500),
        dict(status_code=429, retry_after=1),
        dict(drop_connection=True),
        dict(drop_after_processing=True),
        dict(malformed="html"),
        dict(malformed="truncated"),
    ]
    each = rate / len(kinds)
    specs = [FaultSpec(error_rate=each, **k) for k in kinds]
    # Slower than MAHAK_TIMEOUT_SECONDS (8 s here): the client times out; one only, it costs.
    specs.append(
        FaultSpec(
            error_rate=0.1, latency_ms=9_000, count=1, endpoints=["SaveAllDataV2", "GetAllDataV2"]
        )
    )
    return specs


async def _churn(cluster: Cluster, stop: asyncio.Event) -> int:
    """Mahak desktop edits prices and revokes tokens while the sync runs."""
    n = 0
    while not stop.is_set():
        detail = cluster.rng.choice(cluster.details)
        await cluster.control.set_price(
            detail, cluster.rng.randint(1, 3), cluster.rng.randrange(1000, 900_000, 500)
        )
        if cluster.rng.random() < 0.3:
            await cluster.control.expire_tokens()
        n += 1
        await asyncio.sleep(cluster.rng.uniform(0.2, 1.0))
    return n


async def test_mahak_faults_during_orders_and_a_full_incoming_sync(cluster: Cluster, plan: Plan):
    await cluster.ensure_catalog()
    await cluster.seed_catalog(4 * plan.size, stock=100_000)  # new rows for the sync to fetch
    before = (await cluster.control.stats()).faults_injected
    await cluster.control.configure(token_lifetime_seconds=4)
    for spec in fault_mix(RATE):
        await cluster.control.add_fault(spec)
    stop = asyncio.Event()
    churn = asyncio.create_task(_churn(cluster, stop))
    try:
        stream = asyncio.create_task(cluster.order_stream(plan.orders, policy=SHOP_POLICY))
        faulted = await cluster.reconcile()
        await stream
        await cluster.settle()
    finally:
        stop.set()
        await churn
        await cluster.control.clear_faults()
        await cluster.control.configure(token_lifetime_seconds=604_800)
    injected = (await cluster.control.stats()).faults_injected - before
    clean = await cluster.incoming_cycle()
    verdict = await check_all(cluster)
    differences = await catalog_differences(cluster)
    print(
        "faults injected:",
        injected,
        verdict.summary(),
        "faulted cycle ok:",
        faulted.ok,
        "clean cycle ok:",
        clean.ok,
    )
    assert injected > 0
    assert not verdict.problems, "\n".join(verdict.problems)
    assert clean.ok, clean
    assert not differences, "\n".join(differences)
