"""`mahak-sync status`: the operator's one screen.

The incoming sync (state, last cycle, next run, rows per entity), orders by sync status (and
synced today), the oldest dispute, open dead letters, and the workers polling the task queue.
What cannot be reached is said in its place; the rest is still shown.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.service import RPCError, RPCStatusCode

from shopdb.pool import open_database

from .cli_output import add_json_flag, echo, fields, print_json, table, when
from .config import get_settings
from .startup import describe_error
from .temporal import connect

_ORDERS = """
    SELECT sync_status, count(*) AS n,
           count(*) FILTER (WHERE sync_status = 'synced' AND mahak_synced_at >= date_trunc('day', now()))
               AS today
    FROM shop_orders WHERE payment_status = 'paid' GROUP BY sync_status
"""
_OLDEST_DISPUTE = """
    SELECT id, updated_at, last_mahak_error FROM shop_orders
    WHERE sync_status = 'dispute' ORDER BY updated_at LIMIT 1
"""
_ENTITIES = """
    SELECT DISTINCT ON (entity) entity, finished_at, fetched, inserted, updated, error
    FROM mahak_sync_log WHERE entity <> 'inventory_conflicts'
    ORDER BY entity, started_at DESC
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("status", help="one screen: incoming sync, orders, workers")
    add_json_flag(p)
    p.set_defaults(func=_status)


async def _status(args: argparse.Namespace) -> int:
    settings = get_settings()
    report: dict[str, Any] = {}
    async with open_database(settings) as pool:
        rows = await pool.fetch(_ORDERS)
        report["orders"] = {r["sync_status"]: r["n"] for r in rows}
        report["synced_today"] = sum(r["today"] for r in rows)
        dispute = await pool.fetchrow(_OLDEST_DISPUTE)
        report["oldest_dispute"] = dict(dispute) if dispute else None
        report["dead_letters_open"] = await pool.fetchval(
            "SELECT count(*) FROM mahak_dead_letters WHERE resolved_at IS NULL"
        )
        report["entities"] = [dict(r) for r in await pool.fetch(_ENTITIES)]
    report["incoming"], report["workers"] = await _temporal(settings)
    if args.json:
        print_json(report)
    else:
        echo(_lines(report))
    return 0


async def _temporal(settings: Any) -> tuple[dict[str, Any], list[dict[str, Any]] | str]:
    """The incoming sync's status and the task queue's pollers, or why they are unknown."""
    from workflows.incoming_sync import WORKFLOW_ID, IncomingSyncWorkflow

    try:
        client = await connect(settings)
    except Exception as exc:  # noqa: BLE001 - shown in its place
        reason = f"Temporal not reachable: {describe_error(exc)}"
        return {"state": reason}, reason
    try:
        status = await client.get_workflow_handle(WORKFLOW_ID).query(IncomingSyncWorkflow.status)
        last = status.last_cycle
        incoming: dict[str, Any] = {
            "state": "paused" if status.paused else "running a cycle" if status.running else "idle",
            "cycles_done": status.cycles_done,
            "next_run_at": status.next_run_at,
            "last_cycle_finished_at": last.finished_at if last else None,
            "last_cycle_ok": last.ok if last else None,
            "last_error": status.last_error,
        }
    except RPCError as exc:
        incoming = {
            "state": "not running (start it with `mahak-sync sync start`)"
            if exc.status == RPCStatusCode.NOT_FOUND
            else f"not answering ({describe_error(exc)})"
        }
    except Exception as exc:  # noqa: BLE001 - e.g. no worker to answer the query: said in place
        incoming = {"state": f"not answering ({describe_error(exc)})"}
    described = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=client.namespace,
            task_queue=TaskQueue(name=settings.temporal_task_queue),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
        )
    )
    workers = [
        {"identity": p.identity, "last_poll": p.last_access_time.ToDatetime(tzinfo=UTC)}
        for p in described.pollers
    ]
    return incoming, workers


def _lines(report: dict[str, Any]) -> list[str]:
    now = datetime.now(UTC)
    incoming = report["incoming"]
    orders = report["orders"]
    dispute = report["oldest_dispute"]
    workers = report["workers"]
    lines = fields(
        [
            ("incoming sync", incoming.get("state")),
            (
                "last cycle",
                incoming.get("last_cycle_finished_at")
                and (
                    f"{when(incoming['last_cycle_finished_at'], now=now)}"
                    f"{'' if incoming.get('last_cycle_ok') else ', with errors'}"
                ),
            ),
            ("next run", incoming.get("next_run_at") and when(incoming["next_run_at"], now=now)),
            ("last error", incoming.get("last_error")),
            ("paid orders", ", ".join(f"{s} {n}" for s, n in sorted(orders.items())) or "none"),
            ("synced today", report["synced_today"]),
            (
                "oldest dispute",
                dispute
                and (
                    f"order {dispute['id']}, since {when(dispute['updated_at'], now=now)}: "
                    f"{(dispute['last_mahak_error'] or '')[:120]}"
                ),
            ),
            (
                "dead letters",
                f"{report['dead_letters_open']} open"
                + (" (mahak-sync dead-letters list)" if report["dead_letters_open"] else ""),
            ),
            (
                "workers",
                workers
                if isinstance(workers, str)
                else (f"{len(workers)} polling" if workers else "none polling the task queue"),
            ),
        ]
    )
    if report["entities"]:
        lines += [
            "",
            *table(
                ["entity", "last read", "fetched", "inserted", "updated", "error"],
                [
                    [
                        e["entity"],
                        when(e["finished_at"], now=now),
                        e["fetched"],
                        e["inserted"],
                        e["updated"],
                        (e["error"] or "")[:60],
                    ]
                    for e in report["entities"]
                ],
            ),
        ]
    return lines
