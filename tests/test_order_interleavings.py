"""Randomized interleavings of paid orders, Mahak faults, conflicts, operators and workers.

Every case is drawn from `random.Random(case_seed)`: 1-3 product details of its own (so cases
never compete with each other) with random stock in Mahak, 1-3 web orders of 1-3 lines over
them (so some orders do not fit), paid and started in a random order, and per order: faults on
its next SaveAllData calls (503, a connection dropped before or after Mahak processed the
request, a truncated or HTML answer, a refusal, latency; now and then on the saga's deletion
too), an `inventory_conflict` signal at a random stage, the shop cancelling the order at a
random stage (even between payment and the start of its sync), Mahak desktop importing it the
moment it lands, a duplicate payment callback, operator decisions for every dispute (resend /
cancel / mark_synced, the last only when Mahak really holds the whole order, as an operator
checks first), and now and then a worker restart (the production worker drained and started
again), a worker stall (its event loop blocked longer than the send's heartbeat timeout, as a
long GC pause or CPU starvation does) or, for a few cases, a SIGKILLed worker process. Stages are read from the shop
database and from what the simulator saw: `start`, `sending` (first send claimed), `in_mahak`
(Mahak processed a save of it), `retrying`, `dispute`, `delay` (ms after start), `paid`.
A seed fixes a case's script; the exact thread timing also depends on the cases beside it, so
a few failures reproduce alone only some of the time (the report shows the timeline).

Meanwhile the incoming sync runs in-process in a loop and signals the conflicts it confirms,
as `IncomingSyncWorkflow` does. Faults are aimed at one order: the simulator is served behind
`ScriptedFaults`, which reads the OrderClientId of each SaveAllData body, so a case's faults
hit its own requests whatever runs beside it.

Cases run in concurrent batches against one worker. After a batch settles (every workflow
closed) and one incoming cycle has mirrored Mahak into the shop database, each order must be
exactly one of:
- synced: the shop says synced, Mahak holds one live copy (order, exactly the shop's lines,
  a receipt of the paid amount), it was sent once (`submissions - deletions == 1`, plus any
  resend that completed a partial save, which the simulator also counts as a submission);
- cancelled: the shop says cancelled, every line restocked, the payment refunded once, the
  customer told; Mahak holds nothing live of it, or a staff notice and `mahak_leftovers`
  name what remains (outcome `cancelled_with_staff_task`);
and no order is ever sent while Mahak already holds it whole; and per (product detail,
store): Mahak's stock is its seeded stock minus the orders it holds live, and `shop_inventory`
shows Mahak's stock minus the paid orders Mahak does not hold.

Size and seeds (environment):
- `MAHAK_INTERLEAVING_CASES` (default 150): cases per run; 1500 is the 10x size.
- `MAHAK_INTERLEAVING_RUN_SEED`: the run's seed (default 31, the CI gate; `random` draws one
  and prints it); it draws the case seeds, so the same value replays the same cases in the
  same batches.
- `MAHAK_INTERLEAVING_SEED`: one case seed (or several, comma-separated) to run alone.
- `MAHAK_INTERLEAVING_BATCH` (default 40): cases in flight together.
- `MAHAK_INTERLEAVING_VERBOSE=1`: print every case's timeline, not only the failing ones'.
A failure lists every failing case with its seed, its script, what each order went through
and the command that reruns it.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import socket
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import pytest_asyncio
import uvicorn
from temporalio.api.enums.v1 import PendingActivityState
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.worker import Worker

from activities.incoming import IncomingSync
from activities.payments import refund_idempotency_key
from mahak_client.client import MahakClient
from mahak_client.models import INCOMING_ORDER
from mahak_simulator import control as sim_control
from mahak_simulator.app import create_app
from mahak_simulator.config import SimulatorConfig
from mahak_simulator.control import SimControl
from mahak_simulator.faults import FaultSpec, apply_fault
from mahak_simulator.stock import available as sim_available
from mahak_sync.config import Settings
from mahak_sync.orders_api import start_order_sync
from mahak_sync.runtime import build_worker
from shopdb import orders
from shopdb.orders import OrderStateError
from shopdb.pool import create_pool
from tests.order_helpers import make_order
from tests.test_order_e2e import FAST, WorkerProcess
from workflows.incoming_types import SyncEntityInput
from workflows.order_types import (
    InventoryConflictNotice,
    OrderSyncResult,
    ResolveAck,
    ResolveDispute,
    order_workflow_id,
)

pytestmark = pytest.mark.slow

# --- Size, seeds, timings ------------------------------------------------------------------------

CASES = int(os.environ.get("MAHAK_INTERLEAVING_CASES", "150"))
BATCH = int(os.environ.get("MAHAK_INTERLEAVING_BATCH", "40"))
ONLY_SEEDS = [
    int(s) for s in os.environ.get("MAHAK_INTERLEAVING_SEED", "").replace(" ", "").split(",") if s
]
VERBOSE = bool(os.environ.get("MAHAK_INTERLEAVING_VERBOSE"))  # print every case's timeline
# The CI gate replays one fixed run (it covers the defects this test found); `random`
# explores new cases (the seed is printed).
_RUN_SEED_SETTING = os.environ.get("MAHAK_INTERLEAVING_RUN_SEED") or "31"
RUN_SEED = (
    random.SystemRandom().randrange(10**9)
    if _RUN_SEED_SETTING == "random"
    else int(_RUN_SEED_SETTING)
)

# FAST plus: a retry window of 2.5 s (a longer outage becomes a dispute), two non-envelope
# answers in a row become a dispute, and no escalation while the test operator thinks.
POLICY = FAST.model_copy(
    update={
        "send_retry_for": timedelta(seconds=2.5),
        "max_bad_responses": 2,
        "decision_timeout": timedelta(hours=1),
    }
)
# A stalled worker (its event loop blocked, as by a long GC pause or CPU starvation) for longer
# than POLICY's 2 s send heartbeat timeout: Temporal times out the send in flight.
STALL_SECONDS = 2.6
SETTLE_SECONDS = 150  # a batch whose workflows are not all closed by then fails loudly
TICK = 0.04  # the monitor's polling period (it polls the database, never sleeps for correctness)
INCOMING_PAUSE = 0.4  # between two incoming cycles during a batch


def case_seeds() -> list[int]:
    if ONLY_SEEDS:
        return ONLY_SEEDS
    rng = random.Random(RUN_SEED)
    return [rng.randrange(2**32) for _ in range(CASES)]


def rerun_command(seeds: Iterable[int]) -> str:
    return (
        f"MAHAK_INTERLEAVING_SEED={','.join(map(str, seeds))} "
        ".venv/bin/python -m pytest tests/test_order_interleavings.py -q"
    )


# --- A case's script: everything random, drawn from its seed ----------------------------------------

STAGES = ("start", "sending", "in_mahak", "retrying", "dispute", "delay")
# The shop may also cancel between the payment and the callback that starts the sync.
CANCEL_STAGES = ("paid", *STAGES)


@dataclass(frozen=True)
class Trigger:
    """When something happens to an order: at a stage of its sync, or after a delay."""

    stage: str
    delay_ms: int = 0

    def __str__(self) -> str:
        return f"{self.stage}+{self.delay_ms}ms" if self.stage == "delay" else self.stage


@dataclass(frozen=True)
class FaultStep:
    name: str
    target: str  # "send" (the order or its receipt) or "delete" (the saga's reversal)
    spec: FaultSpec

    def __str__(self) -> str:
        return f"{self.name}@{self.target}"


def _fault(rng: random.Random, target: str) -> FaultStep:
    name = rng.choices(
        ["503", "drop", "drop_after", "truncated", "html", "latency", "refuse"],
        weights=[30, 10, 18, 14, 10, 14, 4],
    )[0]
    spec = {
        "503": FaultSpec(status_code=503),
        "drop": FaultSpec(drop_connection=True),
        "drop_after": FaultSpec(drop_after_processing=True),
        "truncated": FaultSpec(malformed="truncated"),
        "html": FaultSpec(malformed="html"),
        "latency": FaultSpec(latency_ms=rng.choice([150, 400, 900, 1400])),
        "refuse": FaultSpec(status_code=400),
    }[name]
    return FaultStep(name, target, spec)


def _trigger(rng: random.Random, stages: tuple[str, ...] = STAGES) -> Trigger:
    stage = rng.choice(stages)
    return Trigger(stage, rng.randrange(0, 1500) if stage == "delay" else 0)


@dataclass
class OrderScript:
    lines: list[tuple[int, int, int]]  # (detail index in the case's catalogue, quantity, price)
    known_customer: bool
    faults: list[FaultStep]
    conflict: Trigger | None
    shop_cancel: Trigger | None
    duplicate_callback: Trigger | None
    import_on_arrival: bool
    restart: Trigger | None
    stall: Trigger | None
    decisions: list[tuple[str, bool, int]]  # (action, by update?, think ms), one per dispute

    def describe(self) -> str:
        parts = [f"lines={self.lines}", f"customer={'known' if self.known_customer else 'new'}"]
        if self.faults:
            parts.append("faults=[" + ", ".join(map(str, self.faults)) + "]")
        for name in ("conflict", "shop_cancel", "duplicate_callback", "restart", "stall"):
            if getattr(self, name) is not None:
                parts.append(f"{name}@{getattr(self, name)}")
        if self.import_on_arrival:
            parts.append("desktop imports on arrival")
        parts.append(
            "decisions="
            + ",".join(f"{a}/{'update' if u else 'signal'}" for a, u, _ in self.decisions)
        )
        return " ".join(parts)


@dataclass
class CaseScript:
    seed: int
    stocks: list[int]  # Mahak Count1 of each catalogue detail, one store
    orders: list[OrderScript]
    pay_order: list[int]
    pay_gaps_ms: list[int]
    kill: Trigger | None  # SIGKILL the worker process (cases with a kill run on a subprocess)

    def describe(self) -> str:
        head = (
            f"case {self.seed}: stock={self.stocks} pay_order={self.pay_order} "
            f"gaps={self.pay_gaps_ms}" + (f" kill@{self.kill}" if self.kill else "")
        )
        return "\n".join(
            [head, *(f"  order #{i}: {o.describe()}" for i, o in enumerate(self.orders))]
        )


def draw_case(seed: int) -> CaseScript:
    rng = random.Random(seed)
    stocks = [rng.choice([0, 1, 2, 3, 4, 5, 6, 9]) for _ in range(rng.randint(1, 3))]
    kill = None
    if rng.random() < 0.03:
        kill = _trigger(rng, ("held", "retrying", "dispute"))
    scripts = []
    for _ in range(rng.choices([1, 2, 3], weights=[4, 4, 2])[0]):
        details = rng.sample(range(len(stocks)), rng.randint(1, len(stocks)))
        lines = [
            (d, rng.randint(1, 3), rng.choice([50_000, 90_000, 120_000, 150_000])) for d in details
        ]
        faults = [
            _fault(rng, "send")
            for _ in range(rng.choices([0, 1, 2, 3, 5], [30, 25, 20, 15, 10])[0])
        ]
        if kill is not None and kill.stage == "held":
            # Something to kill the worker during: a send held in Mahak (see `_quiescent`).
            faults.insert(0, FaultStep("latency", "send", FaultSpec(latency_ms=1800)))
        if rng.random() < 0.12:
            faults.append(_fault(rng, "delete"))
        scripts.append(
            OrderScript(
                lines=lines,
                known_customer=rng.random() < 0.7,
                faults=faults,
                conflict=_trigger(rng) if rng.random() < 0.3 else None,
                shop_cancel=_trigger(rng, CANCEL_STAGES) if rng.random() < 0.08 else None,
                duplicate_callback=_trigger(rng) if rng.random() < 0.15 else None,
                import_on_arrival=rng.random() < 0.08,
                restart=_trigger(rng) if kill is None and rng.random() < 0.015 else None,
                stall=None,  # drawn last (below), so adding it changed no earlier case's script
                decisions=[
                    (
                        rng.choices(["resend", "cancel", "mark_synced"], [5, 2, 3])[0],
                        rng.random() < 0.6,
                        rng.randrange(0, 300),
                    )
                    for _ in range(3)
                ],
            )
        )
    pay_order = rng.sample(range(len(scripts)), len(scripts))
    gaps = [rng.choice([0, 0, 30, 150, 400]) for _ in scripts]
    for script in scripts:
        script.stall = _trigger(rng) if kill is None and rng.random() < 0.015 else None
    return CaseScript(seed, stocks, scripts, pay_order, gaps, kill)


# --- The simulator, with faults aimed at one order ---------------------------------------------------


class OrderWire:
    """What the simulator saw of one order's SaveAllData calls (written from its thread)."""

    def __init__(
        self,
        client_id: int,
        faults: list[FaultStep],
        import_on_arrival: bool,
        log: list[str],
        t0: float,
    ) -> None:
        self.client_id = client_id
        self.pending = {
            "send": deque(f for f in faults if f.target == "send"),
            "delete": deque(f for f in faults if f.target == "delete"),
        }
        self.import_on_arrival = import_on_arrival
        self.landed = False  # Mahak processed a save of the order at least once
        # Sends of the order that Mahak processed while it already held the order whole
        # (a true duplicate), and resends that completed a partial save (by design).
        self.duplicates: list[str] = []
        self.completions = 0
        self.in_flight = 0
        self.held_until = 0.0  # monotonic end of the latency a request is held in
        self._log = log
        self._t0 = t0

    def note(self, text: str) -> None:
        self._log.append(f"{time.monotonic() - self._t0:7.3f} mahak: {text}")

    def held_for(self) -> float:
        return self.held_until - time.monotonic() if self.in_flight else 0.0


