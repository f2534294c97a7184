"""Start and poke mahak-sync's long-running workflows.

    python starter.py incoming [--interval SECONDS] [--page-size N] [--paused]
    python starter.py sync-now
    python starter.py sweep             # the safety net that syncs paid orders a callback missed
    python starter.py order ORDER_ID    # sync one paid order (attaches to a running sync)

`incoming` is idempotent: it starts `mahak-incoming-sync`, or attaches to the running one
(whose own state then wins: pause/resume and reset_cursor change it, not a restart).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDConflictPolicy
from temporalio.service import RPCError, RPCStatusCode

from workflows.incoming_types import IncomingSyncState, SyncConfig
from mahak_sync.config import Settings, get_settings, page_size_arg
from mahak_sync.orders_api import start_order_sync
from mahak_sync.logging import configure_logging
from mahak_sync.temporal import SYNC_KIND, SYNC_PAUSED, connect, ensure_search_attributes
from workflows.incoming_sync import SYNC_KIND_VALUE, WORKFLOW_ID, IncomingSyncWorkflow
from workflows.order_sweep import OrderSweepWorkflow
from workflows.sweep_types import OrderSweepInput
from workflows.order_types import ORDER_SWEEP_WORKFLOW_ID

Command = Callable[[Client, Settings, argparse.Namespace], Awaitable[int]]


def incoming_config(settings: Settings, **overrides: Any) -> SyncConfig:
    values: dict[str, Any] = {
        "interval_seconds": settings.incoming_sync_interval_seconds,
        "page_size": settings.mahak_page_size,
        "reconcile_every_seconds": settings.incoming_reconcile_every_seconds,
    }
    values.update({k: v for k, v in overrides.items() if v is not None})
    if values["page_size"] == 0:  # `--page-size 0`: no pageSize
        values["page_size"] = None
    return SyncConfig(**values)


async def running_handle(client: Client, workflow_id: str) -> WorkflowHandle[Any, Any] | None:
    """The handle of a running workflow with this id, or None."""
    handle = client.get_workflow_handle(workflow_id)
    try:
        description = await handle.describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
    return handle if description.status == WorkflowExecutionStatus.RUNNING else None


async def start_incoming(
    client: Client, settings: Settings, *, config: SyncConfig | None = None, paused: bool = False,
    workflow_id: str = WORKFLOW_ID,
) -> tuple[WorkflowHandle[Any, Any], bool]:
    """Start the incoming sync unless it runs; returns its handle and whether it was started."""
    existing = await running_handle(client, workflow_id)
    if existing is not None:
        return existing, False
    await ensure_search_attributes(client, settings.temporal_namespace)
    state = IncomingSyncState(config=config or incoming_config(settings), paused=paused)
    handle = await client.start_workflow(
        IncomingSyncWorkflow.run,
        state,
        id=workflow_id,
        task_queue=settings.temporal_task_queue,
        # Two starters racing still end up with one workflow.
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        search_attributes=TypedSearchAttributes([
            SearchAttributePair(SYNC_KIND, SYNC_KIND_VALUE),
            SearchAttributePair(SYNC_PAUSED, paused),
        ]),
        static_summary="Mahak -> shop incoming sync",
    )
    return handle, True


async def start_sweep(client: Client, settings: Settings) -> WorkflowHandle[Any, Any]:
    """Start the order sweep unless it runs (a second start attaches)."""
    return await client.start_workflow(
        OrderSweepWorkflow.run,
        OrderSweepInput(interval=settings.outgoing_sweep_interval),
        id=ORDER_SWEEP_WORKFLOW_ID,
        task_queue=settings.temporal_task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        static_summary="Safety net: syncs paid orders whose callback was lost",
    )


async def _sweep(client: Client, settings: Settings, args: argparse.Namespace) -> int:
    handle = await start_sweep(client, settings)
    print(f"{ORDER_SWEEP_WORKFLOW_ID} running (run {handle.result_run_id})")
    return 0


async def _order(client: Client, settings: Settings, args: argparse.Namespace) -> int:
    print(await start_order_sync(client, args.order_id, settings))
    return 0


async def _incoming(client: Client, settings: Settings, args: argparse.Namespace) -> int:
    config = incoming_config(settings, interval_seconds=args.interval, page_size=args.page_size)
    handle, started = await start_incoming(client, settings, config=config, paused=args.paused)
    verb = "started" if started else "already running"
    print(f"{WORKFLOW_ID} {verb} (run {handle.run_id or (await handle.describe()).run_id})")
    return 0


async def _sync_now(client: Client, settings: Settings, args: argparse.Namespace) -> int:
    if await running_handle(client, WORKFLOW_ID) is None:
        print(f"{WORKFLOW_ID} is not running; start it with `python starter.py incoming`",
              file=sys.stderr)
        return 1
    await client.get_workflow_handle(WORKFLOW_ID).signal(IncomingSyncWorkflow.sync_now)
    print(f"sync_now sent to {WORKFLOW_ID}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="starter.py", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("incoming", help="start (or attach to) the incoming sync workflow")
    p.add_argument("--interval", type=float, help="seconds between cycles "
                   "(default INCOMING_SYNC_INTERVAL_SECONDS)")
    p.add_argument("--page-size", type=page_size_arg,
                   help="rows per entity per page, 0 for none (default MAHAK_PAGE_SIZE)")
    p.add_argument("--paused", action="store_true", help="start paused (send `resume` later)")
    p.set_defaults(func=_incoming)

    p = sub.add_parser("sync-now", help="wake the incoming sync for a cycle now")
    p.set_defaults(func=_sync_now)

    p = sub.add_parser("sweep", help="start (or attach to) the safety-net order sweep")
    p.set_defaults(func=_sweep)

    p = sub.add_parser("order", help="sync one paid order to Mahak (idempotent)")
    p.add_argument("order_id", type=int)
    p.set_defaults(func=_order)
    return parser


async def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = get_settings()
    configure_logging(settings.log_format, settings.log_level)
    client = await connect(settings)
    command: Command = args.func
    return await command(client, settings, args)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
