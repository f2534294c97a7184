"""The floor of `bench.order_latency`: a workflow as trivial as Temporal allows, with the same
activities (regular and local, in the same order) as a happy-path order, each doing nothing.

    python -m bench.order_floor --address HOST:PORT --task-queue QUEUE

Runs a worker for `FloorWorkflow` until SIGTERM; prints `ready` once polling. The step that
stands for the order's send returns the wall-clock time it ran, so the benchmark measures the
floor from the start request to that step, as it measures an order from its callback to Mahak.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import time
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.worker import Worker

FLOOR_WORKFLOW = "OrderLatencyFloor"
_TIMEOUT = timedelta(seconds=60)


@activity.defn(name="floor.step")
async def step() -> float:
    return time.time()


@workflow.defn(name=FLOOR_WORKFLOW)
class FloorWorkflow:
    @workflow.run
    async def run(self, shape: str) -> float:
        """`shape`: one letter per activity, `L` local, `R` regular, `S` the regular activity
        whose time is returned (the order's send)."""
        arrived = 0.0
        for kind in shape:
            if kind == "L":
                await workflow.execute_local_activity(step, start_to_close_timeout=_TIMEOUT)
            else:
                at = await workflow.execute_activity(step, start_to_close_timeout=_TIMEOUT)
                if kind == "S":
                    arrived = at
        return arrived


async def serve(address: str, task_queue: str) -> None:
    client = await Client.connect(address)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with Worker(client, task_queue=task_queue, workflows=[FloorWorkflow], activities=[step]):
        print("ready", flush=True)
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", required=True)
    parser.add_argument("--task-queue", required=True)
    args = parser.parse_args()
    asyncio.run(serve(args.address, args.task_queue))


if __name__ == "__main__":
    main()
