"""`mahak-sync webhook`, `mahak-sync order ...` and `mahak-sync orders list`: the order side for
operators.

    mahak-sync webhook [--host 127.0.0.1] [--port 8080]
    mahak-sync order start 42
    mahak-sync order status 42 [--json]
    mahak-sync order show 42 [--json]
    mahak-sync order resolve 42 --action resend|cancel|mark_synced [--note "..."]
    mahak-sync order sweep
    mahak-sync orders list [--status dispute] [--limit 50] [--json]

`resolve` goes through the workflow's `resolve_dispute` update, so a decision that does not
apply (unknown action, no dispute pending) is refused with the reason. The same decision can
be sent with the Temporal CLI:

    temporal workflow update execute --workflow-id order-sync-42 --name resolve_dispute \\
        --input '{"action": "cancel", "note": "customer asked"}'
"""

from __future__ import annotations

import argparse
import json
from datetime import timedelta
from typing import Any

from temporalio.client import Client, WorkflowExecutionStatus, WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode

from workflows.order_types import DISPUTE_ACTIONS, OrderSyncStatus, order_workflow_id

from .cli_errors import CommandFailed
from .cli_output import add_json_flag, echo, fields, print_json, table, when, workflow_url
from .config import get_settings
from .orders_api import order_sync_status, resolve_order_dispute, start_order_sync

# How long `order show` waits for the workflow's `status` query (no worker: no answer).
QUERY_TIMEOUT = timedelta(seconds=5)
SYNC_STATUS_CHOICES = ("pending", "sending", "synced", "dispute", "cancelled", "failed")


def register(subparsers: argparse._SubParsersAction) -> None:
    hook = subparsers.add_parser(
        "webhook", help="run the payment callback (POST /payments/callback)"
    )
    hook.add_argument("--host", default="127.0.0.1")
    hook.add_argument("--port", type=int, default=8080)
    hook.set_defaults(func=_webhook)

    order = subparsers.add_parser("order", help="start, inspect or resolve one order's sync")
    sub = order.add_subparsers(dest="order_command", metavar="ACTION", required=True)
    start = sub.add_parser("start", help="start (or attach to) a paid order's sync workflow")
    start.add_argument("order_id", type=int)
    start.set_defaults(func=_start)
    status = sub.add_parser("status", help="the sync workflow's status query")
    status.add_argument("order_id", type=int)
    add_json_flag(status)
    status.set_defaults(func=_status)
    show = sub.add_parser(
        "show", help="the order in the shop database, its workflow's status and Web UI link"
    )
    show.add_argument("order_id", type=int)
    add_json_flag(show)
    show.set_defaults(func=_show)
    resolve = sub.add_parser("resolve", help="decide a disputed order")
    resolve.add_argument("order_id", type=int)
    resolve.add_argument("--action", required=True, choices=DISPUTE_ACTIONS)
    resolve.add_argument("--note", default=None)
    add_json_flag(resolve)
    resolve.set_defaults(func=_resolve)
    sweep = sub.add_parser(
        "sweep",
        help="start (or attach to) the safety-net sweep that syncs "
        "paid orders whose callback was lost",
    )
    sweep.set_defaults(func=_sweep)

    orders = subparsers.add_parser("orders", help="list the shop's orders and their sync")
    orders_sub = orders.add_subparsers(dest="orders_command", metavar="ACTION", required=True)
    listing = orders_sub.add_parser("list", help="newest orders first, from the shop database")
    listing.add_argument(
        "--status", choices=SYNC_STATUS_CHOICES, help="only orders of this sync status"
    )
    listing.add_argument("--limit", type=_positive, default=50, help="at most N (default 50)")
    add_json_flag(listing)
    listing.set_defaults(func=_list)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


async def _webhook(args: argparse.Namespace) -> int:
    from .webhook import serve

    await serve(get_settings(), host=args.host, port=args.port)
    return 0


async def _client() -> Client:
    from .temporal import connect

    return await connect(get_settings())