def _attribute(body: bytes) -> tuple[int | None, str, list[int] | None]:
    """(OrderClientId, "send" | "delete", line client ids when the body carries the order
    itself, None for a receipt alone) of a SaveAllData body; (None, "other", None) else."""
    try:
        data = json.loads(body)
    except ValueError:
        return None, "other", None
    if not isinstance(data, dict):
        return None, "other", None
    lists = {str(k).lower(): v for k, v in data.items()}
    for name in ("orders", "receipts"):
        records = lists.get(name)
        if isinstance(records, list) and records and isinstance(records[0], dict):
            record = {str(k).lower(): v for k, v in records[0].items()}
            client_id = record.get("orderclientid") or record.get("receiptclientid")
            if isinstance(client_id, int):
                lines = None
                if name == "orders":
                    lines = [
                        {str(k).lower(): v for k, v in d.items()}.get("orderdetailclientid")
                        for d in lists.get("orderdetails") or []
                        if isinstance(d, dict)
                    ]
                return client_id, "delete" if record.get("deleted") else "send", lines
    return None, "other", None


class ScriptedFaults:
    """ASGI middleware in front of the simulator: a SaveAllData naming an order with faults
    scripted gets the next one for its kind (the simulator's own `apply_fault` effects), and
    an order whose script says so is imported by "Mahak desktop" the moment it lands."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.sim = app.app.state.sim  # FaultMiddleware -> Starlette -> Simulation
        self._lock = threading.Lock()
        self._wires: dict[int, OrderWire] = {}

    def add(self, wire: OrderWire) -> None:
        with self._lock:
            self._wires[wire.client_id] = wire

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or "savealldata" not in scope["path"].lower():
            await self.app(scope, receive, send)
            return
        chunks, more = [], True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False) and message["type"] == "http.request"
        body = b"".join(chunks)
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        client_id, kind, lines = _attribute(body)
        with self._lock:
            wire = self._wires.get(client_id) if client_id is not None else None
            step = (
                wire.pending[kind].popleft()
                if wire is not None and wire.pending.get(kind)
                else None
            )
            if wire is not None:
                wire.in_flight += 1
                if step is not None and step.spec.latency_ms:
                    wire.held_until = time.monotonic() + step.spec.latency_ms / 1000
        if wire is None:
            await self.app(scope, replay, send)
            return
        wire.note(f"SaveAllData {kind}" + (f" with fault {step.name}" if step else ""))

        async def processed(scope_: Any, receive_: Any, send_: Any) -> None:
            if kind == "send" and lines is not None:
                self._classify_send(wire, lines)
            await self.app(scope_, receive_, send_)
            self._landed(wire, kind)

        try:
            if step is None:
                await processed(scope, replay, send)
            else:
                await apply_fault(step.spec, processed, scope, replay, send)
        finally:
            with self._lock:
                wire.in_flight -= 1
                if not wire.in_flight:
                    wire.held_until = 0.0

    def _classify_send(self, wire: OrderWire, lines: list[int]) -> None:
        """Called just before Mahak processes a send of the order: was it already whole?"""
        state = self.sim.state
        with state.lock:
            row = state.by_client_id("Orders", wire.client_id)
            if row is None or row.get("Deleted"):
                return
            live = [
                d
                for d in (state.by_client_id("OrderDetails", c) for c in lines)
                if d is not None and not d.get("Deleted")
            ]
            if len(live) == len(lines):
                wire.duplicates.append(
                    f"order {row['OrderId']} sent again although Mahak held it "
                    f"whole (lines {lines})"
                )
                wire.note("DUPLICATE: the order is sent again though Mahak holds it whole")
            else:
                wire.completions += 1
                wire.note(
                    f"resend completes a partial save ({len(live)} of {len(lines)} lines held)"
                )

    def _landed(self, wire: OrderWire, kind: str) -> None:
        state = self.sim.state
        with state.lock:
            row = state.by_client_id("Orders", wire.client_id)
            if row is None or row.get("Deleted"):
                return
            wire.landed = True
            if (
                kind == "send"
                and wire.import_on_arrival
                and row["OrderId"] not in state.orders.imported
            ):
                # The control API's own operation, run in the simulator's thread, so the
                # import happens the moment the save lands (before its answer leaves).
                sim_control._imported(
                    self.sim, sim_control.ImportedRequest(order_client_id=wire.client_id)
                )
                wire.note(f"imported by Mahak desktop (order {row['OrderId']})")


class ScriptedSimulator:
    """The simulator app behind `ScriptedFaults`, on uvicorn in a thread (as SimulatorServer)."""

    def __init__(self) -> None:
        self.config = SimulatorConfig()
        self.faults = ScriptedFaults(create_app(self.config))
        self.sim = self.faults.sim
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def root_url(self) -> str:
        return f"http://{self.config.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.root_url}/API/v3"

    def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.config.host, 0))
        self.port = sock.getsockname()[1]
        self._server = uvicorn.Server(
            uvicorn.Config(
                self.faults,
                log_level="warning",
                access_log=False,
                lifespan="off",
                http="h11",
                ws="none",
                loop="asyncio",
                timeout_graceful_shutdown=2,
                timeout_keep_alive=30,
            )
        )
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [sock]},
            name="scripted-simulator",
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self._server.started:
                try:
                    if httpx.get(f"{self.root_url}/_sim/health", timeout=2).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
            time.sleep(0.02)
        raise TimeoutError("the scripted simulator did not start")

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)


# --- What Mahak holds (read from the simulator's state, under its lock) -------------------------------


@dataclass
class Held:
    order: dict[str, Any] | None
    lines: list[dict[str, Any]]
    receipt: dict[str, Any] | None
    submissions: int
    deletions: int

    @property
    def live_order(self) -> dict[str, Any] | None:
        return self.order if self.order is not None and not self.order.get("Deleted") else None

    @property
    def live_lines(self) -> list[dict[str, Any]]:
        return [d for d in self.lines if not d.get("Deleted")]

    @property
    def live_receipt(self) -> dict[str, Any] | None:
        return (
            self.receipt if self.receipt is not None and not self.receipt.get("Deleted") else None
        )

    def anything_live(self) -> bool:
        return bool(self.live_order or self.live_lines or self.live_receipt)

    def describe(self) -> str:
        order = (
            self.order
            and f"order {self.order['OrderId']}{' deleted' if self.order.get('Deleted') else ''}"
        )
        lines = [
            f"{d['OrderDetailId']}({d['ProductDetailId']}x{d['Count1']:g}"
            f"{' deleted' if d.get('Deleted') else ''})"
            for d in self.lines
        ]
        receipt = self.receipt and (
            f"receipt {self.receipt['ReceiptId']} "
            f"{self.receipt.get('CashAmount')}"
            f"{' deleted' if self.receipt.get('Deleted') else ''}"
        )
        return (
            f"{order or 'no order'}; lines {lines}; {receipt or 'no receipt'}; "
            f"submissions {self.submissions}, deletions {self.deletions}"
        )

    def whole_copy_of(self, order: Any) -> list[str]:
        """Why Mahak's live records are not exactly `order` (empty: they are)."""
        problems = []
        if self.live_order is None:
            return ["Mahak holds no live order"]
        ours = {ln.order_detail_client_id: ln for ln in order.lines}
        theirs = {d.get("OrderDetailClientId"): d for d in self.live_lines}
        if set(ours) != set(theirs):
            problems.append(
                f"live lines {sorted(k for k in theirs if k)} != shop lines {sorted(ours)}"
            )
        for key, ln in ours.items():
            d = theirs.get(key)
            if d is not None and (
                d["ProductDetailId"] != ln.product_detail_id
                or d["StoreId"] != ln.store_id
                or abs(float(d["Count1"]) - float(ln.quantity)) > 1e-9
                or abs(float(d.get("Price") or 0) - float(ln.unit_price)) > 0.005
            ):
                problems.append(f"line {key} differs: {d}")
        receipt = self.live_receipt
        if receipt is None:
            problems.append("no live receipt")
        elif abs(float(receipt.get("CashAmount") or 0) - float(order.amount)) > 0.005:
            problems.append(f"receipt CashAmount {receipt.get('CashAmount')} != {order.amount}")
        return problems


