"""`mahak-sync sync`: the incoming sync (Mahak -> shop), by hand or through its workflow.

- `once`: one whole cycle in this process, no Temporal needed; prints a JSON summary and
  exits non-zero if any entity failed.
- `start`: start (or attach to) the workflow `mahak-incoming-sync`.
- `status`, `pause`, `resume`, `now`, `reconcile`, `reset-cursor`: talk to the running workflow
  `mahak-incoming-sync` (the same operations are in the Temporal Web UI and CLI).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import uuid
from datetime import UTC, datetime
from typing import Any

from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from mahak_client.models import INCOMING_ORDER, entity_name
from workflows.incoming_types import (
    ALL_ENTITIES,
    CycleSummary,
    EntityProgress,
    ResetCursorRequest,
    RetryState,
    SyncStatus,
)

from .cli_errors import EXIT_USAGE, CommandFailed
from .cli_output import add_json_flag, echo, fields, table, when
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

    p = sub.add_parser(
        "run", help="run a cycle now in the workflow (update run_cycle), showing its progress"
    )
    add_json_flag(p)
    p.set_defaults(func=_run)

    p = sub.add_parser("once", help="run one sync cycle now, in this process (no Temporal)")
    p.add_argument(
        "--page-size",
        type=page_size_arg,
        help="rows per page, 0 for none (default MAHAK_PAGE_SIZE)",
    )
    p.set_defaults(func=_once)

    p = sub.add_parser("status", help="the incoming sync workflow's status")
    add_json_flag(p)
    p.set_defaults(func=_status)

    from workflows.incoming_sync import IncomingSyncWorkflow

    for name, signal, help_text in (
        ("pause", IncomingSyncWorkflow.pause, "stop cycles until resumed"),
        ("resume", IncomingSyncWorkflow.resume, "resume cycles"),
        ("now", IncomingSyncWorkflow.sync_now, "wake the workflow for a cycle now (sync_now)"),
        (
            "reconcile",
            IncomingSyncWorkflow.reconcile_now,
            "a full read of every entity from RowVersion 0 now "
            "(signal reconcile_now); results in the sync log",
        ),
    ):
        p = sub.add_parser(name, help=help_text)
        p.set_defaults(func=_signal, signal=signal)

    p = sub.add_parser("reset-cursor", help="re-sync an entity (or all) from a row version")
    p.add_argument(
        "entity",
        type=_incoming_entity,
        metavar="ENTITY",
        help=f"one of: {', '.join(INCOMING_ORDER)} (or as Mahak spells it, "
        f"e.g. ProductDetails), or '{ALL_ENTITIES}' for all",
    )
    # Not `required=True`: the entity alone still parses (scripts that validate names), and
    # the handler asks for one of the two before anything is sent.
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--row-version",
        type=_row_version,
        metavar="N",
        help="read the entity again from RowVersion N (rows newer than N)",
    )
    where.add_argument(
        "--to-start",
        action="store_true",
        help="read the entity again from the start (RowVersion 0): everything",
    )
    add_json_flag(p)
    p.set_defaults(func=_reset_cursor)


def _row_version(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a RowVersion: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"a RowVersion is 0 or more, got {value}")
    return value


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
    return (await current_activity(client, handle))[0]


async def current_activity(
    client: Client, handle: WorkflowHandle[Any, Any]
) -> tuple[EntityProgress | None, RetryState | None]:
    """The running entity's progress (its last heartbeat) and, while Temporal retries it
    (Mahak or the database failing), the attempt, its last error and the next try."""
    description = await handle.describe()
    for pending in description.raw_description.pending_activities:
        if pending.activity_type.name not in _ENTITY_ACTIVITIES:
            continue
        progress = None
        if pending.heartbeat_details.payloads:
            [progress] = await client.data_converter.decode(
                pending.heartbeat_details.payloads, [EntityProgress]
            )
        retry = None
        if pending.attempt > 1 or pending.HasField("last_failure"):
            retry = RetryState(
                entity_activity=pending.activity_type.name,
                attempt=pending.attempt,
                last_error=pending.last_failure.message or None,
                next_attempt_at=pending.next_attempt_schedule_time.ToDatetime(tzinfo=UTC)
                if pending.HasField("next_attempt_schedule_time")
                else None,
            )
        return progress, retry
    return None, None


NOT_RUNNING = "the incoming sync is not running; start it with `mahak-sync sync start`"


async def _running(client: Client) -> WorkflowHandle[Any, Any]:
    """The running incoming sync's handle; refuses (exit 1) when none runs."""
    from .launch import running_handle

    handle = await running_handle(client, _handle(client).id)
    if handle is None:
        raise CommandFailed(NOT_RUNNING)
    return handle


