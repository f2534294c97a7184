"""The whole system on one machine with nothing pre-installed: `mahak-sync dev`.

Brings up, in order: PostgreSQL (embedded, unless `DATABASE_URL`), Temporal dev server with
Web UI (bundled CLI, unless `TEMPORAL_ADDRESS`), the Mahak simulator (unless real Mahak
credentials are configured), the worker, the payment webhook, and starts the incoming sync
and the order sweep. When everything answers it writes a JSON ready file other tools (and
tests) can wait on. Usable in-process as an async context manager.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from pydantic import SecretStr

from mahak_sync.config import Settings
from mahak_sync.logging import get_logger, register_secret

log = get_logger(__name__)


@dataclass
class DevOptions:
    temporal_port: int = 7233
    ui_port: int = 8233
    webhook_port: int = 8080
    simulator_port: int = 9000
    seed_products: int = 50
    ready_file: Path | None = None


class _EmbeddedUvicorn(uvicorn.Server):
    """uvicorn that leaves signals to the dev stack: its own handler would re-raise SIGINT
    after serving and cut the other components' graceful shutdown short."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class DevStack:
    def __init__(self, settings: Settings, options: DevOptions | None = None) -> None:
        self.settings = settings
        self.options = options or DevOptions()
        self.data_dir = Path(settings.data_dir).resolve()
        self.ready_file = self.options.ready_file or self.data_dir / "dev-ready.json"
        self.info: dict[str, Any] = {}
        self._stack = contextlib.AsyncExitStack()
        self._tasks: list[asyncio.Task[Any]] = []
        # Ask the long-running tasks to finish before the servers under them go away.
        self._stoppers: list[Callable[[], None]] = []

    async def __aenter__(self) -> DevStack:
        try:
            await self._start()
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.ready_file.unlink(missing_ok=True)
        for stop in self._stoppers:
            stop()
        for task in reversed(self._tasks):
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, timeout=40)
        await self._stack.aclose()

    def _update(self, **values: Any) -> None:
        self.settings = self.settings.model_copy(update=values)

    async def _start(self) -> None:
        from mahak_simulator.config import SimulatorConfig
        from mahak_simulator.server import SimulatorServer
        from mahak_sync.launch import start_incoming, start_sweep
        from mahak_sync.runtime import run_worker
        from mahak_sync.temporal import DevServer, connect, free_port
        from mahak_sync.webhook import create_app
        from shopdb.embedded import start_embedded

        opts = self.options
        self.data_dir.mkdir(parents=True, exist_ok=True)

        if self.settings.database_url is None:
            embedded, dsn = await start_embedded(self.data_dir / "postgres")
            self._stack.push(lambda *_: embedded.stop())
            self._update(database_url=SecretStr(dsn))
            self.info["database"] = dsn
        else:
            self.info["database"] = "DATABASE_URL"

        if self.settings.temporal_address is None:
            server = DevServer(
                port=free_port(preferred=opts.temporal_port),
                ui_port=free_port(preferred=opts.ui_port),
                namespace=self.settings.temporal_namespace,
                db_filename=self.data_dir / "temporal.db",
            )
            await asyncio.to_thread(server.start)
            self._stack.push(lambda *_: server.stop())
            self._update(temporal_address=server.address)
            self.info["temporal_ui"] = server.ui_url
        self.info["temporal_address"] = self.settings.temporal_address

        if not self.settings.mahak_username:
            sim_config = SimulatorConfig(
                port=free_port(preferred=opts.simulator_port), seed_products=opts.seed_products
            )
            sim = SimulatorServer(sim_config)
            await asyncio.to_thread(sim.start)
            self._stack.push(lambda *_: sim.stop())
            self._update(
                mahak_base_url=sim.base_url,
                mahak_username=sim_config.username,
                mahak_password=sim_config.password,
                mahak_database_id=sim_config.database_id,
                mahak_package_no=sim_config.package_no,
                payment_gateway_url=self.settings.payment_gateway_url or f"{sim.root_url}/_gateway",
            )
            self.info["simulator"] = sim.root_url
        self.info["mahak_base_url"] = self.settings.mahak_base_url

        if not self.settings.webhook_secret.get_secret_value():
            secret_file = self.data_dir / "webhook-secret"
            if not secret_file.exists():
                secret_file.write_text(secrets.token_hex(24))
                os.chmod(secret_file, 0o600)
            self._update(webhook_secret=SecretStr(secret_file.read_text().strip()))
            self.info["webhook_secret_file"] = str(secret_file)
        register_secret(self.settings.webhook_secret.get_secret_value())

        stop_worker = asyncio.Event()
        self._stoppers.append(stop_worker.set)
        self._tasks.append(
            asyncio.create_task(run_worker(self.settings, stop=stop_worker), name="worker")
        )

        client = await connect(self.settings)
        webhook_port = free_port(preferred=opts.webhook_port)
        webhook = _EmbeddedUvicorn(
            uvicorn.Config(
                create_app(self.settings, client=client),
                host="127.0.0.1",
                port=webhook_port,
                log_level="warning",
                access_log=False,
            )
        )
        self._tasks.append(asyncio.create_task(webhook.serve(), name="webhook"))
        self._stoppers.append(lambda: setattr(webhook, "should_exit", True))
        self.info["webhook"] = f"http://127.0.0.1:{webhook_port}/payments/callback"

        await start_incoming(client, self.settings)
        await start_sweep(client, self.settings)
        while not webhook.started:
            if self._tasks[-1].done():
                self._tasks[-1].result()
            await asyncio.sleep(0.05)

        self.ready_file.write_text(json.dumps(self.info, indent=2))
        log.info("dev_stack_ready", **self.info)

    async def wait(self) -> None:
        """Until a component dies (its error propagates) or the caller is cancelled."""
        done, _ = await asyncio.wait(self._tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()
