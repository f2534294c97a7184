"""Shared by the order tests: a customer with an order in the shop database, an order as
loaded (no database), and a snapshot of everything a payment callback or a sync may change."""

from __future__ import annotations

import random
from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg

from shopdb import orders
from shopdb.models import NewCustomer, NewOrder, NewOrderLine, ShopOrder, ShopOrderLine


async def make_order(
    pool: asyncpg.Pool,
    lines: list[tuple[int, int, Decimal | int, Decimal | int]],
    *,
    mahak_person_id: int | None = None,
) -> ShopOrder:
    """An unpaid order; `lines` are (product detail id, store id, quantity, unit price).

    Order ids start far apart in each test database: workflow ids (`order-sync-<id>`) live on
    a Temporal server shared by the whole run and must not collide between tests."""
    await pool.execute(
        "SELECT setval('shop_orders_id_seq', $1) WHERE (SELECT last_value FROM shop_orders_id_seq) < 1000",
        random.randrange(1_000_000, 1_000_000_000_000),
    )
    customer = await orders.create_customer(
        pool,
        NewCustomer(
            first_name="Sara",
            last_name="Ahmadi",
            mobile="09120000000",
            email="sara@example.com",
            mahak_person_id=mahak_person_id,
        ),
    )
    return await orders.create_order(
        pool,
        NewOrder(
            customer_id=customer.id,
            lines=[
                NewOrderLine(
                    product_detail_id=d, store_id=s, quantity=Decimal(q), unit_price=Decimal(p)
                )
                for d, s, q, p in lines
            ],
            shipping_address="Tehran, Valiasr St. 1",
            shipping_phone="02100000000",
        ),
    )


async def db_snapshot(pool: asyncpg.Pool) -> dict[str, Any]:
    """Every row a callback or a sync may touch, as comparable plain data."""
    out: dict[str, Any] = {}
    for table in (
        "shop_orders",
        "shop_order_lines",
        "shop_stock_movements",
        "notification_outbox",
        "mahak_mapping",
    ):
        rows = await pool.fetch(f"SELECT * FROM {table} ORDER BY 1")
        out[table] = [dict(r) for r in rows]
    return out


def loaded_order(paid_at: datetime, **extra: Any) -> ShopOrder:
    """Order 7 as the shop loads it, paid at `paid_at`: two lines (1 and 2 of product details
    101 and 102 in store 5, at 1000), client ids as the database derives them."""
    lines = [
        ShopOrderLine(
            id=i,
            order_id=7,
            product_detail_id=100 + i,
            store_id=5,
            quantity=Decimal(i),
            unit_price=Decimal(1000),
            discount=Decimal(0),
            order_detail_client_id=8_100_000_000_000_000 + i,
        )
        for i in (1, 2)
    ]
    return ShopOrder(
        id=7,
        customer_id=3,
        amount=Decimal(3000),
        currency="IRR",
        payment_status="paid",
        payment_ref="PAY-7",
        paid_at=paid_at,
        shipping_cost=Decimal(0),
        discount=Decimal(0),
        order_client_id=8_000_000_000_000_007,
        sync_status="sending",
        synced_to_mahak=False,
        sync_attempts=0,
        created_at=paid_at,
        updated_at=paid_at,
        lines=lines,
        **extra,
    )