def mahak_holds(sim: Any, order: Any) -> Held:
    state = sim.state
    with state.lock:
        row = state.by_client_id("Orders", order.order_client_id)
        lines: dict[int, dict[str, Any]] = {}
        for ln in order.lines:
            d = state.by_client_id("OrderDetails", ln.order_detail_client_id)
            if d is not None:
                lines[d["OrderDetailId"]] = d
        if row is not None:  # lines Mahak keeps under the order that are not the shop's
            for d in state.find("OrderDetails", OrderId=row["OrderId"]):
                lines[d["OrderDetailId"]] = d
        return Held(
            order=row,
            lines=list(lines.values()),
            receipt=state.by_client_id("Receipts", order.order_client_id),
            submissions=state.orders.submissions.get(order.order_client_id, 0),
            deletions=state.orders.deletions.get(order.order_client_id, 0),
        )


def _first_line(err: BaseException) -> str:
    return f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"[
        :300
    ]


# --- Running cases --------------------------------------------------------------------------------


@dataclass
class OrderRun:
    case: CaseRun
    index: int
    script: OrderScript
    order: Any  # ShopOrder as created
    wire: OrderWire
    handle: WorkflowHandle | None = None
    started: float | None = None
    result: OrderSyncResult | None = None
    failed_runs: list[str] = field(default_factory=list)
    closed: bool = False
    db: dict[str, Any] = field(default_factory=dict)
    pending: dict[str, Trigger] = field(default_factory=dict)  # action -> trigger
    disputes_seen: int = 0
    decided_for: int = 0  # disputes_seen when the operator last decided
    decided_at: float = 0.0
    decisions: int = 0
    deciding: bool = False
    in_dispute: bool = False

    def note(self, text: str) -> None:
        self.case.log.append(f"{time.monotonic() - self.case.t0:7.3f} #{self.index}: {text}")


