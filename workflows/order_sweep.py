"""`OrderSweepWorkflow` (id `mahak-order-sweep`): the safety net under the payment callback.

Every interval (default one minute, ±20 % random jitter) it examines the next page of paid
orders Mahak does not hold yet and starts, or attaches to, the sync of each one with none in
flight, so an order whose callback was lost, or whose start failed after it was marked paid,
still reaches Mahak. An order whose compensation began is never started again.

Paging is fair: the workflow keeps a keyset cursor, the `(paid_at, id)` of the last order
examined, and each sweep reads the page after it, wrapping to the oldest order at the end. So
every unsynced paid order is examined within ceil(N / batch_limit) sweeps however many older
ones sit in flight (orders parked in dispute for days do not starve newer ones). The history
stays small: the workflow continues as new every `cycles_per_run` cycles, carrying the cursor.

Runs recorded before paging (no `PAGED_SWEEP_PATCH` marker) replay the old decisions: the
legacy `order.sweep` activity (first page only) and an unjittered interval.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.order_sweep import OrderSweepActivities
    from workflows.sweep_types import (
        OrderSweepInput,
        OrderSweepStatus,
        SweepCursor,
        SweepPage,
        SweepPageRequest,
    )

# Marks runs that page with a cursor and jitter their interval.
PAGED_SWEEP_PATCH = "order-sweep-keyset-paging-jitter"


def jittered(interval: timedelta, jitter: float, draw: float) -> timedelta:
    """`interval` scaled by a factor in [1 - jitter, 1 + jitter); `draw` is uniform in [0, 1)."""
    return interval * (1 + jitter * (2 * draw - 1))


@workflow.defn(name="OrderSweepWorkflow")
class OrderSweepWorkflow:
    def __init__(self) -> None:
        self._cycles = 0
        self._last: list[int] = []
        self._wake = False
        self._cursor: SweepCursor | None = None
        self._page = SweepPage()

    @workflow.signal
    def sweep_now(self) -> None:
        self._wake = True

    @workflow.query
    def status(self) -> OrderSweepStatus:
        return OrderSweepStatus(
            cycles=self._cycles,
            last_started=self._last,
            cursor=self._cursor,
            examined=self._page.examined,
            in_flight=self._page.in_flight,
            wrapped=self._page.wrapped,
        )

    @workflow.run
    async def run(self, inp: OrderSweepInput) -> None:
        self._cursor = inp.cursor
        paged = workflow.patched(PAGED_SWEEP_PATCH)
        while True:
            self._wake = False
            if paged:
                await self._sweep_page(inp.batch_limit)
            else:
                await self._sweep_first_page(inp.batch_limit)
            self._cycles += 1
            if self._cycles >= inp.cycles_per_run:
                workflow.continue_as_new(
                    inp.model_copy(update={"cursor": self._cursor}) if paged else inp
                )
            wait = (
                jittered(inp.interval, inp.jitter, workflow.random().random())
                if paged
                else inp.interval
            )
            try:
                await workflow.wait_condition(lambda: self._wake, timeout=wait)
            except TimeoutError:
                pass

    async def _sweep_page(self, limit: int) -> None:
        try:
            page = await workflow.execute_activity_method(
                OrderSweepActivities.sweep_page,
                SweepPageRequest(after=self._cursor, limit=limit),
                start_to_close_timeout=timedelta(minutes=5),
                retry_policy=RetryPolicy(maximum_attempts=3),
            )
        except ActivityError as err:
            # A failed sweep is simply the next one's work; the safety net never stops.
            workflow.logger.warning("order sweep failed: %s", err.cause or err)
            page = SweepPage(cursor=self._cursor)
        self._page = page
        self._last = page.started
        self._cursor = page.cursor

    async def _sweep_first_page(self, limit: int) -> None:
        """Before `PAGED_SWEEP_PATCH`: the oldest `limit` orders every time."""
        try:
            self._last = await workflow.execute_activity_method(
                OrderSweepActivities.sweep,
                limit,
                start_to_close_timeout=timedelta(minutes=5),
                retry_policy=RetryPolicy(maximum_attempts=3),
            )
        except ActivityError as err:
            workflow.logger.warning("order sweep failed: %s", err.cause or err)
            self._last = []
