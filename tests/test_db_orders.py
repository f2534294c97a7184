"""Website orders on the real PostgreSQL: payment, compare-and-set races, cancel + restock,
the notification outbox, the sweep query and inventory conflicts."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import asyncpg
import pytest

from mahak_client.models import (
    EntityBatch,
    Order,
    OrderDetail,
    ProductDetail,
    ProductDetailStoreAsset,
)
from shopdb import orders
from shopdb.catalog import apply_page
from shopdb.models import NewCustomer, NewOrder, NewOrderLine, ShopOrder
from shopdb.notifications import pending_notifications


async def new_order(
    pool: asyncpg.Pool, *lines: tuple[int, int, str], paid_ref: str | None = None
) -> ShopOrder:
    customer = await orders.create_customer(
        pool, NewCustomer(first_name="Reza", mobile="09120000000")
    )
    order = await orders.create_order(
        pool,
        NewOrder(
            customer_id=customer.id,
            lines=[
                NewOrderLine(
                    product_detail_id=d, store_id=s, quantity=Decimal(q), unit_price=Decimal("1000")
                )
                for d, s, q in (lines or [(1, 1, "1")])
            ],
        ),
    )
    if paid_ref:
        order = await orders.mark_paid(pool, order.id, order.amount, paid_ref)
    return order


async def test_created_order_loads_with_lines_customer_and_client_ids(
    db_pool: asyncpg.Pool,
) -> None:
    order = await new_order(db_pool, (11, 1, "2"), (12, 2, "1.5"))
    loaded = await orders.get_order(db_pool, order.id)
    assert loaded == order
    assert loaded.amount == Decimal("3500") and loaded.payment_status == "unpaid"
    assert loaded.order_client_id == 8_000_000_000_000_000 + order.id
    assert [ln.order_detail_client_id - 8_100_000_000_000_000 for ln in loaded.lines] == [
        ln.id for ln in loaded.lines
    ]
    assert loaded.customer is not None and loaded.customer.mobile == "09120000000"
    assert await orders.get_order(db_pool, 999_999) is None


async def test_mark_paid_is_idempotent_and_refuses_mismatches(db_pool: asyncpg.Pool) -> None:
    order = await new_order(db_pool, (1, 1, "3"))
    with pytest.raises(orders.AmountMismatchError) as mismatch:
        await orders.mark_paid(db_pool, order.id, "2999", "pay-1")
    assert mismatch.value.expected == Decimal(3000)
    assert (await orders.get_order(db_pool, order.id)).payment_status == "unpaid"

    paid = await orders.mark_paid(db_pool, order.id, Decimal("3000.00"), "pay-1")
    assert (
        paid.payment_status == "paid" and paid.payment_ref == "pay-1" and paid.paid_at is not None
    )
    again = await orders.mark_paid(
        db_pool, order.id, 3000, "pay-1"
    )  # the gateway retries its webhook
    assert again.paid_at == paid.paid_at
    with pytest.raises(orders.AlreadyPaidError):
        await orders.mark_paid(db_pool, order.id, 3000, "pay-2")
    with pytest.raises(orders.OrderNotFoundError):
        await orders.mark_paid(db_pool, 424242, 1, "pay-3")


async def test_concurrent_transitions_have_exactly_one_winner(db_pool: asyncpg.Pool) -> None:
    order = await new_order(db_pool, paid_ref="p")
    attempts = [
        orders.transition_status(db_pool, order.id, "pending", "sending") for _ in range(12)
    ]
    attempts += [
        orders.transition_status(db_pool, order.id, {"pending", "failed"}, "cancelled")
        for _ in range(12)
    ]
    results = await asyncio.gather(*attempts)
    assert results.count(True) == 1
    final = await orders.get_order(db_pool, order.id)
    winner = "sending" if results.index(True) < 12 else "cancelled"
    assert final.sync_status == winner


async def test_transition_fields_and_synced_bookkeeping(db_pool: asyncpg.Pool) -> None:
    order = await new_order(db_pool, paid_ref="p")
    assert await orders.transition_status(db_pool, order.id, "pending", "sending")
    assert not await orders.transition_status(db_pool, order.id, "pending", "sending")
    assert await orders.transition_status(
        db_pool, order.id, "sending", "dispute", last_mahak_error="stock too low"
    )
    got = await orders.get_order(db_pool, order.id)
    assert (got.sync_status, got.last_mahak_error, got.synced_to_mahak) == (
        "dispute",
        "stock too low",
        False,
    )
    assert await orders.transition_status(
        db_pool, order.id, {"dispute"}, "synced", mahak_order_id=900001
    )
    got = await orders.get_order(db_pool, order.id)
    assert got.synced_to_mahak and got.mahak_synced_at is not None and got.mahak_order_id == 900001
    with pytest.raises(ValueError):
        await orders.transition_status(db_pool, order.id, "synced", "shipped")
    with pytest.raises(ValueError):
        await orders.transition_status(db_pool, order.id, "synced", "pending", amount=0)


async def test_mahak_ids_and_attempts_are_recorded(db_pool: asyncpg.Pool) -> None:
    order = await new_order(db_pool, (1, 1, "1"), (2, 1, "1"), paid_ref="p")
    assert await orders.record_attempt(db_pool, order.id, "timeout") == 1
    assert await orders.record_attempt(db_pool, order.id, None) == 2
    # The workflow passes its own count: recording attempt 3 twice (a retried activity) counts once.
    assert await orders.record_attempt(db_pool, order.id, "503", attempt=3) == 3
    assert await orders.record_attempt(db_pool, order.id, None, attempt=3) == 3
    first, second = order.lines
    got = await orders.record_mahak_ids(
        db_pool,
        order.id,
        700,
        {first.order_detail_client_id: 71, second.order_detail_client_id: 72},
    )
    assert got.mahak_order_id == 700 and got.synced_to_mahak and got.mahak_synced_at is not None
    assert [ln.mahak_order_detail_id for ln in got.lines] == [71, 72]
    assert got.sync_attempts == 3 and got.last_mahak_error is None
    with pytest.raises(orders.OrderNotFoundError):
        await orders.record_attempt(db_pool, 31337, "x")


async def test_cancel_and_restock_once_even_when_raced(db_pool: asyncpg.Pool) -> None:
    order = await new_order(db_pool, (5, 1, "2"), (6, 2, "1"), paid_ref="p")
    results = await asyncio.gather(
        *(orders.cancel_and_restock(db_pool, order.id, "out of stock") for _ in range(6))
    )
    assert results.count(True) == 1
    assert await orders.cancel_and_restock(db_pool, order.id, "again") is False
    got = await orders.get_order(db_pool, order.id)
    assert (
        got.sync_status == "cancelled" and got.cancel_reason == "out of stock" and got.cancelled_at
    )
    assert all(ln.restocked_at is not None for ln in got.lines)
    moves = await db_pool.fetch(
        "SELECT product_detail_id, store_id, delta, order_line_id FROM shop_stock_movements ORDER BY id"
    )
    assert [(m["product_detail_id"], m["store_id"], m["delta"]) for m in moves] == [
        (5, 1, Decimal(2)),
        (6, 2, Decimal(1)),
    ]


async def test_cancel_and_restock_is_all_or_nothing(db_pool: asyncpg.Pool) -> None:
    order = await new_order(db_pool, (5, 1, "2"), (6, 2, "1"), paid_ref="p")
    # Make the second restock row fail inside the transaction.
    await db_pool.execute("""
        CREATE FUNCTION refuse_detail_6() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN IF NEW.product_detail_id = 6 THEN RAISE EXCEPTION 'ledger down'; END IF; RETURN NEW; END $$;
        CREATE TRIGGER refuse BEFORE INSERT ON shop_stock_movements
            FOR EACH ROW EXECUTE FUNCTION refuse_detail_6();
    """)
    with pytest.raises(asyncpg.RaiseError):
        await orders.cancel_and_restock(db_pool, order.id, "x")
    got = await orders.get_order(db_pool, order.id)
    assert got.sync_status == "pending" and got.cancelled_at is None
    assert all(ln.restocked_at is None for ln in got.lines)
    assert await db_pool.fetchval("SELECT count(*) FROM shop_stock_movements") == 0


async def test_a_synced_order_is_not_cancelled_by_default(db_pool: asyncpg.Pool) -> None:
    order = await new_order(db_pool, paid_ref="p")
    await orders.transition_status(db_pool, order.id, "pending", "synced")
    with pytest.raises(orders.OrderStateError):
        await orders.cancel_and_restock(db_pool, order.id, "x")
    assert await orders.cancel_and_restock(db_pool, order.id, "refund", allowed_from={"synced"})


async def test_notifications_are_enqueued_once(db_pool: asyncpg.Pool) -> None:
    order = await new_order(db_pool, paid_ref="p")
    payload = {"text": "سفارش شما لغو شد", "order": order.id}
    assert await orders.enqueue_notification(
        db_pool, kind="order_cancelled", order_id=order.id, payload=payload
    )
    assert not await orders.enqueue_notification(
        db_pool, kind="order_cancelled", order_id=order.id, payload=payload
    )
    (note,) = await pending_notifications(db_pool)
    assert note.payload == payload and note.customer_id == order.customer_id
    assert note.dedup_key == f"order_cancelled:{order.id}"


async def test_paid_orders_without_sync_is_what_the_sweep_needs(db_pool: asyncpg.Pool) -> None:
    await new_order(db_pool)  # unpaid
    waiting = await new_order(db_pool, paid_ref="a")
    failed = await new_order(db_pool, paid_ref="b")
    await orders.transition_status(db_pool, failed.id, "pending", "failed")
    synced = await new_order(db_pool, paid_ref="c")
    await orders.record_mahak_ids(db_pool, synced.id, 1)
    cancelled = await new_order(db_pool, paid_ref="d")
    await orders.cancel_and_restock(db_pool, cancelled.id, "x")
    found = await orders.paid_orders_without_sync(db_pool, limit=10)
    assert [o.id for o in found] == [waiting.id, failed.id]
    assert found[0].lines and found[0].customer is not None
    assert [o.id for o in await orders.paid_orders_without_sync(db_pool, limit=1)] == [waiting.id]


async def test_inventory_conflicts_compare_mahak_stock_with_held_quantities(
    db_pool: asyncpg.Pool,
) -> None:
    await mirror_details(db_pool, 100, 200, 300)
    stock = [
        ProductDetailStoreAsset(
            product_detail_store_asset_id=1,
            product_detail_id=100,
            store_id=1,
            count1=5,
            row_version=1,
        ),
        ProductDetailStoreAsset(
            product_detail_store_asset_id=2,
            product_detail_id=200,
            store_id=1,
            count1=2,
            row_version=2,
        ),
        ProductDetailStoreAsset(
            product_detail_store_asset_id=3,
            product_detail_id=300,
            store_id=2,
            count1=9,
            row_version=3,
            deleted=True,
        ),
    ]
    await apply_page(
        db_pool, EntityBatch(entity="product_detail_store_assets", rows=stock), new_cursor=3
    )
    a = await new_order(db_pool, (100, 1, "3"), (200, 1, "1"), paid_ref="a")
    b = await new_order(db_pool, (100, 1, "4"), paid_ref="b")
    c = await new_order(db_pool, (300, 2, "1"), paid_ref="c")  # its stock row is deleted in Mahak
    await new_order(db_pool, (100, 1, "50"))  # unpaid: holds nothing
    synced = await new_order(db_pool, (100, 1, "50"), paid_ref="s")
    await orders.record_mahak_ids(db_pool, synced.id, 5)  # Mahak already counted it
    cancelled = await new_order(db_pool, (200, 1, "50"), paid_ref="x")
    await orders.cancel_and_restock(db_pool, cancelled.id, "x")

    conflicts = await orders.inventory_conflicts(db_pool)
    assert [
        (x.product_detail_id, x.store_id, x.mahak_count1, x.held, x.order_ids) for x in conflicts
    ] == [
        (100, 1, Decimal(5), Decimal(7), [a.id, b.id]),
        (300, 2, Decimal(0), Decimal(1), [c.id]),
    ]
    assert conflicts[0].shortfall == Decimal(2)

    # Stock goes first paid, first served: `a` (paid first) keeps its 3 of detail 100, `b`'s 4
    # no longer fit in the remaining 2; nothing of detail 300 is in stock.
    uncovered = await orders.uncovered_holdings(db_pool)
    assert [
        (h.order_id, h.product_detail_id, h.store_id, h.quantity, h.held, h.mahak_count1)
        for h in uncovered
    ] == [
        (b.id, 100, 1, Decimal(4), Decimal(7), Decimal(5)),
        (c.id, 300, 2, Decimal(1), Decimal(1), Decimal(0)),
    ]


# --- what Mahak already holds, allocation, deleted details (the incoming sync's conflict check) --


_versions = iter(range(1_000, 1_000_000))


async def mirror(pool: asyncpg.Pool, entity: str, *rows: object) -> None:
    """Store rows as the incoming sync would (each page with a fresh, higher cursor)."""
    version = next(_versions)
    await apply_page(pool, EntityBatch(entity=entity, rows=list(rows)), new_cursor=version)


async def mirror_details(pool: asyncpg.Pool, *detail_ids: int, deleted: bool = False) -> None:
    await mirror(
        pool,
        "product_details",
        *(
            ProductDetail(
                product_detail_id=d, product_id=d, row_version=next(_versions), deleted=deleted
            )
            for d in detail_ids
        ),
    )


async def mirror_stock(pool: asyncpg.Pool, *stock: tuple[int, int, int]) -> None:
    """(product detail id, store id, Count1) rows of Mahak's stock."""
    await mirror(
        pool,
        "product_detail_store_assets",
        *(
            ProductDetailStoreAsset(
                product_detail_store_asset_id=detail * 100 + store,
                product_detail_id=detail,
                store_id=store,
                count1=count,
                row_version=next(_versions),
            )
            for detail, store, count in stock
        ),
    )


