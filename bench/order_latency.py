"""Payment callback -> Mahak holds the order: latency, throughput and CPU per order.

    .venv/bin/python -m bench.order_latency [--rate 20] [--seconds 30] [--server memory|disk|both] [--quick]

Starts every part as its own OS process, the way the dev stack runs them: a throw-away
embedded PostgreSQL, the Mahak simulator (`mahak-sync simulator`), a Temporal dev server
(in memory, or on disk with `--db-filename` as the dev stack runs it), the worker
(`python worker.py`) and the payment webhook (`mahak-sync webhook`). Then, per server:
  orders    `--rate` signed payment callbacks a second for `--seconds` (a fixed arrival
            rate, not one after another), each for a new order of a new customer (1-3
            lines), posted to the real webhook. Latency runs from the moment the callback is
            posted to the moment the simulator stored the order (its control API's
            `received_at`); achieved rate is orders stored over the span from the first
            callback to the last order stored. CPU per order is the worker's and the Temporal
            server's CPU time (/proc/<pid>/stat, user + system) from the first callback
            until every order is marked synced in the shop, divided by the orders. History
            events per order are counted on a sample of the finished workflows.
  floor     the same arrival rate of `bench.order_floor`'s workflow (started by the client
            directly, no webhook): the same activities, regular and local in the same order
            as the order's recorded history, each doing nothing. Its latency runs from the
            start request to the activity standing for the send. What Temporal and the SDK
            cost on this machine with no work at all: the order path cannot go below it.
  poller    the original plan's peer: a job polling paid orders once a minute. Computed, not
            run: with callbacks arriving independently of the poll's phase an order waits
            U(0, 60 s) for the next poll, so p50 30 s, p95 57 s, p99 59.4 s (plus the send).
A few orders (and floor workflows) run first, unmeasured, so imports, logins and caches are
warm. `--quick` (2 s at 5 a second, in-memory server only) is the smoke test's mode.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from bench.order_floor import FLOOR_WORKFLOW
from mahak_simulator.control import SimControl
from mahak_sync.temporal import DevServer
from mahak_sync.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from shopdb import orders as shop_orders
from shopdb.embedded import EmbeddedPostgres, quote_ident, with_database
from shopdb.models import NewCustomer, NewOrder, NewOrderLine

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
TASK_QUEUE = "mahak-sync"
FLOOR_QUEUE = "order-latency-floor"
WARMUP = 5
HISTORY_SAMPLE = 5
CLK_TCK = os.sysconf("SC_CLK_TCK")
POLL_SECONDS = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile (exact on small samples)."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))]


class Proc:
    """A child process, its output in `log`."""

    def __init__(self, name: str, cmd: list[str], log: Path, env: dict[str, str]) -> None:
        self.name, self.log = name, log
        self._out = log.open("ab")
        self.proc = subprocess.Popen(
            cmd, cwd=REPO, env=env, stdout=self._out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    async def wait_for(self, text: str, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: no {text!r}:\n{self.output()[-3000:]}")
            await asyncio.sleep(0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._out.close()


@dataclass
class Figures:
    label: str
    sent: int = 0
    latencies: list[float] = field(default_factory=list)
    span: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)  # process -> CPU seconds per item
    history_events: float = 0.0
    shape: str = ""
    reposts: int = 0

    @property
    def achieved(self) -> float:
        return len(self.latencies) / self.span if self.span else 0.0

    def line(self) -> str:
        if not self.latencies:
            return f"  {self.label:<7} nothing finished ({self.sent} sent)"
        lat = self.latencies
        cpu = "  ".join(f"{k} {v * 1000:5.1f} ms" for k, v in self.cpu.items())
        return (
            f"  {self.label:<7} p50 {pct(lat, 50) * 1000:7.1f} ms  p95 {pct(lat, 95) * 1000:7.1f} ms"
            f"  p99 {pct(lat, 99) * 1000:7.1f} ms  max {max(lat) * 1000:7.1f} ms  "
            f"{len(lat)}/{self.sent} done, {self.achieved:5.1f}/s  CPU per item: {cpu}"
            + (f"  ({self.reposts} callbacks posted again)" if self.reposts else "")
        )


class Bench:
    def __init__(self, root: Path, pg_dsn: str, args: argparse.Namespace) -> None:
        self.root, self.pg_dsn, self.args = root, pg_dsn, args
        self.logs = root / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.secret = "whsec-" + secrets.token_hex(16)
        self.sim_password = "pw-" + secrets.token_hex(8)
        self.sim_port = free_port()
        self.http = httpx.AsyncClient(
            timeout=60, limits=httpx.Limits(max_connections=400, max_keepalive_connections=400)
        )
        self.rng = random.Random(7)
        self.details: list[int] = []
        self.store_id = 0
        self.runs = 0
        self.reposts = 0  # callbacks posted again (not taken the first time)

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(
            ("MAHAK_", "TEMPORAL_", "DATABASE_", "WEBHOOK_", "ORDER_", "INCOMING_", "LOG_"))}  # fmt: skip
        env.update(
            MAHAK_BASE_URL=f"http://127.0.0.1:{self.sim_port}/API/v3",
            MAHAK_USERNAME="shop",
            MAHAK_PASSWORD=self.sim_password,
            MAHAK_DATABASE_ID="1234567",
            MAHAK_PACKAGE_NO="7654321",
            WEBHOOK_SECRET=self.secret,
            TEMPORAL_TASK_QUEUE=TASK_QUEUE,
            LOG_FORMAT="json",
            PYTHONUNBUFFERED="1",
        )
        env.update(extra)
        return env

    async def start_simulator(self) -> Proc:
        cli = "import sys; from mahak_sync.cli import main; sys.exit(main(sys.argv[1:]))"
        cmd = [PY, "-c", cli, "simulator", "--port", str(self.sim_port)]
        sim = Proc("simulator", [*cmd, "--password", self.sim_password], self.logs / "sim.log",
                   self.env())  # fmt: skip
        control = SimControl(f"http://127.0.0.1:{self.sim_port}")
        deadline = time.monotonic() + 60
        while True:
            try:
                stores = (await control.seed(1, stock=0, people=1)).stores
                break
            except httpx.HTTPError:
                if sim.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"simulator down:\n{sim.output()[-2000:]}") from None
                await asyncio.sleep(0.2)
        self.store_id = stores[0]
        self.details = list(
            (await control.seed(6, stock=10_000_000, people=0, stores=0)).product_details
        )
        self.control = control
        return sim

    async def new_orders(self, db: asyncpg.Connection, n: int) -> list[tuple[int, Decimal, int]]:
        out = []
        for _ in range(n):
            tag = secrets.token_hex(4)
            customer = await shop_orders.create_customer(
                db, NewCustomer(first_name=f"F{tag}", last_name=f"L{tag}", mobile="09120000000")
            )
            chosen = self.rng.sample(self.details, self.rng.randint(1, 3))
            order = await shop_orders.create_order(
                db,
                NewOrder(
                    customer_id=customer.id,
                    lines=[
                        NewOrderLine(
                            product_detail_id=d,
                            store_id=self.store_id,
                            quantity=Decimal(self.rng.randint(1, 3)),
                            unit_price=Decimal(self.rng.randrange(10_000, 500_000, 1000)),
                        )
                        for d in chosen
                    ],
                    shipping_address=f"Street {tag}",
                    shipping_phone="02100000000",
                ),
            )
            out.append((order.id, order.amount, order.order_client_id))
        return out

    async def pay(self, url: str, order_id: int, amount: Decimal) -> float:
        body = json.dumps(
            {"order_id": order_id, "amount": str(amount), "payment_ref": f"PAY-{order_id}"}
        ).encode()
        ts = int(time.time())
        headers = {
            TIMESTAMP_HEADER: str(ts),
            SIGNATURE_HEADER: sign(self.secret, ts, body),
            "content-type": "application/json",
        }
        sent = time.time()
        # As a gateway does, a callback not taken (5xx, connection dropped under load) is
        # posted again; latency still counts from the first post.
        for _ in range(30):
            try:
                response = await self.http.post(url, content=body, headers=headers)
                if response.status_code == 202:
                    return sent
                if response.status_code < 500:
                    raise RuntimeError(f"callback for order {order_id}: {response.status_code}")
            except httpx.HTTPError:
                pass
            self.reposts += 1
            await asyncio.sleep(1)
        raise RuntimeError(f"callback for order {order_id} never taken")

    async def at_rate(self, n: int, fire: Any) -> list[Any]:
        """`fire(i)` for i < n at `--rate` a second (a fixed schedule, not back to back)."""
        start = time.monotonic() + 0.05
        tasks = []
        for i in range(n):
            await asyncio.sleep(max(0.0, start + i / self.args.rate - time.monotonic()))
            tasks.append(asyncio.create_task(fire(i)))
        return await asyncio.gather(*tasks)

    async def received(self, client_ids: set[int], timeout: float) -> dict[int, float]:
        deadline = time.monotonic() + timeout
        while True:
            got = {
                o.order_client_id: o.received_at
                for o in await self.control.orders()
                if o.order_client_id in client_ids and o.received_at is not None
            }
            if len(got) == len(client_ids) or time.monotonic() > deadline:
                return got
            await asyncio.sleep(0.25)

    async def run_server(self, mode: str) -> tuple[Figures, Figures]:
        port = free_port()
        dev = DevServer(
            port=port,
            headless=True,
            db_filename=self.root / f"temporal-{uuid.uuid4().hex[:6]}.db" if mode == "disk" else None,
        )  # fmt: skip
        procs: list[Proc] = [Proc("temporal", dev.command(), self.logs / f"temporal-{mode}.log",
                                  dict(os.environ))]  # fmt: skip
        temporal = procs[0]
        try:
            address = f"127.0.0.1:{port}"
            client = await self._connect(address, temporal)
            database = f"order_bench_{mode}_{uuid.uuid4().hex[:6]}"
            admin = await asyncpg.connect(self.pg_dsn)
            await admin.execute(f"CREATE DATABASE {quote_ident(database)}")
            await admin.close()
            dsn = with_database(self.pg_dsn, database)
            env = self.env(TEMPORAL_ADDRESS=address, DATABASE_URL=dsn)
            worker = Proc("worker", [PY, "worker.py"], self.logs / f"worker-{mode}.log", env)
            procs.append(worker)
            await worker.wait_for('"worker_started"')
            hook_port = free_port()
            cli = "import sys; from mahak_sync.cli import main; sys.exit(main(sys.argv[1:]))"
            hook = Proc("webhook", [PY, "-c", cli, "webhook", "--port", str(hook_port)],
                        self.logs / f"webhook-{mode}.log", env)  # fmt: skip
            procs.append(hook)
            await self._healthy(f"http://127.0.0.1:{hook_port}/healthz", hook)
            floor_worker = Proc("floor", [PY, "-m", "bench.order_floor", "--address", address,
                                          "--task-queue", FLOOR_QUEUE],
                                self.logs / f"floor-{mode}.log", env)  # fmt: skip
            procs.append(floor_worker)
            await floor_worker.wait_for("ready")
            url = f"http://127.0.0.1:{hook_port}/payments/callback"
            db = await asyncpg.connect(dsn)
            try:
                orders = await self._orders_run(client, db, url, worker, temporal)
            finally:
                await db.close()
            floor = await self._floor_run(client, orders.shape, floor_worker, temporal)
            return orders, floor
        finally:
            for p in reversed(procs):
                p.stop()

    async def _connect(self, address: str, temporal: Proc) -> Client:
        deadline = time.monotonic() + 90
        while True:
            try:
                client = await Client.connect(address)
                await client.count_workflows()
                return client
            except Exception:
                if temporal.proc.poll() is not None or time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.3)

    async def _healthy(self, url: str, proc: Proc) -> None:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if (await self.http.get(url)).status_code == 200:
                    return
            if proc.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{proc.name} not healthy:\n{proc.output()[-2000:]}")
            await asyncio.sleep(0.2)

    async def _orders_run(
        self, client: Client, db: asyncpg.Connection, url: str, worker: Proc, temporal: Proc
    ) -> Figures:
        n = int(self.args.rate * self.args.seconds)
        # Order ids (hence Mahak client ids) unlike those of an earlier server's run: the
        # simulator is shared and knows those orders already.
        self.runs += 1
        await db.execute("SELECT setval('shop_orders_id_seq', $1)", self.runs * 10_000_000)
        warm = await self.new_orders(db, WARMUP)
        for order_id, amount, _ in warm:
            await self.pay(url, order_id, amount)
        await self.received({c for _, _, c in warm}, timeout=120)
        await self._synced(db, [o for o, _, _ in warm], timeout=120)
        batch = await self.new_orders(db, n)
        figures = Figures("orders", sent=n)
        self.reposts = 0
        before = {p.name: cpu_seconds(p.pid) for p in (worker, temporal)}
        sent = await self.at_rate(n, lambda i: self.pay(url, batch[i][0], batch[i][1]))
        by_client = {c: sent[i] for i, (_, _, c) in enumerate(batch)}
        got = await self.received(set(by_client), timeout=self.args.seconds + 180)
        await self._synced(db, [o for o, _, _ in batch], timeout=120)
        after = {p.name: cpu_seconds(p.pid) for p in (worker, temporal)}
        figures.latencies = [got[c] - by_client[c] for c in got]
        if got:
            figures.span = max(got.values()) - min(sent)
        figures.cpu = {k: (after[k] - before[k]) / n for k in before}
        figures.reposts = self.reposts
        events, shapes = [], []
        for order_id, _, _ in batch[:HISTORY_SAMPLE]:
            history = await client.get_workflow_handle(f"order-sync-{order_id}").fetch_history()
            events.append(len(history.events))
            shapes.append(_shape(history.events))
        figures.history_events = sum(events) / len(events)
        figures.shape = max(set(shapes), key=shapes.count)
        return figures

    async def _synced(self, db: asyncpg.Connection, ids: list[int], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            waiting = await db.fetchval(
                "SELECT count(*) FROM shop_orders WHERE id = ANY($1::bigint[]) "
                "AND sync_status <> 'synced'",
                ids,
            )
            if waiting == 0:
                return
            await asyncio.sleep(0.25)

    async def _floor_run(
        self, client: Client, shape: str, floor_worker: Proc, temporal: Proc
    ) -> Figures:
        n = int(self.args.rate * self.args.seconds)
        run = uuid.uuid4().hex[:6]

        async def one(i: int, prefix: str) -> tuple[float, float]:
            started = time.time()
            handle = await client.start_workflow(
                FLOOR_WORKFLOW, shape, id=f"floor-{run}-{prefix}{i}", task_queue=FLOOR_QUEUE
            )
            return started, await handle.result()

        for i in range(WARMUP):
            await one(i, "warm")
        figures = Figures("floor", sent=n, shape=shape)
        before = {p.name: cpu_seconds(p.pid) for p in (floor_worker, temporal)}
        results = await self.at_rate(n, lambda i: one(i, "m"))
        after = {p.name: cpu_seconds(p.pid) for p in (floor_worker, temporal)}
        figures.latencies = [at - started for started, at in results]
        figures.span = max(at for _, at in results) - min(s for s, _ in results)
        figures.cpu = {
            ("worker" if k == "floor" else k): (after[k] - before[k]) / n for k in before
        }
        history = await client.get_workflow_handle(f"floor-{run}-m0").fetch_history()
        figures.history_events = len(history.events)
        return figures


def _shape(events: Any) -> str:
    """The order's activities in history order: `L` local, `R` regular, `S` the send."""
    out = []
    for ev in events:
        if ev.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            name = ev.activity_task_scheduled_event_attributes.activity_type.name
            out.append("S" if name == "order.send" else "R")
        elif ev.event_type == EventType.EVENT_TYPE_MARKER_RECORDED:
            if ev.marker_recorded_event_attributes.marker_name == "core_local_activity":
                out.append("L")
    return "".join(out)


