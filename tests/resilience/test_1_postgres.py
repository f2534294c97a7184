"""PostgreSQL stopped hard (`pg_ctl stop -m immediate`, a crash) while paid orders are being
sent to Mahak and while an incoming cycle runs, for about 1 s and for a long outage (20 s in
CI, 60 s at a long size); a worker started while PostgreSQL is down waits for it."""

from __future__ import annotations

import asyncio
import json

import pytest

from workflows.incoming_sync import WORKFLOW_ID, IncomingSyncWorkflow

from .checks import check_all
from .cluster import Cluster, Plan

pytestmark = pytest.mark.slow


async def _until_sending(
    cluster: Cluster, ids: list[int], at_least: int, timeout: float = 30
) -> int:
    """Until `at_least` of the orders are being sent (claimed, Mahak not answered yet)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    n = 0
    while loop.time() < end:
        async with cluster.db() as conn:
            n = await conn.fetchval(
                "SELECT count(*) FROM shop_orders WHERE id = ANY($1) AND sync_status = 'sending'",
                ids,
            )
        if n >= at_least:
            return n
        await asyncio.sleep(0.05)
    return n


async def _outage_with_orders_in_flight(
    cluster: Cluster, plan: Plan, outage: float, *, late_worker: bool
) -> dict[str, object]:
    n = max(4, plan.orders // 2)
    # Mahak answers slowly, so the sends are in flight when the database goes.
    await cluster.control.add_fault(
        latency_ms=1500, error_rate=1.0, count=n * 3, endpoints=["SaveAllDataV2"]
    )
    placed = [await cluster.new_order() for _ in range(n)]
    late_payer = await cluster.new_order()
    await asyncio.gather(*(cluster.pay(p) for p in placed))
    in_flight = await _until_sending(cluster, [p.order.id for p in placed], max(1, n // 2))
    # ... and an incoming cycle runs through it.
    await cluster.temporal_call(
        lambda c: c.get_workflow_handle(WORKFLOW_ID).signal(IncomingSyncWorkflow.sync_now)
    )
    await asyncio.to_thread(cluster.pg.stop, "immediate")
    cluster.figures.pg_outages += 1
    info: dict[str, object] = {"in_flight": in_flight}
    late = None
    try:
        if late_worker:
            late = await cluster.start_worker("worker-late", wait_ready=False)
        # A customer pays meanwhile: the gateway retries until the webhook can record it.
        paying = asyncio.create_task(cluster.pay(late_payer))
        await asyncio.sleep(outage)
        if late is not None:
            info["late_worker_alive_during_outage"] = late.running
            info["late_worker_output"] = late.output()
    finally:
        await asyncio.to_thread(cluster.pg.start)
    await paying
    if late is not None:
        await late.wait_output('"worker_started"', timeout=60)
    return info


def _waiting_lines(output: str) -> list[dict[str, object]]:
    lines = []
    for raw in output.splitlines():
        try:
            entry = json.loads(raw)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("event") == "waiting_for_dependency":
            lines.append(entry)
    return lines


async def test_postgres_crash_short_and_long_mid_order_and_mid_cycle(cluster: Cluster, plan: Plan):
    if not cluster.details:
        await cluster.seed_catalog(6, stock=10_000)

    await _outage_with_orders_in_flight(cluster, plan, 1.0, late_worker=False)
    info = await _outage_with_orders_in_flight(cluster, plan, plan.long_outage, late_worker=True)

    # The worker started while PostgreSQL was down waited, one log line per failed try.
    assert info["late_worker_alive_during_outage"], info["late_worker_output"]
    waits = _waiting_lines(str(info["late_worker_output"]))
    assert waits, info["late_worker_output"]
    assert all(w.get("dependency") == "postgresql" for w in waits), waits
    assert [w["attempt"] for w in waits] == list(range(1, len(waits) + 1)), waits
    assert len(waits) >= plan.long_outage / 3, waits  # backoff capped at 2 s: a line every ~2 s
    cluster.workers["worker-late"].stop()
    assert cluster.workers["worker-1"].running, cluster.workers["worker-1"].output()[-3000:]

    await cluster.settle()
    await cluster.incoming_cycle()
    verdict = await check_all(cluster)
    print("postgres outage:", verdict.summary(), info["in_flight"])
    assert not verdict.problems, "\n".join(verdict.problems)
