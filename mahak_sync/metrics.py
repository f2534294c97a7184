"""Prometheus metrics: the Temporal SDK's own and the project's, from one endpoint per process.

The SDK exports through a `Runtime` built with a Prometheus address (`METRICS_ADDRESS`); the
project's instruments are created on the same runtime's meter, so one scrape gets both. In an
activity the activity's meter is used and in a workflow the workflow's (which skips replays),
so nothing is counted twice. With metrics off every instrument is a no-op.

Every project metric starts with `mahak_sync_`; `deploy/grafana/` and its test name them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.common import MetricMeter
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from .config import Settings

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