async def mirror_mahak_order(
    pool: asyncpg.Pool, order: ShopOrder, *, deleted: bool = False, with_head: bool = True
) -> None:
    """Mahak saved the web order (its head and lines carry our client ids)."""
    mahak_id = 500_000 + order.id
    if with_head:
        await mirror(
            pool,
            "orders",
            Order(
                order_id=mahak_id,
                order_client_id=order.order_client_id,
                row_version=next(_versions),
                deleted=deleted,
            ),
        )
    await mirror(
        pool,
        "order_details",
        *(
            OrderDetail(
                order_detail_id=mahak_id * 10 + i,
                order_detail_client_id=ln.order_detail_client_id,
                order_id=mahak_id,
                order_client_id=order.order_client_id,
                product_detail_id=ln.product_detail_id,
                store_id=ln.store_id,
                count1=float(ln.quantity),
                row_version=next(_versions),
                deleted=deleted,
            )
            for i, ln in enumerate(order.lines)
        ),
    )


def uncovered_view(holdings: list) -> list[tuple[int, int, int, Decimal]]:
    return [(h.order_id, h.product_detail_id, h.store_id, h.quantity) for h in holdings]


async def test_orders_mahak_already_holds_are_not_subtracted_from_its_stock_again(
    db_pool: asyncpg.Pool,
) -> None:
    """Mahak had 5 and saved our order of 4 (its stock now says 1); the answer was lost, so the
    shop has not marked the order synced. Mahak's 1 already accounts for the order: no conflict."""
    await mirror_details(db_pool, 100, 200)
    await mirror_stock(db_pool, (100, 1, 1), (200, 1, 0))
    lost_answer = await new_order(db_pool, (100, 1, "4"), paid_ref="lost")
    await orders.transition_status(db_pool, lost_answer.id, "pending", "sending")
    await mirror_mahak_order(db_pool, lost_answer)
    disputed = await new_order(db_pool, (200, 1, "2"), paid_ref="disputed")
    await orders.transition_status(db_pool, disputed.id, "pending", "dispute")
    await mirror_mahak_order(db_pool, disputed)
    # Mahak deleted (reversed) this one: its stock no longer accounts for it.
    reversed_ = await new_order(db_pool, (100, 1, "1"), paid_ref="reversed")
    await mirror_mahak_order(db_pool, reversed_, deleted=True)
    # Only the lines reached the mirror (the head is on a later page): still Mahak's.
    lines_only = await new_order(db_pool, (200, 1, "3"), paid_ref="lines")
    await mirror_mahak_order(db_pool, lines_only, with_head=False)
    # A compensation began: the order is being cancelled, it holds nothing any more.
    compensating = await new_order(db_pool, (100, 1, "7"), paid_ref="comp")
    await db_pool.execute(
        "UPDATE shop_orders SET compensation_started_at = now() WHERE id = $1", compensating.id
    )

    uncovered = await orders.uncovered_holdings(db_pool)
    assert uncovered_view(uncovered) == [], "Mahak's 1 left covers the reversed order's 1"
    assert await orders.inventory_conflicts(db_pool) == []
    inventory = await db_pool.fetch(
        "SELECT product_detail_id, held, order_ids FROM shop_inventory ORDER BY product_detail_id"
    )
    assert [(r["product_detail_id"], r["held"], r["order_ids"]) for r in inventory] == [
        (100, Decimal(1), [reversed_.id]),
        (200, Decimal(0), []),
    ]

    await mirror_stock(db_pool, (100, 1, 0))  # an in-store sale took the last one
    uncovered = await orders.uncovered_holdings(db_pool)
    assert uncovered_view(uncovered) == [(reversed_.id, 100, 1, Decimal(1))]
    assert (uncovered[0].held, uncovered[0].mahak_count1) == (Decimal(1), Decimal(0))


