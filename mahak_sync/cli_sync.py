"""`mahak-sync sync`: the incoming sync (Mahak -> shop), by hand or through its workflow.

- `once`: one whole cycle in this process, no Temporal needed; prints a JSON summary and
  exits non-zero if any entity failed.
- `start`: start (or attach to) the workflow `mahak-incoming-sync`.
- `status`, `pause`, `resume`, `now`, `reconcile`, `reset-cursor`: talk to the running workflow
  `mahak-incoming-sync` (the same operations are in the Temporal Web UI and CLI).
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from typing import Any

from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError

from mahak_client.models import INCOMING_ORDER, entity_name
from workflows.incoming_types import (
    ALL_ENTITIES,
    CycleSummary,
    EntityProgress,
    ResetCursorRequest,
    SyncStatus,
)

from .config import chosen_page_size, get_settings, page_size_arg
from .temporal import connect


def register(subparsers: argparse._SubParsersAction) -> None:
    group = subparsers.add_parser("sync", help="incoming sync: Mahak -> shop")
    sub = group.add_subparsers(dest="sync_command", metavar="COMMAND", required=True)

    p = sub.add_parser("start", help="start (or attach to) the incoming sync workflow")
    p.add_argument(
        "--interval",
        type=float,
        help="seconds between cycles (default INCOMING_SYNC_INTERVAL_SECONDS)",
    )
    p.add_argument(
        "--page-size",
        type=page_size_arg,
        help="rows per entity per page, 0 for none (default MAHAK_PAGE_SIZE)",
    )
    p.add_argument("--paused", action="store_true", help="start paused (send `resume` later)")
    p.set_defaults(func=_start)

    p = sub.add_parser("once", help="run one sync cycle now, in this process (no Temporal)")
    p.add_argument(
        "--page-size",
        type=page_size_arg,
        help="rows per page, 0 for none (default MAHAK_PAGE_SIZE)",
    )
    p.set_defaults(func=_once)

    p = sub.add_parser("status", help="the incoming sync workflow's status, as JSON")
    p.set_defaults(func=_status)

    for name, signal_name, help_text in (
        ("pause", "pause", "stop cycles until resumed"),
        ("resume", "resume", "resume cycles"),
        ("now", "sync_now", "wake the workflow for a cycle now (signal sync_now)"),
        (
            "reconcile",
            "reconcile_now",
            "a full read of every entity from RowVersion 0 now "
            "(signal reconcile_now); results in the sync log",
        ),
    ):
        p = sub.add_parser(name, help=help_text)
        p.set_defaults(func=_signal, signal_name=signal_name)

    p = sub.add_parser("reset-cursor", help="re-sync an entity (or all) from a row version")
    p.add_argument(
        "entity",
        type=_incoming_entity,
        metavar="ENTITY",
        help=f"one of: {', '.join(INCOMING_ORDER)} (or as Mahak spells it, "
        f"e.g. ProductDetails), or '{ALL_ENTITIES}' for all",
    )
    p.add_argument("--row-version", type=int, default=0, help="default 0: everything")
    p.set_defaults(func=_reset_cursor)


def _incoming_entity(name: str) -> str:
    """`ProductDetails` and `product_details` alike; an unknown name lists the valid ones."""
    if name == ALL_ENTITIES:
        return name
    try:
        return entity_name(name, INCOMING_ORDER)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{exc} or '{ALL_ENTITIES}'") from None


def summary_json(summary: CycleSummary) -> dict[str, Any]:
    return {**summary.model_dump(mode="json"), "totals": summary.totals().model_dump()}


def _print(data: Any) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False, default=str))


async def _once(args: argparse.Namespace) -> int:
    # Imported here: only this command needs the database and Mahak client stack.
    from activities.incoming import IncomingSync
    from mahak_client.client import MahakClient
    from shopdb.pool import open_database

    settings = get_settings()
    async with open_database(settings) as pool, MahakClient.from_settings(settings) as mahak:
        summary = await IncomingSync.from_settings(pool, mahak, settings).run_cycle(
            page_size=chosen_page_size(args.page_size, settings),
            run_id=f"cli-{uuid.uuid4()}",
        )
    _print(summary_json(summary))
    return 0 if summary.ok else 1


def _handle(client: Client) -> WorkflowHandle[Any, Any]:
    from workflows.incoming_sync import WORKFLOW_ID

    return client.get_workflow_handle(WORKFLOW_ID)


# The activities that heartbeat an `EntityProgress` (`IncomingActivities.sync_entity`,
# `.reconcile_entity`), by the names the server reports.
_ENTITY_ACTIVITIES = ("incoming.sync_entity", "incoming.reconcile_entity")


async def current_progress(
    client: Client, handle: WorkflowHandle[Any, Any]
) -> EntityProgress | None:
    """Page-level progress of the running entity, from its activity's last heartbeat."""
    description = await handle.describe()
    for pending in description.raw_description.pending_activities:
        if pending.activity_type.name in _ENTITY_ACTIVITIES and pending.heartbeat_details.payloads:
            [progress] = await client.data_converter.decode(
                pending.heartbeat_details.payloads, [EntityProgress]
            )
            return progress
    return None


async def _status(args: argparse.Namespace) -> int:
    from workflows.incoming_sync import IncomingSyncWorkflow

    client = await connect(get_settings())
    handle = _handle(client)
    status: SyncStatus = await handle.query(IncomingSyncWorkflow.status)
    if status.running:
        status.current_progress = await current_progress(client, handle)
    _print(status.model_dump(mode="json"))
    return 0


async def _start(args: argparse.Namespace) -> int:
    from .launch import incoming_config, start_incoming

    settings = get_settings()
    config = incoming_config(settings, interval_seconds=args.interval, page_size=args.page_size)
    handle, started = await start_incoming(
        await connect(settings), settings, config=config, paused=args.paused
    )
    verb = "started" if started else "already running"
    print(f"{handle.id} {verb} (run {handle.run_id or (await handle.describe()).run_id})")
    return 0


async def _signal(args: argparse.Namespace) -> int:
    from .launch import running_handle

    client = await connect(get_settings())
    handle = _handle(client)
    if await running_handle(client, handle.id) is None:
        print(
            f"error: {handle.id} is not running; start it with `mahak-sync sync start`",
            file=sys.stderr,
        )
        return 1
    await handle.signal(args.signal_name)
    print(f"{args.signal_name} sent")
    return 0


async def _reset_cursor(args: argparse.Namespace) -> int:
    from workflows.incoming_sync import IncomingSyncWorkflow

    handle = _handle(await connect(get_settings()))
    request = ResetCursorRequest(entity=args.entity, row_version=args.row_version)
    try:
        result = await handle.execute_update(IncomingSyncWorkflow.reset_cursor, request)
    except WorkflowUpdateFailedError as exc:
        print(f"reset refused: {exc.cause}", file=sys.stderr)
        return 1
    _print(result.model_dump(mode="json"))
    return 0
