"""`/healthz` (the process answers) and `/readyz` (it can do its work), as JSON naming each check.

Readiness of the worker: PostgreSQL answers, Temporal answers, the worker is polling its task
queue, and the last incoming cycle finished within `READY_MAX_CYCLE_AGE_INTERVALS` intervals
(counted from the worker's start while none has run yet). The webhook checks the first two.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta

import asyncpg
import uvicorn
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from temporalio.api.workflowservice.v1 import GetSystemInfoRequest
from temporalio.client import Client

from .config import Settings
from .startup import describe_error

CHECK_TIMEOUT = timedelta(seconds=5)


class Check(BaseModel):
    name: str
    ok: bool
    detail: str = ""


Probe = Callable[[], Awaitable[Check]]


async def _timed(name: str, probe: Callable[[], Awaitable[str]]) -> Check:
    try:
        detail = await asyncio.wait_for(probe(), CHECK_TIMEOUT.total_seconds())
    except Exception as exc:  # noqa: BLE001 - every failure is the check's answer
        return Check(name=name, ok=False, detail=describe_error(exc))
    return Check(name=name, ok=True, detail=detail)


def postgres_probe(pool: asyncpg.Pool) -> Probe:
    async def probe() -> str:
        await pool.fetchval("SELECT 1")
        return "answers"

    return lambda: _timed("postgresql", probe)


def temporal_probe(client: Client) -> Probe:
    async def probe() -> str:
        await client.workflow_service.get_system_info(GetSystemInfoRequest(), timeout=CHECK_TIMEOUT)
        return f"answers ({client.service_client.config.target_host})"

    return lambda: _timed("temporal", probe)


def polling_probe(is_running: Callable[[], bool], task_queue: str) -> Probe:
    async def probe() -> Check:
        running = is_running()
        detail = f"polling {task_queue}" if running else f"not polling {task_queue}"
        return Check(name="worker", ok=running, detail=detail)

    return probe


def cycle_age_probe(pool: asyncpg.Pool, settings: Settings, started_at: datetime) -> Probe:
    limit = timedelta(
        seconds=settings.incoming_sync_interval_seconds * settings.ready_max_cycle_age_intervals
    )

    async def probe() -> str:
        last = await pool.fetchval("SELECT max(finished_at) FROM mahak_sync_log")
        since = last or started_at
        age = datetime.now(UTC) - since
        what = (
            f"last cycle finished {age.total_seconds():.0f} s ago"
            if last
            else (f"no cycle yet, started {age.total_seconds():.0f} s ago")
        )
        if age > limit:
            raise RuntimeError(f"{what}, more than {limit.total_seconds():.0f} s")
        return what

    return lambda: _timed("incoming_cycle", probe)


async def ready_response(probes: list[Probe]) -> JSONResponse:
    """200 with every check when all pass, else 503 naming the failing ones too."""
    checks = await asyncio.gather(*(probe() for probe in probes))
    ready = all(check.ok for check in checks)
    return JSONResponse(
        {
            "status": "ready" if ready else "not ready",
            "checks": [check.model_dump() for check in checks],
        },
        status_code=200 if ready else 503,
    )


def health_app(probes: list[Probe]) -> Starlette:
    async def healthz(_: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def readyz(_: Request) -> JSONResponse:
        return await ready_response(probes)

    return Starlette(routes=[Route("/healthz", healthz), Route("/readyz", readyz)])


class _QuietServer(uvicorn.Server):
    """uvicorn that leaves signals to its host process (the worker drains on SIGTERM)."""

    @contextlib.contextmanager
    def capture_signals(self):  # type: ignore[no-untyped-def]
        yield


@contextlib.asynccontextmanager
async def serving(app: Starlette, port: int, host: str = "0.0.0.0") -> AsyncIterator[None]:
    """Serve `app` on `port` while the block runs."""
    server = _QuietServer(
        uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False)
    )
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()  # the port is taken, say: raise it
            await asyncio.sleep(0.02)
        yield
    finally:
        server.should_exit = True
        await task
