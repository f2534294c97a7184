"""Heartbeats for activities that wait on slow Mahak calls.

A heartbeat timeout is what lets Temporal notice a dead worker within seconds instead of the
(minutes long) start-to-close timeout; but one slow request must not look like a dead worker.
So while the block runs, the last reported details go out again every third of the
activity's heartbeat timeout, whatever that timeout is set to.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from temporalio import activity


class Heartbeat:
    """`async with Heartbeat() as beat:` repeats `beat.report(...)`'s details (none until the
    first report) while the block runs; without a heartbeat timeout it only reports."""

    def __init__(self, *details: Any) -> None:
        self._details = details
        self._task: asyncio.Task[None] | None = None

    @property
    def details(self) -> tuple[Any, ...]:
        """The details last reported (to carry into an error for the workflow)."""
        return self._details

    def report(self, *details: Any) -> None:
        self._details = details
        activity.heartbeat(*details)

    async def _repeat(self, every: float) -> None:
        while True:
            await asyncio.sleep(every)
            activity.heartbeat(*self._details)

    async def __aenter__(self) -> Heartbeat:
        timeout = activity.info().heartbeat_timeout
        if timeout:
            self._task = asyncio.create_task(self._repeat(max(timeout.total_seconds() / 3, 0.2)))
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
