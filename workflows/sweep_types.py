"""What the order sweep's workflow and activities exchange (`workflows.order_sweep`)."""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel, Field


class SweepCursor(BaseModel):
    """Where the sweep stopped: the last order examined (`paid_at` NULL sorts last)."""

    paid_at: datetime | None
    order_id: int


class OrderSweepInput(BaseModel):
    interval: timedelta = timedelta(minutes=1)
    batch_limit: int = Field(500, ge=1)
    cycles_per_run: int = Field(100, ge=1)
    # Each wait is `interval` ± this fraction, drawn deterministically (`workflow.random()`),
    # so deployments and restarts do not sweep in lockstep.
    jitter: float = Field(0.2, ge=0, lt=1)
    # Carried through continue-as-new; None: start with the oldest unsynced paid order.
    cursor: SweepCursor | None = None


class SweepPageRequest(BaseModel):
    after: SweepCursor | None = None
    limit: int = Field(ge=1)


class SweepPage(BaseModel):
    """One sweep's work, as the activity reports it (ids and counts only)."""

    started: list[int] = Field(default_factory=list)
    examined: int = 0
    in_flight: int = 0
    # The sweep reached the newest order and went on from the oldest.
    wrapped: bool = False
    # The last order examined; None when there was none.
    cursor: SweepCursor | None = None


class OrderSweepStatus(BaseModel):
    cycles: int
    last_started: list[int]
    # Where the next sweep goes on from (None: the oldest unsynced paid order).
    cursor: SweepCursor | None = None
    # Of the last sweep: orders examined, and of those skipped because their sync runs.
    examined: int = 0
    in_flight: int = 0
    wrapped: bool = False
