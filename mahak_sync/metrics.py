"""Prometheus metrics: the Temporal SDK's own and the project's, from one endpoint per process.

The SDK exports through a `Runtime` built with a Prometheus address (`METRICS_ADDRESS`); the
project's instruments are created on the same runtime's meter, so one scrape gets both. In an
activity the activity's meter is used and in a workflow the workflow's (which skips replays),
so nothing is counted twice. With metrics off every instrument is a no-op.

Every project metric starts with `mahak_sync_`; `deploy/grafana/` and its test name them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

from temporalio import activity, workflow
from temporalio.common import MetricMeter
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from .config import Settings
from .logging import get_logger
from .startup import describe_error

log = get_logger(__name__)

_runtimes: dict[str, Runtime] = {}

# name -> (kind, description): the one list of the project's metrics.
METRICS: Mapping[str, tuple[str, str]] = {
    "mahak_sync_rows": (
        "counter",
        "incoming rows handled, by entity and result "
        "(inserted, updated, unchanged, deleted, dead_lettered)",
    ),
    "mahak_sync_cursor": ("gauge", "the stored RowVersion cursor, by entity"),
    "mahak_sync_incoming_cycle_seconds": ("histogram", "incoming cycle duration, by kind"),
    "mahak_sync_orders": ("counter", "order syncs finished, by outcome"),
    "mahak_sync_send_attempts": ("counter", "SaveAllData sends of orders, by result"),
    "mahak_sync_staff_tasks": ("counter", "staff notices raised, by kind"),
    "mahak_sync_mahak_requests": ("counter", "Mahak API requests, by endpoint and outcome"),
    "mahak_sync_mahak_request_seconds": ("histogram", "Mahak API request latency, by endpoint"),
    "mahak_sync_webhook_requests": ("counter", "payment callbacks, by result"),
    "mahak_sync_paid_orders": ("gauge", "paid orders by sync status (disputes open included)"),
    "mahak_sync_entity_lag_seconds": (
        "gauge",
        "seconds since each entity was last read from Mahak without error",
    ),
    "mahak_sync_dead_letters_open": ("gauge", "dead letters not resolved, by entity"),
}


def runtime_for(settings: Settings) -> Runtime | None:
    """The process's runtime exporting Prometheus metrics, or None (the SDK's default) when
    `METRICS_ADDRESS` is unset. Built once per address: a second bind would fail."""
    address = settings.metrics_address
    if not address:
        return None
    if address not in _runtimes:
        _runtimes[address] = Runtime(
            telemetry=TelemetryConfig(
                metrics=PrometheusConfig(bind_address=address, durations_as_seconds=True)
            )
        )
    return _runtimes[address]


def process_meter(settings: Settings) -> MetricMeter:
    """The meter of code outside activities and workflows (the webhook, the Mahak client)."""
    runtime = runtime_for(settings)
    return runtime.metric_meter if runtime is not None else MetricMeter.noop


def current_meter(fallback: MetricMeter = MetricMeter.noop) -> MetricMeter:
    """The running activity's or workflow's meter, else `fallback`."""
    if activity.in_activity():
        return activity.metric_meter()
    if workflow.in_workflow():
        return workflow.metric_meter()
    return fallback


def _described(name: str) -> str:
    return METRICS[name][1]


def count(name: str, value: int = 1, meter: MetricMeter | None = None, **labels: str) -> None:
    if value <= 0:
        return
    (meter or current_meter()).create_counter(name, _described(name)).add(value, labels)


def gauge(name: str, value: int, meter: MetricMeter | None = None, **labels: str) -> None:
    (meter or current_meter()).create_gauge(name, _described(name)).set(value, labels)


def observe_seconds(
    name: str, seconds: float, meter: MetricMeter | None = None, **labels: str
) -> None:
    instrument = (meter or current_meter()).create_histogram_timedelta(name, _described(name))
    instrument.record(timedelta(seconds=max(seconds, 0.0)), labels)


def mahak_observer(settings: Settings) -> Callable[[str, str, float], None]:
    """`MahakClient(observe=...)`: every request counted and timed, on the activity's meter
    when one runs (else the process's)."""
    fallback = process_meter(settings)

    def observe(endpoint: str, outcome: str, seconds: float) -> None:
        meter = current_meter(fallback)
        count("mahak_sync_mahak_requests", meter=meter, endpoint=endpoint, outcome=outcome)
        observe_seconds("mahak_sync_mahak_request_seconds", seconds, meter=meter, endpoint=endpoint)

    return observe


_PAID_ORDERS = (
    "SELECT sync_status, count(*) AS n FROM shop_orders WHERE payment_status = 'paid' GROUP BY 1"
)
_ENTITY_LAG = """
    SELECT entity, extract(epoch FROM now() - max(finished_at)) AS lag FROM mahak_sync_log
    WHERE error IS NULL AND finished_at IS NOT NULL AND entity <> 'inventory_conflicts'
    GROUP BY entity
"""
_DEAD_LETTERS = (
    "SELECT entity, count(*) AS n FROM mahak_dead_letters WHERE resolved_at IS NULL GROUP BY 1"
)
SYNC_STATUSES = ("pending", "sending", "retrying", "dispute", "synced", "cancelled", "failed")


async def collect_state(pool: Any, meter: MetricMeter) -> None:
    """Gauges of what the database holds (disputes open, entity lag, dead letters): taken by
    the worker every `STATE_EVERY_SECONDS`, as no single activity sees them."""
    counts = {r["sync_status"]: r["n"] for r in await pool.fetch(_PAID_ORDERS)}
    for status in sorted({*SYNC_STATUSES, *counts}):
        gauge("mahak_sync_paid_orders", counts.get(status, 0), meter=meter, status=status)
    for row in await pool.fetch(_ENTITY_LAG):
        gauge("mahak_sync_entity_lag_seconds", int(row["lag"]), meter=meter, entity=row["entity"])
    for row in await pool.fetch(_DEAD_LETTERS):
        gauge("mahak_sync_dead_letters_open", row["n"], meter=meter, entity=row["entity"])


STATE_EVERY_SECONDS = 30.0


async def collect_state_forever(
    pool: Any, meter: MetricMeter, every: float = STATE_EVERY_SECONDS
) -> None:
    while True:
        try:
            await collect_state(pool, meter)
        except Exception as exc:  # noqa: BLE001 - the database may be down: the next round retries
            log.warning("metrics.state_not_collected", error=describe_error(exc))
        await asyncio.sleep(every)
