"""The Temporal dev server (state on disk, `--db-filename`) SIGKILLed and started again on the
same port while orders are paid and sent and an incoming cycle runs: every workflow resumes
and nothing is sent to Mahak twice."""

from __future__ import annotations

import asyncio

import pytest

from workflows.incoming_sync import WORKFLOW_ID, IncomingSyncWorkflow

from .checks import check_all
from .cluster import Cluster, Plan

pytestmark = pytest.mark.slow


async def test_temporal_restarted_mid_run(cluster: Cluster, plan: Plan):
    await cluster.ensure_catalog()
    await cluster.control.add_fault(
        latency_ms=700, error_rate=0.5, count=plan.orders * 2, endpoints=["SaveAllDataV2"]
    )
    stream = asyncio.create_task(cluster.order_stream(plan.orders))
    for _ in range(plan.size):
        await asyncio.sleep(cluster.rng.uniform(1.0, 3.0))
        await cluster.temporal_call(
            lambda c: c.get_workflow_handle(WORKFLOW_ID).signal(IncomingSyncWorkflow.sync_now)
        )
        await asyncio.sleep(cluster.rng.uniform(0.1, 1.0))
        await cluster.restart_temporal(down_for=cluster.rng.uniform(0.5, 3.0))
    await stream
    await cluster.settle()
    await cluster.incoming_cycle()
    verdict = await check_all(cluster)
    stats = await cluster.control.stats()
    print(
        "temporal restarts:",
        cluster.figures.temporal_restarts,
        verdict.summary(),
        "duplicate submissions:",
        stats.duplicate_submissions,
    )
    assert not verdict.problems, "\n".join(verdict.problems)
    assert all(w.running for n, w in cluster.workers.items() if n == "worker-1")