async def _start(args: argparse.Namespace) -> int:
    """Checked in the shop database first: an order that does not exist or is not paid
    starts nothing (its workflow would only fail)."""
    from shopdb.orders import get_order
    from shopdb.pool import open_database

    async with open_database(get_settings(), migrate=False) as pool:
        order = await get_order(pool, args.order_id)
    if order is None:
        raise CommandFailed(f"no such order {args.order_id}")
    if order.payment_status != "paid":
        refunded = " (it was refunded)" if order.payment_status == "refunded" else ""
        raise CommandFailed(f"order {args.order_id} is not paid{refunded}")
    workflow_id = await start_order_sync(
        await _client(), args.order_id, get_settings(), order=order
    )
    print(json.dumps({"order_id": args.order_id, "workflow_id": workflow_id}))
    return 0


async def _sweep(args: argparse.Namespace) -> int:
    from .launch import start_sweep

    handle = await start_sweep(await _client(), get_settings())
    print(f"{handle.id} running (run {handle.result_run_id})")
    return 0


def _no_workflow(order_id: int) -> str:
    return (
        f"order {order_id} has no sync workflow ({order_workflow_id(order_id)}); "
        f"start it with `mahak-sync order start {order_id}`"
    )


async def _status(args: argparse.Namespace) -> int:
    try:
        status = await order_sync_status(await _client(), args.order_id)
    except RPCError as err:
        if args.json:
            print(json.dumps({"order_id": args.order_id, "error": err.message}))
            return 1
        if err.status == RPCStatusCode.NOT_FOUND and "namespace" not in err.message.lower():
            raise CommandFailed(_no_workflow(args.order_id)) from err
        raise
    if args.json:
        print(status.model_dump_json(indent=2))
    else:
        echo(workflow_status_lines(status))
    return 0


def workflow_status_lines(status: OrderSyncStatus) -> list[str]:
    """An order workflow's `status` query for people."""
    dispute = status.dispute
    conflict = status.inventory_conflict
    lines = fields(
        [
            ("order", status.order_id),
            ("stage", status.stage),
            ("sync status", status.sync_status),
            ("attempts", status.attempts),
            ("last error", status.last_error),
            ("Mahak order", status.mahak_order_id),
            ("lines saved", len(status.saved_line_client_ids) or None),
            ("stale refreshes", status.stale_refreshes or None),
            (
                "dispute",
                dispute
                and f"{dispute.reason} (since {when(dispute.since)}"
                + (", escalated to staff)" if dispute.escalated else ")"),
            ),
            ("stock conflict", conflict and (conflict.reason or "signalled by the incoming sync")),
            ("saga steps", ", ".join(status.compensations)),
            ("runs", status.runs if status.runs > 1 else None),
        ]
    )
    if dispute and dispute.failures:
        lines += [
            "  "
            + " ".join(
                part
                for part in (
                    f.collection,
                    f"client id {f.client_id}" if f.client_id is not None else "",
                    f.property and f"on {f.property}",
                    f.message and f": {f.message}",
                )
                if part
            )
            for f in dispute.failures
        ]
    if dispute:
        lines.append(
            f"decide with: mahak-sync order resolve {status.order_id} "
            "--action resend|cancel|mark_synced [--note ...]"
        )
    return lines


