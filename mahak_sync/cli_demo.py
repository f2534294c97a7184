"""`mahak-sync demo order [--lines N] [--pay]`: see the order flow without writing SQL.

Creates a demo customer and an order of N products the shop has mirrored from Mahak (in
stock), and with `--pay` pays it through the signed payment webhook, as a payment gateway
would; prints the order id, the workflow id and the Web UI link to follow it.
"""

from __future__ import annotations

import argparse
import json
import time
from decimal import Decimal

import httpx

from shopdb import orders
from shopdb.models import NewCustomer, NewOrder, NewOrderLine
from shopdb.pool import open_database
from workflows.order_types import order_workflow_id

from .cli_output import echo, fields, workflow_url
from .config import get_settings
from .webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign

# Products the shop can sell: mirrored, not deleted, in stock in some store.
_IN_STOCK = """
    SELECT d.id AS product_detail_id, s.store_id, d.shop_price
    FROM mahak_product_details d
    JOIN mahak_stock s ON s.product_detail_id = d.id AND NOT s.deleted AND s.count1 >= 1
    WHERE NOT d.deleted
    ORDER BY d.id, s.store_id
    LIMIT $1
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    demo = subparsers.add_parser("demo", help="demo data for trying the order flow")
    sub = demo.add_subparsers(dest="demo_command", metavar="WHAT", required=True)
    order = sub.add_parser("order", help="create a demo customer and order (and pay it)")
    order.add_argument(
        "--lines",
        type=int,
        default=1,
        choices=range(1, 21),
        metavar="N",
        help="products on the order, 1-20 (default 1)",
    )
    order.add_argument(
        "--pay",
        action="store_true",
        help="pay it through the signed webhook at WEBHOOK_URL (starts its sync)",
    )
    order.set_defaults(func=_order)


async def _order(args: argparse.Namespace) -> int:
    settings = get_settings()
    async with open_database(settings) as pool:
        products = await pool.fetch(_IN_STOCK, args.lines)
        if not products:
            print(
                "error: the shop has no products in stock from Mahak yet; run "
                "`mahak-sync sync now` (or wait for the first incoming cycle)"
            )
            return 1
        stamp = int(time.time())
        customer = await orders.create_customer(
            pool,
            NewCustomer(first_name="Demo", last_name=f"Customer {stamp}", mobile="09120000000"),
        )
        order = await orders.create_order(
            pool,
            NewOrder(
                customer_id=customer.id,
                lines=[
                    NewOrderLine(
                        product_detail_id=p["product_detail_id"],
                        store_id=p["store_id"],
                        quantity=Decimal(1),
                        unit_price=p["shop_price"],
                    )
                    for p in products
                ],
            ),
        )
    workflow_id = order_workflow_id(order.id)
    lines = [("order", order.id), ("lines", len(order.lines)), ("amount", f"{order.amount:f}")]
    if args.pay:
        status, answer = await _pay(
            settings.webhook_url, settings.webhook_secret.get_secret_value(), order.id, order.amount
        )
        lines.append(("paid", f"webhook answered {status}: {answer}"))
        if status >= 300:
            echo(fields(lines))
            return 1
        lines += [("workflow", workflow_id), ("web ui", workflow_url(settings, workflow_id))]
    else:
        lines.append(("paid", "no (add --pay to pay it through the webhook and start its sync)"))
    echo(fields(lines))
    return 0


async def _pay(url: str, secret: str, order_id: int, amount: Decimal) -> tuple[int, str]:
    if not secret:
        return 400, "WEBHOOK_SECRET is not set"
    body = json.dumps(
        {"order_id": order_id, "amount": str(amount), "payment_ref": f"DEMO-{order_id}"}
    ).encode()
    stamp = int(time.time())
    headers = {
        TIMESTAMP_HEADER: str(stamp),
        SIGNATURE_HEADER: sign(secret, stamp, body),
        "Content-Type": "application/json",
    }
    async with httpx.AsyncClient(timeout=30) as http:
        response = await http.post(url, content=body, headers=headers)
    return response.status_code, response.text.strip()
