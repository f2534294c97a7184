"""`mahak-sync webhook` and `mahak-sync order start|status|resolve`: the order side for operators.

    mahak-sync webhook [--host 127.0.0.1] [--port 8080]
    mahak-sync order start 42
    mahak-sync order status 42
    mahak-sync order resolve 42 --action resend|cancel|mark_synced [--note "..."]
    mahak-sync order sweep

`resolve` goes through the workflow's `resolve_dispute` update, so a decision that does not
apply (unknown action, no dispute pending) is refused with the reason. The same decision can
be sent with the Temporal CLI:

    temporal workflow update execute --workflow-id order-sync-42 --name resolve_dispute \\
        --input '{"action": "cancel", "note": "customer asked"}'
"""

from __future__ import annotations

import argparse
import json

from temporalio.client import WorkflowUpdateFailedError
from temporalio.service import RPCError

from workflows.order_types import DISPUTE_ACTIONS

from .config import get_settings
from .orders_api import order_sync_status, resolve_order_dispute, start_order_sync


def register(subparsers: argparse._SubParsersAction) -> None:
    hook = subparsers.add_parser(
        "webhook", help="run the payment callback (POST /payments/callback)"
    )
    hook.add_argument("--host", default="127.0.0.1")
    hook.add_argument("--port", type=int, default=8080)
    hook.set_defaults(func=_webhook)

    order = subparsers.add_parser("order", help="start, inspect or resolve one order's sync")
    sub = order.add_subparsers(dest="order_command", metavar="ACTION", required=True)
    start = sub.add_parser("start", help="start (or attach to) the order's sync workflow")
    start.add_argument("order_id", type=int)
    start.set_defaults(func=_start)
    status = sub.add_parser("status", help="the sync workflow's status query, as JSON")
    status.add_argument("order_id", type=int)
    status.set_defaults(func=_status)
    resolve = sub.add_parser("resolve", help="decide a disputed order")
    resolve.add_argument("order_id", type=int)
    resolve.add_argument("--action", required=True, choices=DISPUTE_ACTIONS)
    resolve.add_argument("--note", default=None)
    resolve.set_defaults(func=_resolve)
    sweep = sub.add_parser(
        "sweep",
        help="start (or attach to) the safety-net sweep that syncs "
        "paid orders whose callback was lost",
    )
    sweep.set_defaults(func=_sweep)


async def _webhook(args: argparse.Namespace) -> int:
    from .webhook import serve

    await serve(get_settings(), host=args.host, port=args.port)
    return 0


async def _client():
    from .temporal import connect

    return await connect(get_settings())


async def _start(args: argparse.Namespace) -> int:
    workflow_id = await start_order_sync(await _client(), args.order_id, get_settings())
    print(json.dumps({"order_id": args.order_id, "workflow_id": workflow_id}))
    return 0


async def _sweep(args: argparse.Namespace) -> int:
    from .launch import start_sweep

    handle = await start_sweep(await _client(), get_settings())
    print(f"{handle.id} running (run {handle.result_run_id})")
    return 0


async def _status(args: argparse.Namespace) -> int:
    try:
        status = await order_sync_status(await _client(), args.order_id)
    except RPCError as err:
        print(json.dumps({"order_id": args.order_id, "error": err.message}))
        return 1
    print(status.model_dump_json(indent=2))
    return 0


async def _resolve(args: argparse.Namespace) -> int:
    try:
        ack = await resolve_order_dispute(await _client(), args.order_id, args.action, args.note)
    except WorkflowUpdateFailedError as err:
        print(json.dumps({"order_id": args.order_id, "refused": str(err.cause or err)}))
        return 1
    except RPCError as err:
        print(json.dumps({"order_id": args.order_id, "error": err.message}))
        return 1
    print(ack.model_dump_json())
    return 0