def report(mode: str, orders: Figures, floor: Figures, args: argparse.Namespace) -> None:
    print(f"\n{mode} Temporal server, {args.rate:g} callbacks/s for {args.seconds:g} s:")
    print(orders.line())
    print(floor.line())
    poll = [POLL_SECONDS * q for q in (0.5, 0.95, 0.99)]
    print(
        f"  poller  p50 {poll[0] * 1000:7.0f} ms  p95 {poll[1] * 1000:7.0f} ms  "
        f"p99 {poll[2] * 1000:7.0f} ms  (computed: a poll every {POLL_SECONDS:.0f} s)"
    )
    print(
        f"  history events per order {orders.history_events:.1f} (floor "
        f"{floor.history_events:.0f}); activities in order: {orders.shape} "
        f"(L local, R regular, S the send)"
    )
    if orders.latencies and floor.latencies:
        o50, f50 = pct(orders.latencies, 50), pct(floor.latencies, 50)
        o99, f99 = pct(orders.latencies, 99), pct(floor.latencies, 99)
        print(
            f"  ratios: p50 {o50 / f50:.1f} x floor, p99 {o99 / f99:.1f} x floor; "
            f"worker CPU {orders.cpu['worker'] / max(floor.cpu['worker'], 1e-9):.1f} x floor, "
            f"server CPU {orders.cpu['temporal'] / max(floor.cpu['temporal'], 1e-9):.1f} x floor; "
            f"poller p50 {poll[0] / o50:,.1f} x orders p50; "
            f"achieved {orders.achieved / args.rate:.2f} x the arrival rate"
        )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=20.0, help="callbacks a second")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--server", choices=("memory", "disk", "both"), default="both")
    parser.add_argument("--quick", action="store_true", help="2 s at 5/s, in-memory only")
    parser.add_argument("--keep", action="store_true", help="keep the logs directory")
    args = parser.parse_args()
    if args.quick:
        args.rate, args.seconds, args.server = 5.0, 2.0, "memory"
    modes = ["memory", "disk"] if args.server == "both" else [args.server]

    base = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    root = Path(tempfile.mkdtemp(prefix="mahak-order-bench-", dir=base))
    pg = EmbeddedPostgres(root / "pgdata", delete_on_stop=True)
    bench: Bench | None = None
    sim: Proc | None = None
    try:
        bench = Bench(root, await asyncio.to_thread(pg.start), args)
        sim = await bench.start_simulator()
        print(
            f"order latency: {args.rate:g} callbacks/s for {args.seconds:g} s "
            f"({int(args.rate * args.seconds)} orders), {os.cpu_count()} CPUs"
        )
        for mode in modes:
            orders, floor = await bench.run_server(mode)
            report(mode, orders, floor, args)
    finally:
        if sim is not None:
            sim.stop()
        if bench is not None:
            await bench.http.aclose()
        await asyncio.to_thread(pg.stop)
        if args.keep:
            print(f"logs: {root / 'logs'}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