@dataclass
class CaseRun:
    script: CaseScript
    details: list[int]
    store: int
    t0: float
    log: list[str] = field(default_factory=list)
    orders: list[OrderRun] = field(default_factory=list)

    def report(self, problems: list[str]) -> str:
        out = [
            self.script.describe(),
            "  problems:",
            *(f"    - {p}" for p in problems),
            f"  catalogue: details {self.details} in store {self.store}",
            "  timeline:",
        ]
        out += [f"    {line}" for line in self.log]
        return "\n".join(out)


class Harness:
    """One simulator, one database, one in-process worker (restartable) or a worker process
    (killable), the incoming sync in-process, and the test's shop, operator and desktop."""

    def __init__(
        self,
        client: Client,
        pool: Any,
        dsn: str,
        server: ScriptedSimulator,
        queue: str,
        mahak: MahakClient,
        http: httpx.AsyncClient,
        control: SimControl,
    ) -> None:
        self.client = client
        self.control = control
        self.pool = pool
        self.dsn = dsn
        self.server = server
        self.sim = server.sim
        self.queue = queue
        self.mahak = mahak
        self.http = http
        self.settings = Settings(
            TEMPORAL_TASK_QUEUE=queue,
            MAHAK_BASE_URL=server.base_url,
            MAHAK_USERNAME="shop",
            MAHAK_PASSWORD="secret",
            PAYMENT_GATEWAY_URL=f"{server.root_url}/_gateway",
        )
        self.incoming = IncomingSync(pool, mahak)
        self.signalled: dict[int, str] = {}
        self.worker: Worker | None = None
        self.worker_task: asyncio.Task[None] | None = None
        self.process: WorkerProcess | None = None
        self.restarts = 0
        self.kills = 0
        self._restarting = asyncio.Lock()
        self._killing = asyncio.Lock()
        self.store = 0
        self.person = 0
        self._waiters: dict[int, asyncio.Task[None]] = {}
        self._worker_config: dict[str, Any] | None = None
        self._restarted_in_batch = False
        self._stalled_in_batch = False
        self._template: Worker | None = None
        self._by_order_id: dict[int, OrderRun] = {}

    # --- workers ------------------------------------------------------------------------------

    def _new_worker(self) -> Worker:
        """The production worker (`mahak_sync.runtime.build_worker`: every workflow, activity and
        interceptor, its graceful shutdown), with one change: a workflow task meant for a
        stopped worker's cache moves to the shared queue after 1 s instead of 10 s, so a
        restart does not stall the batch. The SDK allows one worker per client and task
        queue, so the production worker is built on a queue of its own, never run, and only
        its configuration is used."""
        if self._worker_config is None:
            template = build_worker(
                self.client,
                self.settings.model_copy(update={"temporal_task_queue": f"{self.queue}-template"}),
                pool=self.pool,
                mahak=self.mahak,
                gateway=self.http,
            )
            self._template = template  # kept alive, never run
            self._worker_config = {
                **template.config(),
                "task_queue": self.queue,
                "sticky_queue_schedule_to_start_timeout": timedelta(seconds=1),
            }
        return Worker(**self._worker_config)

    async def start_worker(self) -> None:
        self.worker = self._new_worker()
        self.worker_task = asyncio.create_task(self.worker.run())

    async def stop_worker(self) -> None:
        if self.worker is not None:
            await self.worker.shutdown()
            assert self.worker_task is not None
            await self.worker_task
            self.worker = None

    async def restart_worker(self) -> None:
        """A restart as a deploy does it: the worker drains (production's graceful shutdown)
        and stops, then a new one starts with an empty cache, so it replays every history it
        picks up. (The SDK allows one worker per client and task queue in a process, so the
        two cannot overlap.) A task in transit to the stopping worker's interrupted poll is
        lost (a known SDK limit, temporalio/sdk-rust#1080): a workflow task waits out its 10 s
        task timeout, now and then an activity its 60 s start-to-close timeout. That costs
        time, not correctness: hence at most one restart per batch."""
        async with self._restarting:
            await self.stop_worker()
            await self.start_worker()
            self.restarts += 1

    async def start_process(self) -> None:
        self.process = WorkerProcess(
            SimpleNamespace(client=self.client, queue=self.queue, server=self.server), self.dsn
        )
        await self.process.start()

    async def kill_process(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.kills += 1
        await self.process.start()

    # --- catalogue and the incoming sync --------------------------------------------------------

    async def seed_base(self) -> None:
        base = await self.control.seed(0, stores=1, categories=1, pictures_per_product=0, people=1)
        self.store, self.person = base.stores[0], base.people[0]

    async def seed_case(self, script: CaseScript) -> list[int]:
        details = []
        for stock in script.stocks:
            seeded = await self.control.seed(
                1, stores=0, categories=0, pictures_per_product=0, people=0, stock=stock
            )
            details.append(seeded.product_details[0])
        return details

    async def incoming_cycle(self, *, signal: bool) -> None:
        """One incoming cycle in-process (IncomingSync, as `mahak-sync sync once`), signalling
        the confirmed conflicts once per unchanged shortage, as IncomingSyncWorkflow does."""
        run_id = f"interleavings-{uuid.uuid4().hex[:8]}"
        for entity in INCOMING_ORDER:
            await self.incoming.sync_entity(
                SyncEntityInput(entity=entity, page_size=500, run_id=run_id)
            )
        result = await self.incoming.check_inventory_conflicts(run_id, page_size=500)
        if not signal:
            return
        for conflict in result.conflicts:
            fingerprint = conflict.fingerprint()
            if self.signalled.get(conflict.order_id) == fingerprint:
                continue
            worst = conflict.worst()
            try:
                await self.client.get_workflow_handle(order_workflow_id(conflict.order_id)).signal(
                    "inventory_conflict",
                    InventoryConflictNotice(
                        product_detail_id=worst.product_detail_id,
                        store_id=worst.store_id,
                        needed=worst.held,
                        available=worst.available,
                        reason=conflict.describe(),
                    ),
                )
            except Exception:  # noqa: BLE001 - not started yet, or closed: next cycle
                continue
            self.signalled[conflict.order_id] = fingerprint
            run = self._by_order_id.get(conflict.order_id)
            if run is not None:
                run.note(f"incoming sync signalled inventory_conflict: {conflict.describe()}")

    async def _incoming_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.incoming_cycle(signal=True)
            except Exception as err:  # noqa: BLE001 - the loop goes on, as the workflow would
                print(f"incoming cycle failed: {type(err).__name__}: {err}", file=sys.stderr)
            try:
                await asyncio.wait_for(stop.wait(), INCOMING_PAUSE)
            except TimeoutError:
                pass

    # --- a batch --------------------------------------------------------------------------------

    async def run_batch(
        self, scripts: list[CaseScript], *, killable: bool
    ) -> list[tuple[int, str]]:
        """Run the cases together until every workflow closed; (seed, report) per failing case."""
        t0 = time.monotonic()
        cases: list[CaseRun] = []
        for script in scripts:
            case = CaseRun(script, await self.seed_case(script), self.store, t0)
            cases.append(case)
        await self.incoming_cycle(signal=False)  # the shop knows the catalogue before selling
        self._by_order_id = {}
        for case in cases:
            for index, script in enumerate(case.script.orders):
                order = await make_order(
                    self.pool,
                    [(case.details[d], case.store, q, p) for d, q, p in script.lines],
                    mahak_person_id=self.person if script.known_customer else None,
                )
                wire = OrderWire(
                    order.order_client_id, script.faults, script.import_on_arrival, case.log, t0
                )
                self.server.faults.add(wire)
                run = OrderRun(case, index, script, order, wire)
                for action in ("conflict", "shop_cancel", "duplicate_callback", "restart", "stall"):
                    trigger = getattr(script, action)
                    if trigger is not None:
                        run.pending[action] = trigger
                if index == 0 and case.script.kill is not None:
                    run.pending["kill"] = case.script.kill
                case.orders.append(run)
                self._by_order_id[order.id] = run
        runs = [run for case in cases for run in case.orders]
        self._restarted_in_batch = self._stalled_in_batch = False

        stop = asyncio.Event()
        incoming = asyncio.create_task(self._incoming_loop(stop))
        tasks = [asyncio.create_task(self._drive(case)) for case in cases]
        monitor = asyncio.create_task(self._monitor(runs, killable=killable))
        try:
            await asyncio.wait_for(asyncio.gather(*tasks), 60)
            await asyncio.wait_for(self._all_closed(runs), SETTLE_SECONDS)
        except TimeoutError:
            pass
        finally:
            stop.set()
            monitor.cancel()
            await asyncio.gather(incoming, monitor, *tasks, return_exceptions=True)
        for run in runs:  # what never closed is reported, then put out of the way
            waiter = self._waiters.pop(id(run), None)
            if waiter is not None and not waiter.done():
                waiter.cancel()
            if not run.closed and run.handle is not None:
                try:
                    run.note(f"never settled; status {await run.handle.query('status')}")
                    await run.handle.terminate("interleaving test: never settled")
                except Exception as err:  # noqa: BLE001
                    run.note(f"never settled; could not query/terminate: {_first_line(err)}")
        await self.incoming_cycle(signal=False)  # mirror the final state into the shop
        print(
            f"interleavings: batch of {len(cases)} cases, {len(runs)} orders settled in "
            f"{time.monotonic() - t0:.1f} s"
        )
        failures = []
        for case in cases:
            problems = await self.check_case(case)
            if VERBOSE:
                print(case.report(problems or ["none"]))
            if problems:
                failures.append((case.script.seed, case.report(problems)))
        return failures

    async def _all_closed(self, runs: list[OrderRun]) -> None:
        while not all(run.closed for run in runs):
            await asyncio.sleep(TICK)

    async def _drive(self, case: CaseRun) -> None:
        """The shop: payments in the case's order, each starting the order's sync."""
        for index, gap in zip(case.script.pay_order, case.script.pay_gaps_ms):
            if gap:
                await asyncio.sleep(gap / 1000)
            run = case.orders[index]
            await orders.mark_paid(self.pool, run.order.id, run.order.amount, f"PAY-{run.order.id}")
            run.order = await orders.get_order(self.pool, run.order.id)
            if run.pending.get("shop_cancel") == Trigger("paid"):
                del run.pending["shop_cancel"]
                await orders.cancel_and_restock(
                    self.pool, run.order.id, "customer cancelled in the shop"
                )
                run.note("shop cancelled the order after payment, before its sync started")
            await start_order_sync(self.client, run.order.id, self.settings, policy=POLICY)
            run.handle = self.client.get_workflow_handle(
                order_workflow_id(run.order.id), result_type=OrderSyncResult
            )
            run.started = time.monotonic()
            run.note("paid; sync started")
            self._waiters[id(run)] = asyncio.create_task(self._await_result(run))

    async def _await_result(self, run: OrderRun) -> None:
        assert run.handle is not None
        while True:
            try:
                run.result = await run.handle.result()
                run.note(f"workflow ended {run.result.outcome}: {run.result.note or ''}")
                break
            except WorkflowFailureError as err:
                cause = f"{type(err.cause).__name__}: {err.cause}"
                run.failed_runs.append(cause)
                run.note(f"workflow FAILED: {cause}")
                # The sweep's part: it starts a fresh run of a paid order nobody holds.
                if len(run.failed_runs) < 3 and await orders.paid_orders_without_sync(
                    self.pool, among=[run.order.id]
                ):
                    await start_order_sync(self.client, run.order.id, self.settings, policy=POLICY)
                    run.note("restarted as the sweep would")
                    continue
                break
        if run.pending:
            run.note("never reached: " + ", ".join(f"{a}@{t}" for a, t in run.pending.items()))
        run.closed = True

    # --- the monitor: stages, triggers, the operator ----------------------------------------------

    def _reached(self, run: OrderRun, trigger: Trigger) -> bool:
        row = run.db
        status, attempts = row.get("sync_status"), row.get("sync_attempts", 0)
        if trigger.stage == "start":
            return True
        if trigger.stage == "delay":
            return time.monotonic() - (run.started or 0) >= trigger.delay_ms / 1000
        if trigger.stage == "sending":
            return status == "sending" and attempts == 0
        if trigger.stage == "in_mahak":
            return run.wire.landed
        if trigger.stage == "retrying":
            return status == "sending" and attempts >= 1 and row.get("last_mahak_error") is not None
        if trigger.stage == "dispute":
            return status == "dispute"
        if trigger.stage == "held":
            return run.wire.held_for() > 0.3
        raise AssertionError(trigger.stage)

    async def _monitor(self, runs: list[OrderRun], *, killable: bool) -> None:
        """Every TICK: each order's stage from the database, its due triggers, the operator."""
        actions: set[asyncio.Task[None]] = set()
        while True:
            try:
                await self._tick(runs, actions, killable)
            except Exception as err:  # noqa: BLE001 - one bad tick must not stop the operator
                print(f"interleavings monitor: {_first_line(err)}", file=sys.stderr)
            await asyncio.sleep(TICK)

    async def _tick(
        self, runs: list[OrderRun], actions: set[asyncio.Task[None]], killable: bool
    ) -> None:
        def spawn(coro: Any) -> None:
            task = asyncio.create_task(coro)
            actions.add(task)
            task.add_done_callback(actions.discard)

        rows = {
            r["id"]: dict(r)
            for r in await self.pool.fetch(
                "SELECT id, sync_status, sync_attempts, last_mahak_error FROM shop_orders "
                "WHERE id = ANY($1)",
                [run.order.id for run in runs],
            )
        }
        for run in runs:
            if run.handle is None or run.closed:
                continue
            run.db = rows[run.order.id]
            for action, trigger in list(run.pending.items()):
                if self._reached(run, trigger):
                    del run.pending[action]
                    spawn(self._act(run, action, trigger, killable))
            in_dispute = run.db["sync_status"] == "dispute"
            if in_dispute and not run.in_dispute:
                run.disputes_seen += 1
            run.in_dispute = in_dispute
            stale = time.monotonic() - run.decided_at > 4  # a decision that was dropped
            if in_dispute and not run.deciding and (run.decided_for < run.disputes_seen or stale):
                run.deciding = True
                spawn(self._decide(run))

    async def _act(self, run: OrderRun, action: str, trigger: Trigger, killable: bool) -> None:
        assert run.handle is not None
        try:
            if action == "conflict":
                await run.handle.signal(
                    "inventory_conflict",
                    InventoryConflictNotice(reason=f"interleaving test: conflict at {trigger}"),
                )
                run.note(f"signalled inventory_conflict at {trigger}")
            elif action == "shop_cancel":
                try:
                    done = await orders.cancel_and_restock(
                        self.pool, run.order.id, "customer cancelled in the shop"
                    )
                    run.note(f"shop cancelled the order at {trigger} (changed: {done})")
                except OrderStateError as err:
                    run.note(f"shop could not cancel at {trigger}: {err}")
            elif action == "duplicate_callback":
                await start_order_sync(self.client, run.order.id, self.settings, policy=POLICY)
                run.note(f"duplicate payment callback at {trigger}")
            elif action == "restart":
                if killable or self._restarted_in_batch:
                    run.note(f"restart at {trigger} skipped: one restart per batch")
                    return
                self._restarted_in_batch = True  # each costs a stall of up to 10 s (see below)
                run.note(f"restarting the worker at {trigger}")
                await self.restart_worker()
                run.note("worker restarted")
            elif action == "stall":
                if killable or self._stalled_in_batch:
                    run.note(f"stall at {trigger} skipped: one stall per batch")
                    return
                self._stalled_in_batch = True
                run.note(f"the worker stalls {STALL_SECONDS} s at {trigger}")
                time.sleep(STALL_SECONDS)  # blocks the worker's event loop, on purpose
                run.note("the worker runs again")
            elif action == "kill":
                await self._kill_when_quiescent(run, trigger)
        except Exception as err:  # noqa: BLE001 - e.g. a signal to a workflow that just closed
            run.note(f"{action} at {trigger} not delivered: {_first_line(err)}")

    async def _kill_when_quiescent(self, run: OrderRun, trigger: Trigger) -> None:
        """SIGKILL the worker process at a moment no activity but a send held in Mahak runs:
        an activity without a heartbeat (database steps, the reversal) held by a dead worker
        waits out its start-to-close timeout (60 s, 5 min), which is not what this test is
        about; the held send's request still lands, before its heartbeat times out."""
        deadline = time.monotonic() + 10
        async with self._killing:  # one kill at a time: a second waits for the first
            while time.monotonic() < deadline:
                if self.process is None or self.kills >= 2:
                    run.note(f"kill at {trigger} skipped: two kills per batch at most")
                    return
                if await self._quiescent(list(self._by_order_id.values())):
                    run.note(f"killing the worker process at {trigger}")
                    await self.kill_process()
                    run.note("worker process restarted")
                    return
                await asyncio.sleep(0.02)
        run.note(f"no quiet moment to kill the worker at {trigger}")

    async def _quiescent(self, runs: list[OrderRun]) -> bool:
        for run in runs:
            if run.handle is None or run.closed:
                continue
            desc = await run.handle.describe()
            for pending in desc.raw_description.pending_activities:
                if pending.state != PendingActivityState.PENDING_ACTIVITY_STATE_STARTED:
                    continue
                if (
                    pending.activity_type.name != "order.send"
                    or not 0.3 < run.wire.held_for() < 1.5
                ):
                    return False
        return True

    async def _decide(self, run: OrderRun) -> None:
        """The operator: looks at Mahak, then decides (by update or by signal)."""
        assert run.handle is not None
        try:
            number = run.decisions
            run.decisions += 1
            action, by_update, think = run.script.decisions[
                min(number, len(run.script.decisions) - 1)
            ]
            await asyncio.sleep(think / 1000)
            if number >= 3:
                action = "cancel"  # an operator gives up on an order that keeps failing
            if action == "mark_synced":
                missing = mahak_holds(self.sim, run.order).whole_copy_of(run.order)
                if missing:
                    run.note(
                        f"operator would mark synced, but Mahak lacks it ({missing[0]}): resend"
                    )
                    action = "resend"
            decision = ResolveDispute(action=action, note=f"interleaving operator #{number}")
            if by_update:
                await run.handle.execute_update("resolve_dispute", decision, result_type=ResolveAck)
            else:
                await run.handle.signal("resolve_dispute", decision)
            run.note(f"operator: {action} by {'update' if by_update else 'signal'}")
        except Exception as err:  # noqa: BLE001 - the dispute ended meanwhile: nothing to decide
            run.note(f"operator's decision refused: {_first_line(err)}")
        finally:
            run.decided_for = run.disputes_seen
            run.decided_at = time.monotonic()
            run.deciding = False

    # --- the invariants -----------------------------------------------------------------------

    async def check_case(self, case: CaseRun) -> list[str]:
        problems: list[str] = []
        refunds: dict[str, list[dict[str, Any]]] = {}
        for refund in (await self.http.get(f"{self.server.root_url}/_gateway/refunds")).json()[
            "refunds"
        ]:
            refunds.setdefault(refund["idempotency_key"], []).append(refund)
        for run in case.orders:
            problems += [
                f"order #{run.index} ({run.order.id}): {p}"
                for p in await self._check_order(run, refunds)
            ]
        problems += await self._check_stock(case)
        return problems

    async def _check_order(
        self, run: OrderRun, refunds: dict[str, list[dict[str, Any]]]
    ) -> list[str]:
        p: list[str] = []
        row = await orders.get_order(self.pool, run.order.id)
        held = mahak_holds(self.sim, row)
        run.note(
            f"final: shop {row.sync_status}/{row.payment_status} leftovers={row.mahak_leftovers!r}; "
            f"Mahak: {held.describe()}"
        )
        moves = await self.pool.fetch(
            "SELECT order_line_id, delta, reason FROM shop_stock_movements WHERE order_id = $1",
            row.id,
        )
        notices = await self.pool.fetch(
            "SELECT kind, recipient, payload->>'message' AS message FROM notification_outbox "
            "WHERE order_id = $1",
            row.id,
        )
        staff = [n for n in notices if n["recipient"] == "staff"]
        told = [n for n in notices if n["kind"] == "order_cancelled"]
        paid_back = refunds.get(refund_idempotency_key(row.id), [])
        outcome = run.result.outcome if run.result is not None else None
        sends = held.submissions - held.deletions

        if run.failed_runs:
            p.append(f"a workflow run failed: {run.failed_runs}")
        if not run.closed:
            p.append("the workflow never closed")
        p += run.wire.duplicates
        if sends > 1 + run.wire.completions:
            p.append(
                f"sent to Mahak {sends} times (submissions {held.submissions}, deletions "
                f"{held.deletions}), only {run.wire.completions} of them completing a partial save"
            )

        if row.sync_status == "synced":
            if outcome not in ("synced", "already_synced", None):
                p.append(f"shop says synced, the workflow ended {outcome}")
            p += [f"synced, but {x}" for x in held.whole_copy_of(row)]
            if sends != 1 + run.wire.completions:
                p.append(f"synced, yet sent {sends} times ({run.wire.completions} completing)")
            if not row.synced_to_mahak or row.payment_status != "paid":
                p.append(
                    f"synced with synced_to_mahak={row.synced_to_mahak}, "
                    f"payment {row.payment_status}"
                )
            # (An operator's mark_synced records no Mahak id: None is allowed, a wrong id not.)
            if held.live_order is not None and row.mahak_order_id not in (
                None,
                held.live_order["OrderId"],
            ):
                p.append(
                    f"mahak_order_id {row.mahak_order_id} != Mahak's {held.live_order['OrderId']}"
                )
            if moves or told or paid_back or row.compensation_started_at or row.mahak_leftovers:
                p.append(
                    f"synced, yet compensated: moves {len(moves)}, told {len(told)}, "
                    f"refunds {len(paid_back)}, compensation {row.compensation_started_at}, "
                    f"leftovers {row.mahak_leftovers!r}"
                )
        elif row.sync_status == "cancelled":
            if outcome not in ("cancelled", "cancelled_with_staff_task"):
                p.append(f"shop says cancelled, the workflow ended {outcome}")
            if row.payment_status != "refunded":
                p.append(f"cancelled but payment {row.payment_status}")
            if len(paid_back) != 1 or abs(paid_back[0]["amount"] - float(row.amount)) > 0.005:
                p.append(f"cancelled; refunds at the gateway: {paid_back}")
            expected_moves = {(ln.id, ln.quantity) for ln in row.lines}
            got_moves = {(m["order_line_id"], m["delta"]) for m in moves if m["reason"] == "cancel"}
            if got_moves != expected_moves or len(moves) != len(row.lines):
                p.append(f"restock movements {sorted(got_moves)} != lines {sorted(expected_moves)}")
            if any(ln.restocked_at is None for ln in row.lines):
                p.append("a line is not marked restocked")
            if len(told) != 1:
                p.append(f"customer told {len(told)} times")
            if row.compensation_started_at is None:
                p.append("cancelled without compensation_started_at")
            if held.anything_live():
                remaining = (
                    ([str(held.live_order["OrderId"])] if held.live_order else [])
                    + [str(d["OrderDetailId"]) for d in held.live_lines]
                    + ([str(held.live_receipt["ReceiptId"])] if held.live_receipt else [])
                )
                leftovers = row.mahak_leftovers or ""
                unnamed = [r for r in remaining if r not in leftovers]
                if unnamed:
                    p.append(
                        f"Mahak still holds {held.describe()}; mahak_leftovers "
                        f"{row.mahak_leftovers!r} does not name {unnamed}"
                    )
                if not any(all(r in (n["message"] or "") for r in remaining) for n in staff):
                    p.append(
                        f"Mahak still holds {held.describe()}; no staff notice names it all: "
                        f"{[n['message'] for n in staff]}"
                    )
                if outcome != "cancelled_with_staff_task":
                    p.append(f"Mahak still holds it, the workflow ended {outcome}")
            else:
                if row.mahak_leftovers is not None or row.synced_to_mahak:
                    p.append(
                        f"Mahak holds nothing, yet leftovers {row.mahak_leftovers!r}, "
                        f"synced_to_mahak {row.synced_to_mahak}"
                    )
                if outcome == "cancelled_with_staff_task" and not staff:
                    p.append("cancelled_with_staff_task without a staff notice")
        else:
            p.append(
                f"neither synced nor cancelled: sync_status {row.sync_status}, "
                f"payment {row.payment_status}"
            )
        return p

    async def _check_stock(self, case: CaseRun) -> list[str]:
        """Mahak: seeded stock minus what it holds live. Shop (mirrored): Mahak's stock minus
        the paid, uncancelled orders Mahak does not hold."""
        p: list[str] = []
        state = self.sim.state
        shop_rows = {
            (r["product_detail_id"], r["store_id"]): r
            for r in await self.pool.fetch(
                "SELECT product_detail_id, store_id, mahak_count1, available FROM shop_inventory "
                "WHERE product_detail_id = ANY($1)",
                case.details,
            )
        }
        unheld: dict[tuple[int, int], Decimal] = {}
        for run in case.orders:
            row = await orders.get_order(self.pool, run.order.id)
            if (
                row.payment_status == "paid"
                and row.sync_status != "cancelled"
                and mahak_holds(self.sim, row).live_order is None
            ):
                for ln in row.lines:
                    key = (ln.product_detail_id, ln.store_id)
                    unheld[key] = unheld.get(key, Decimal(0)) + ln.quantity
        for detail, seeded in zip(case.details, case.script.stocks):
            with state.lock:
                count = sim_available(state, detail, case.store)
                taken = sum(
                    float(d["Count1"])
                    for d in state.find("OrderDetails", ProductDetailId=detail)
                    if d["StoreId"] == case.store and not d.get("Deleted")
                )
            if abs(count - (seeded - taken)) > 1e-9:
                p.append(
                    f"Mahak stock of {detail}: {count:g}, but seeded {seeded} - live lines "
                    f"{taken:g} = {seeded - taken:g}"
                )
            shop = shop_rows.get((detail, case.store))
            expected = Decimal(str(count)) - unheld.get((detail, case.store), Decimal(0))
            if (
                shop is None
                or shop["mahak_count1"] != Decimal(str(count))
                or shop["available"] != expected
            ):
                p.append(
                    f"shop_inventory of {detail}: {dict(shop) if shop else None}, expected "
                    f"mahak_count1 {count:g} and available {expected}"
                )
        return p


# --- Fixtures and the tests -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scripted_sim() -> Any:
    server = ScriptedSimulator()
    server.start()
    yield server
    server.stop()


@pytest_asyncio.fixture
async def harness(temporal_client, db_dsn, scripted_sim, task_queue) -> AsyncIterator[Harness]:
    pool = await create_pool(db_dsn, min_size=2, max_size=20)
    async with (
        SimControl(scripted_sim.root_url) as control,
        MahakClient(scripted_sim.base_url, "shop", "secret") as mahak,
        httpx.AsyncClient(timeout=30) as http,
    ):
        await control.reset()
        h = Harness(temporal_client, pool, db_dsn, scripted_sim, task_queue, mahak, http, control)
        await h.seed_base()
        try:
            yield h
        finally:
            await h.stop_worker()
            if h.process is not None:
                h.process.stop()
            await pool.close()


def _selected(kill: bool) -> list[CaseScript]:
    return [s for s in map(draw_case, case_seeds()) if (s.kill is not None) == kill]


async def _run(harness: Harness, scripts: list[CaseScript], *, killable: bool, batch: int) -> None:
    started = time.monotonic()
    print(
        f"\ninterleavings: run seed {RUN_SEED}, {len(scripts)} cases"
        f"{' (worker process, killed)' if killable else ''}, batches of {batch}"
    )
    failures: list[tuple[int, str]] = []
    for at in range(0, len(scripts), batch):
        chunk = scripts[at : at + batch]
        failures += await harness.run_batch(chunk, killable=killable)
    failed_seeds = [seed for seed, _ in failures]
    orders_run = sum(len(s.orders) for s in scripts)
    print(
        f"interleavings: {len(scripts)} cases, {orders_run} orders in "
        f"{time.monotonic() - started:.1f} s; worker restarts {harness.restarts}, "
        f"kills {harness.kills}; failing cases {len(failed_seeds)}"
    )
    if failures:
        pytest.fail(
            f"{len(failures)} of {len(scripts)} cases broke an invariant "
            f"(run seed {RUN_SEED}); rerun with\n  {rerun_command(failed_seeds)}\n\n"
            + "\n\n".join(report for _, report in failures),
            pytrace=False,
        )


async def test_random_interleavings_leave_every_order_synced_once_or_cancelled_whole(harness):
    scripts = _selected(kill=False)
    if not scripts:
        pytest.skip("no case of this kind among the selected seeds")
    await harness.start_worker()
    await _run(harness, scripts, killable=False, batch=BATCH)


async def test_random_interleavings_with_a_killed_worker_process(harness):
    scripts = _selected(kill=True)
    if not scripts:
        pytest.skip("no case with a killed worker among the selected seeds")
    await harness.start_process()
    await _run(harness, scripts, killable=True, batch=len(scripts))
