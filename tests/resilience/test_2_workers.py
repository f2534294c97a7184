"""Workers SIGKILLed at random (seeded) moments while orders are paid and sent and while an
incoming cycle runs, then restarted; and two workers on the task queue, one killed midway."""

from __future__ import annotations

import asyncio

import pytest

from workflows.incoming_sync import WORKFLOW_ID, IncomingSyncWorkflow

from .checks import check_all
from .cluster import Cluster, Plan

pytestmark = pytest.mark.slow


async def _killer(
    cluster: Cluster,
    name: str,
    kills: int,
    stop: asyncio.Event,
    window: tuple[float, float] = (0.5, 3.0),
) -> int:
    """SIGKILL worker `name` `kills` times at seeded random moments, restarting it each time."""
    done = 0
    while done < kills and not stop.is_set():
        await asyncio.sleep(cluster.rng.uniform(*window))
        cluster.kill_worker(name)
        done += 1
        await asyncio.sleep(cluster.rng.uniform(0.0, 1.0))
        await cluster.restart_worker(name)
    return done


async def _kill_mid_cycle(cluster: Cluster, name: str) -> None:
    """Start an incoming cycle (slowed by Mahak latency) and kill the worker part-way through."""
    await cluster.control.add_fault(
        latency_ms=400, error_rate=1.0, count=12, endpoints=["GetAllDataV2"]
    )
    await cluster.temporal_call(
        lambda c: c.get_workflow_handle(WORKFLOW_ID).signal(IncomingSyncWorkflow.sync_now)
    )
    await asyncio.sleep(cluster.rng.uniform(0.5, 3.0))
    cluster.kill_worker(name)
    await asyncio.sleep(0.5)
    await cluster.restart_worker(name)


async def test_worker_sigkilled_at_random_during_orders_and_a_cycle(cluster: Cluster, plan: Plan):
    await cluster.ensure_catalog()
    # Mahak is slowish now and then, so kills also land while a send is in flight.
    await cluster.control.add_fault(
        latency_ms=700, error_rate=0.5, count=plan.orders * 2, endpoints=["SaveAllDataV2"]
    )
    stop = asyncio.Event()
    killer = asyncio.create_task(_killer(cluster, "worker-1", 2 * plan.size, stop))
    await cluster.order_stream(plan.orders)
    kills = await killer
    await _kill_mid_cycle(cluster, "worker-1")
    await cluster.settle()
    summary = await cluster.incoming_cycle()
    verdict = await check_all(cluster)
    print("worker kills:", kills + 1, verdict.summary(), "cycle ok:", summary.ok)
    assert not verdict.problems, "\n".join(verdict.problems)


async def test_two_workers_one_killed_midway(cluster: Cluster, plan: Plan):
    await cluster.ensure_catalog()
    await cluster.start_worker("worker-2")
    try:
        await cluster.control.add_fault(
            latency_ms=700, error_rate=0.5, count=plan.orders * 2, endpoints=["SaveAllDataV2"]
        )
        stream = asyncio.create_task(cluster.order_stream(plan.orders))
        await asyncio.sleep(cluster.rng.uniform(1.0, 3.0))
        cycle = asyncio.create_task(cluster.incoming_cycle())
        await asyncio.sleep(cluster.rng.uniform(0.2, 1.5))
        victim = cluster.rng.choice(["worker-1", "worker-2"])
        cluster.kill_worker(victim)  # not restarted: the other one carries on alone
        await stream
        summary = await cycle
        await cluster.settle()
        await cluster.incoming_cycle()
        verdict = await check_all(cluster)
        print("two workers,", victim, "killed:", verdict.summary(), "cycle ok:", summary.ok)
        assert not verdict.problems, "\n".join(verdict.problems)
    finally:
        # Back to one worker, worker-1, for the cases after this one.
        if not cluster.workers["worker-1"].running:
            await cluster.restart_worker("worker-1")
        cluster.workers["worker-2"].stop()