async def _show(args: argparse.Namespace) -> int:
    from shopdb.orders import get_order
    from shopdb.pool import open_database

    settings = get_settings()
    async with open_database(settings, migrate=False) as pool:
        order = await get_order(pool, args.order_id)
    if order is None:
        raise CommandFailed(f"no such order {args.order_id}")
    workflow_id = order_workflow_id(order.id)
    workflow = await _workflow_view(await _client(), workflow_id)
    link = workflow_url(settings, workflow_id)
    if args.json:
        print_json(
            {
                "order": order.model_dump(mode="json", exclude={"customer"}),
                "workflow": {"id": workflow_id, "url": link, **workflow},
            }
        )
        return 0
    customer = order.customer
    echo(
        fields(
            [
                ("order", order.id),
                (
                    "customer",
                    customer
                    and " ".join(p for p in (customer.first_name, customer.last_name) if p),
                ),
                ("amount", f"{order.amount} {order.currency}"),
                ("payment", order.payment_status),
                ("paid at", order.paid_at and when(order.paid_at)),
                ("sync status", order.sync_status),
                ("attempts", order.sync_attempts),
                ("last error", order.last_mahak_error),
                ("Mahak order", order.mahak_order_id),
                ("Mahak receipt", order.mahak_receipt_id),
                ("synced at", order.mahak_synced_at and when(order.mahak_synced_at)),
                ("cancelled", order.cancelled_at and when(order.cancelled_at)),
                ("cancel reason", order.cancel_reason),
                (
                    "saga started",
                    order.compensation_started_at and when(order.compensation_started_at),
                ),
                ("Mahak leftovers", order.mahak_leftovers),
            ]
        )
    )
    if order.lines:
        print()
        echo(
            table(
                ["line", "product detail", "store", "quantity", "unit price", "Mahak line"],
                [
                    [
                        ln.id,
                        ln.product_detail_id,
                        ln.store_id,
                        ln.quantity,
                        ln.unit_price,
                        ln.mahak_order_detail_id,
                    ]
                    for ln in order.lines
                ],
            )
        )
    print()
    echo(fields([("workflow", f"{workflow_id} ({workflow['state']})"), ("web UI", link)]))
    status = workflow.get("status")
    if status is not None:
        echo("  " + line for line in workflow_status_lines(OrderSyncStatus.model_validate(status)))
    elif workflow.get("note"):
        print(f"  {workflow['note']}")
    return 0


async def _workflow_view(client: Client, workflow_id: str) -> dict[str, Any]:
    """The workflow's execution state and, while it runs, its `status` query."""
    from workflows.order_sync import OrderSyncWorkflow

    handle = client.get_workflow_handle(workflow_id)
    try:
        description = await handle.describe()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND and "namespace" not in err.message.lower():
            return {"state": "none", "note": "no sync workflow has run for this order"}
        raise
    state = description.status.name.lower() if description.status else "unknown"
    if description.status != WorkflowExecutionStatus.RUNNING:
        return {"state": state}
    try:
        status = await handle.query(OrderSyncWorkflow.status, rpc_timeout=QUERY_TIMEOUT)
    except RPCError as err:
        return {
            "state": state,
            "note": f"status query not answered ({err.message}); is the worker running?",
        }
    return {"state": state, "status": status.model_dump(mode="json")}


async def _list(args: argparse.Namespace) -> int:
    from shopdb.orders import list_orders
    from shopdb.pool import open_database

    async with open_database(get_settings(), migrate=False) as pool:
        found = await list_orders(pool, sync_status=args.status, limit=args.limit)
    if args.json:
        print_json(
            [
                {
                    "id": o.id,
                    "paid_at": o.paid_at,
                    "payment_status": o.payment_status,
                    "sync_status": o.sync_status,
                    "attempts": o.sync_attempts,
                    "last_error": o.last_mahak_error,
                    "mahak_order_id": o.mahak_order_id,
                }
                for o in found
            ]
        )
        return 0
    if not found:
        print("no orders" + (f" with sync status {args.status}" if args.status else ""))
        return 0
    echo(
        table(
            ["id", "payment", "paid at", "sync status", "attempts", "Mahak order", "last error"],
            [
                [
                    o.id,
                    o.payment_status,
                    o.paid_at,
                    o.sync_status,
                    o.sync_attempts,
                    o.mahak_order_id,
                    o.last_mahak_error,
                ]
                for o in found
            ],
        )
    )
    return 0


async def _resolve(args: argparse.Namespace) -> int:
    client = await _client()
    try:
        ack = await resolve_order_dispute(client, args.order_id, args.action, args.note)
    except WorkflowUpdateFailedError as err:
        raise CommandFailed(f"order {args.order_id}: refused: {err.cause or err}") from None
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise
        try:
            described = await client.get_workflow_handle(
                order_workflow_id(args.order_id)
            ).describe()
        except RPCError:
            raise CommandFailed(_no_workflow(args.order_id)) from None
        state = described.status.name.lower() if described.status else "closed"
        raise CommandFailed(
            f"order {args.order_id}: refused: its sync has ended ({state}); nothing to decide"
        ) from None
    if args.json:
        print(ack.model_dump_json())
    else:
        print(
            f"order {args.order_id}: {ack.action} accepted; follow it with "
            f"`mahak-sync order show {args.order_id}`"
        )
    return 0