async def test_stock_goes_first_paid_first_served_and_a_later_order_that_fits_keeps_it(
    db_pool: asyncpg.Pool,
) -> None:
    """Allocation in payment order flags only the orders that do not fit: once one does not
    fit, a later, smaller order that fits what is left keeps its stock."""
    await mirror_details(db_pool, 100)
    await mirror_stock(db_pool, (100, 1, 5))
    a = await new_order(db_pool, (100, 1, "2"), paid_ref="a")  # 5 -> 3 left
    b = await new_order(db_pool, (100, 1, "4"), paid_ref="b")  # does not fit in 3
    c = await new_order(db_pool, (100, 1, "3"), paid_ref="c")  # fits in 3 -> 0 left
    d = await new_order(db_pool, (100, 1, "1"), paid_ref="d")  # nothing left
    assert a.id < b.id < c.id < d.id

    uncovered = await orders.uncovered_holdings(db_pool)
    assert uncovered_view(uncovered) == [(b.id, 100, 1, Decimal(4)), (d.id, 100, 1, Decimal(1))]
    assert {(h.held, h.mahak_count1) for h in uncovered} == {(Decimal(10), Decimal(5))}

    # Payment order decides, not the order id: `d` paid before everyone else now fits first.
    await db_pool.execute(
        "UPDATE shop_orders SET paid_at = paid_at - interval '1 hour' WHERE id = $1", d.id
    )
    uncovered = await orders.uncovered_holdings(db_pool)
    assert uncovered_view(uncovered) == [(b.id, 100, 1, Decimal(4)), (c.id, 100, 1, Decimal(3))]