async def _status(args: argparse.Namespace) -> int:
    from workflows.incoming_sync import IncomingSyncWorkflow

    client = await connect(get_settings())
    handle = await _running(client)
    try:
        status: SyncStatus = await handle.query(IncomingSyncWorkflow.status)
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:  # ended between the two calls
            raise CommandFailed(NOT_RUNNING) from exc
        raise
    if status.running:
        status.current_progress, status.current_retry = await current_activity(client, handle)
    if args.json:
        _print(status.model_dump(mode="json"))
    else:
        echo(status_lines(status))
    return 0


def status_lines(status: SyncStatus, *, now: datetime | None = None) -> list[str]:
    """The `status` query for people: state, last cycle per entity, cursors."""
    now = now or datetime.now(UTC)
    if status.paused:
        state = "paused (resume with `mahak-sync sync resume`)"
    elif status.running:
        # The running activity's heartbeat names the entity it is reading; the workflow's own
        # `current_entity` is the first of the entities one activity reads in a row.
        at = status.current_progress.entity if status.current_progress else status.current_entity
        state = f"running a cycle, now at {at}" if at else "running a cycle"
    else:
        state = "idle"
    progress = status.current_progress
    config = status.config
    lines = fields(
        [
            ("incoming sync", state),
            (
                "progress",
                progress
                and f"{progress.entity}: {progress.pages} page(s), cursor {progress.cursor}, "
                f"{progress.counts.fetched} row(s) fetched",
            ),
            (
                "retrying",
                (retry := status.current_retry)
                and f"attempt {retry.attempt}"
                + (
                    f", next {when(retry.next_attempt_at, now=now)}"
                    if retry.next_attempt_at
                    else ""
                )
                + (f"; last error: {retry.last_error}" if retry.last_error else ""),
            ),
            ("next run", None if status.running else when(status.next_run_at, now=now)),
            ("cycles done", status.cycles_done),
            (
                "last error",
                status.last_error
                and f"{status.last_error} ({when(status.last_error_at, now=now)})",
            ),
            (
                "config",
                f"every {config.interval_seconds:g} s, page size "
                f"{config.page_size or 'none'}, reconcile "
                + (
                    f"every {config.reconcile_every_seconds:g} s"
                    if config.reconcile_every_seconds
                    else "on request only"
                ),
            ),
        ]
    )
    cycle = status.last_cycle
    if cycle is None:
        lines.append("last cycle     none yet")
    else:
        verdict = "ok" if cycle.ok else "with errors"
        kind = "reconciliation" if cycle.reconcile else "cycle"
        lines.append(
            f"last {kind}     {cycle.run_id} ({cycle.trigger}), started {when(cycle.started_at, now=now)}, "
            + (f"finished {when(cycle.finished_at, now=now)}, " if cycle.finished_at else "")
            + verdict
        )
        if cycle.skipped:
            lines.append(f"skipped        {', '.join(cycle.skipped)}")
    rows = []
    for entity in sorted(set(status.cursors) | set(cycle.entities if cycle else {}), key=_order):
        result = cycle.entities.get(entity) if cycle else None
        counts = result.counts if result else None
        rows.append(
            [
                entity,
                status.cursors.get(entity),
                counts and counts.fetched,
                counts and counts.inserted,
                counts and counts.updated,
                counts and counts.deleted,
                counts and counts.dead_lettered,
                result and result.error,
            ]
        )
    if rows:
        lines.append("")
        lines += table(
            ["entity", "cursor", "fetched", "inserted", "updated", "deleted", "dead", "error"],
            rows,
        )
    return lines


