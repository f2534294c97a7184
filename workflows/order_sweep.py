"""`OrderSweepWorkflow` (id `mahak-order-sweep`): the safety net under the payment callback.

Every interval (default one minute) it starts, or attaches to, the sync of each paid order
Mahak does not hold yet, so an order whose callback was lost, or whose start failed after it
was marked paid, still reaches Mahak. Starting is idempotent, so sweeping an order whose sync
is running or finished changes nothing. The history stays small: the workflow continues as new
every `cycles_per_run` cycles.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from pydantic import BaseModel, Field
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from workflows.order_types import OrderActivityNames as A


class OrderSweepInput(BaseModel):
    interval: timedelta = timedelta(minutes=1)
    batch_limit: int = Field(500, ge=1)
    cycles_per_run: int = Field(100, ge=1)


class OrderSweepStatus(BaseModel):
    cycles: int
    last_started: list[int]


@workflow.defn(name="OrderSweepWorkflow")
class OrderSweepWorkflow:
    def __init__(self) -> None:
        self._cycles = 0
        self._last: list[int] = []
        self._wake = False

    @workflow.signal
    def sweep_now(self) -> None:
        self._wake = True

    @workflow.query
    def status(self) -> OrderSweepStatus:
        return OrderSweepStatus(cycles=self._cycles, last_started=self._last)

    @workflow.run
    async def run(self, inp: OrderSweepInput) -> None:
        while True:
            self._wake = False
            try:
                self._last = await workflow.execute_activity(
                    A.sweep, inp.batch_limit, result_type=list[int],
                    start_to_close_timeout=timedelta(minutes=5),
                    retry_policy=RetryPolicy(maximum_attempts=3),
                )
            except ActivityError as err:
                # A failed sweep is simply the next one's work; the safety net never stops.
                workflow.logger.warning("order sweep failed: %s", err.cause or err)
                self._last = []
            self._cycles += 1
            if self._cycles >= inp.cycles_per_run:
                workflow.continue_as_new(inp)
            try:
                await workflow.wait_condition(lambda: self._wake, timeout=inp.interval)
            except asyncio.TimeoutError:
                pass