async def test_an_order_that_does_not_fit_holds_none_of_its_lines(db_pool: asyncpg.Pool) -> None:
    """A flagged order is cancelled whole, so the lines of it that did fit are given to the
    orders paid after it rather than cancelling those as well."""
    await mirror_details(db_pool, 100, 200)
    await mirror_stock(db_pool, (100, 1, 3), (200, 1, 1))
    first = await new_order(db_pool, (100, 1, "2"), (200, 1, "2"), paid_ref="first")
    second = await new_order(db_pool, (100, 1, "3"), paid_ref="second")

    uncovered = await orders.uncovered_holdings(db_pool)
    assert uncovered_view(uncovered) == [(first.id, 200, 1, Decimal(2))], (
        "only the line that does not fit is the conflict; `second` gets the 3 of detail 100"
    )
    assert second.id not in {row[0] for row in uncovered_view(uncovered)}


async def test_lines_of_deleted_or_unknown_product_details_are_no_stock_conflict(
    db_pool: asyncpg.Pool,
) -> None:
    """A product Mahak deleted (or never had) is a stale reference the send turns into a
    dispute for an operator, not a stock shortage to cancel the order for."""
    await mirror_details(db_pool, 100)
    await mirror_details(db_pool, 300, deleted=True)
    await mirror_stock(db_pool, (100, 1, 1), (300, 1, 0))
    deleted = await new_order(db_pool, (300, 1, "1"), paid_ref="deleted")
    unknown = await new_order(db_pool, (999, 1, "2"), paid_ref="unknown")
    mixed = await new_order(db_pool, (100, 1, "1"), (300, 1, "5"), paid_ref="mixed")
    short = await new_order(db_pool, (100, 1, "1"), paid_ref="short")

    uncovered = await orders.uncovered_holdings(db_pool)
    assert uncovered_view(uncovered) == [(short.id, 100, 1, Decimal(1))], (
        "`mixed` keeps the one of detail 100; its deleted line is not a shortage"
    )
    assert [
        (c.product_detail_id, c.order_ids) for c in await orders.inventory_conflicts(db_pool)
    ] == [(100, [mixed.id, short.id])]
    assert {deleted.id, unknown.id}.isdisjoint(h.order_id for h in uncovered)