def _order(entity: str) -> tuple[int, str]:
    return (
        INCOMING_ORDER.index(entity) if entity in INCOMING_ORDER else len(INCOMING_ORDER),
        entity,
    )


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
    handle = await _running(await connect(get_settings()))
    await handle.signal(args.signal)
    print(f"{args.signal.__name__} sent")
    return 0


async def _reset_cursor(args: argparse.Namespace) -> int:
    from workflows.incoming_sync import IncomingSyncWorkflow

    if args.row_version is None and not args.to_start:
        raise CommandFailed(
            f"say where to read {args.entity} from: --row-version N (rows newer than N) or "
            "--to-start (everything)",
            EXIT_USAGE,
        )
    handle = await _running(await connect(get_settings()))
    row_version = 0 if args.to_start else args.row_version
    request = ResetCursorRequest(entity=args.entity, row_version=row_version)
    try:
        result = await handle.execute_update(IncomingSyncWorkflow.reset_cursor, request)
    except WorkflowUpdateFailedError as exc:
        raise CommandFailed(f"reset refused: {exc.cause or exc}") from exc
    if args.json:
        _print(result.model_dump(mode="json"))
    else:
        for entity, cursor in result.cursors.items():
            print(f"{entity}: cursor set to {cursor}; the next cycle reads it again from there")
    return 0


async def _run(args: argparse.Namespace) -> int:
    """The `run_cycle` update, with the entity being read shown as the cycle goes (the
    workflow's `status` query, twice a second), then the cycle's counts per entity."""
    from temporalio.client import WorkflowUpdateStage

    from workflows.incoming_sync import IncomingSyncWorkflow

    client = await connect(get_settings())
    handle = await _running(client)
    try:
        update = await handle.start_update(
            IncomingSyncWorkflow.run_cycle, wait_for_stage=WorkflowUpdateStage.ACCEPTED
        )
    except WorkflowUpdateFailedError as exc:
        cause = exc.cause
        reason = cause.message if isinstance(cause, ApplicationError) else (cause or exc)
        raise CommandFailed(f"run_cycle refused: {reason}") from None
    outcome = asyncio.ensure_future(update.result())
    shown: str | None = None
    while not outcome.done():
        current = (await handle.query(IncomingSyncWorkflow.status)).current_entity
        if current and current != shown and not args.json:
            print(f"reading {current} ...", flush=True)
            shown = current
        await asyncio.wait([outcome], timeout=0.5)
    try:
        summary: CycleSummary = outcome.result()
    except WorkflowUpdateFailedError as exc:
        cause = exc.cause
        if isinstance(cause, ApplicationError) and cause.non_retryable:  # a validator's refusal
            raise CommandFailed(f"run_cycle refused: {cause.message}") from None
        raise CommandFailed(f"run_cycle failed: {cause or exc}") from None
    if args.json:
        _print(summary_json(summary))
        return 0 if summary.ok else 1
    echo(
        table(
            ["entity", "fetched", "inserted", "updated", "deleted", "error"],
            [
                [
                    name,
                    r.counts.fetched,
                    r.counts.inserted,
                    r.counts.updated,
                    r.counts.deleted,
                    (r.error or "")[:80],
                ]
                for name, r in summary.entities.items()
            ],
        )
    )
    verdict = "ok" if summary.ok else f"with errors (skipped: {', '.join(summary.skipped) or '-'})"
    print(f"cycle {summary.run_id}: {verdict}")
    return 0 if summary.ok else 1
