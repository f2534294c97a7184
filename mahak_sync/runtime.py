"""Everything a worker process needs, built from one `Settings`: the Temporal client, the shop
database, the Mahak client, the activities (clients injected) and the worker itself.

`worker.py` (the deployment's entry point), the dev stack and the tests build their workers
here, so what runs in production is what is tested.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import asyncpg
import httpx
from starlette.applications import Starlette
from temporalio.client import Client
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities.incoming import IncomingActivities
from activities.order_sweep import OrderSweepActivities
from activities.orders import OrderActivities
from activities.payments import PaymentActivities
from mahak_client.client import MahakClient
from mahak_sync.config import Settings, get_settings
from mahak_sync.errors import ErrorClassifier
from mahak_sync.health import (
    cycle_age_probe,
    health_app,
    polling_probe,
    postgres_probe,
    serving,
    temporal_probe,
)
from mahak_sync.logging import configure_logging, get_logger, register_secret
from mahak_sync.metrics import collect_state_forever, mahak_observer, process_meter
from mahak_sync.startup import (
    EXIT_CONFIG,
    StartupAborted,
    describe_error,
    postgres_is_starting,
    temporal_is_starting,
    temporal_refused_tls,
    wait_for,
)
from mahak_sync.temporal import (
    CONNECT_TIMEOUT_SECONDS,
    SearchAttributesMissing,
    connect_namespace,
    verify_search_attributes,
)
from shopdb.pool import open_database
from workflows.incoming_sync import IncomingSyncWorkflow
from workflows.order_sweep import OrderSweepWorkflow
from workflows.order_sync import OrderSyncWorkflow

log = get_logger(__name__)

# Every workflow type this service runs (the replay test replays histories against these).
WORKFLOWS: list[type] = [IncomingSyncWorkflow, OrderSyncWorkflow, OrderSweepWorkflow]
# Every worker, tests' included, classifies activity errors by the one table.
INTERCEPTORS = [ErrorClassifier()]
# The sandbox imports a workflow's module afresh for every workflow it runs (~10 ms of CPU
# per order on a 2-core box, issue 16). The `workflows` package is passed through instead:
# its modules hold constants only (no state a run could change) and import, at import time,
# nothing but temporalio, pydantic and modules already passed through by their
# `imports_passed_through()` blocks. The sandbox's other checks stay. A passed-through module
# is not proxied, so a non-deterministic call written in it is not refused here: the replay
# tests (`tests/test_replay.py`, default sandbox) and the workflow tests (their own workers,
# default sandbox) keep refusing it.
SANDBOX = SandboxedWorkflowRunner(
    restrictions=SandboxRestrictions.default.with_passthrough_modules("workflows")
)


def build_worker(
    client: Client,
    settings: Settings,
    *,
    pool: asyncpg.Pool,
    mahak: MahakClient,
    gateway: httpx.AsyncClient,
) -> Worker:
    """The one list of what this service runs; tests build their workers here too."""
    incoming = IncomingActivities(pool, mahak, settings)
    orders = OrderActivities(pool, mahak, settings)
    payments = PaymentActivities(pool, gateway, settings.payment_gateway_url)
    sweep = OrderSweepActivities(pool, client, settings)
    return Worker(
        client,
        task_queue=settings.temporal_task_queue,
        # On shutdown, give a running page time to commit before activities are cancelled
        # (a cancelled page rolls back whole, so this only saves repeating it).
        graceful_shutdown_timeout=timedelta(seconds=30),
        workflows=WORKFLOWS,
        workflow_runner=SANDBOX,
        interceptors=INTERCEPTORS,
        activities=[
            *incoming.all(),
            *orders.all(),
            *payments.all(),
            *sweep.all(),
        ],
    )


def worker_health_app(
    settings: Settings, client: Client, pool: asyncpg.Pool, worker: Worker
) -> Starlette:
    """The worker's `/healthz` and `/readyz` (`mahak_sync.health`)."""
    started_at = datetime.now(UTC)
    return health_app(
        [
            postgres_probe(pool),
            temporal_probe(client),
            polling_probe(lambda: worker.is_running, settings.temporal_task_queue),
            cycle_age_probe(pool, settings, started_at),
        ]
    )


async def run_worker(settings: Settings, *, stop: asyncio.Event | None = None) -> None:
    """Run until `stop` is set (or the process is told to stop).

    Temporal and the shop database need not be up yet: each is waited for with backoff (one
    log line per failed try); `stop` set meanwhile returns quietly. Raises
    `SearchAttributesMissing` (before polling anything) when the namespace lacks the
    workflows' search attributes and they cannot be registered from here.
    """
    log = get_logger(__name__)  # bound now: the module's was bound before configure_logging
    stop = stop or asyncio.Event()
    backoff = {"maximum": settings.startup_retry_max_seconds, "stop": stop}
    try:
        async with contextlib.AsyncExitStack() as stack:
            client = await wait_for(
                "temporal",
                lambda: connect_namespace(settings),
                retry_if=temporal_is_starting,
                attempt_timeout=CONNECT_TIMEOUT_SECONDS,
                **backoff,
            )
            await verify_search_attributes(client, client.namespace)
            # Migrations (MIGRATE_ON_START) run inside each try: a database that drops mid-way
            # is waited for again, and applied migrations are never repeated.
            pool = await wait_for(
                "postgresql",
                lambda: stack.enter_async_context(open_database(settings, create=True)),
                retry_if=postgres_is_starting,
                **backoff,
            )
            mahak = await stack.enter_async_context(
                MahakClient.from_settings(settings, observe=mahak_observer(settings))
            )
            gateway = await stack.enter_async_context(httpx.AsyncClient(timeout=30.0))
            worker = build_worker(client, settings, pool=pool, mahak=mahak, gateway=gateway)
            if settings.health_port is not None:
                await stack.enter_async_context(
                    serving(worker_health_app(settings, client, pool, worker), settings.health_port)
                )
            if settings.metrics_address:
                collector = asyncio.create_task(
                    collect_state_forever(pool, process_meter(settings))
                )
                stack.callback(collector.cancel)
            async with worker:
                log.info(
                    "worker_started",
                    task_queue=settings.temporal_task_queue,
                    namespace=client.namespace,
                )
                await stop.wait()
                log.info("worker_stopping")
    except StartupAborted as exc:
        log.info("worker_stopped_before_start", waiting_for=exc.dependency)


async def main() -> int:
    """The worker process: settings from the environment, run until SIGINT/SIGTERM."""
    settings = get_settings()
    configure_logging(settings.log_format, settings.log_level)
    register_secret(settings.mahak_password.get_secret_value())
    if settings.database_url is not None:
        register_secret(urlsplit(settings.database_url.get_secret_value()).password)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await run_worker(settings, stop=stop)
    except SearchAttributesMissing as exc:
        get_logger(__name__).error(
            "worker_not_started",
            reason="search_attributes_missing",
            namespace=exc.namespace,
            problems=exc.problems,
            commands=exc.commands,
        )
        print(exc, file=sys.stderr)  # the commands, copy-pasteable whatever LOG_FORMAT is
        return EXIT_CONFIG
    except RuntimeError as exc:
        if not temporal_refused_tls(exc):
            raise
        get_logger(__name__).error("worker_not_started", reason="temporal_tls", error=str(exc))
        print(
            f"error: the TLS connection to Temporal failed ({describe_error(exc)}): check "
            "TEMPORAL_TLS_SERVER_CA_CERT_PATH and the client certificate",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    return 0
