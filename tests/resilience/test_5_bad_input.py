"""A corpus of malformed Mahak answers and malformed payment callbacks: each gets a clear error
or a dead letter, no process crash-loops, no cursor passes unstored data, and the next good
page (and the next good callback) still applies."""

from __future__ import annotations

import json
import time

import pytest

from mahak_client.models import ENTITIES

from .checks import check_all
from .cluster import Cluster, Plan

pytestmark = pytest.mark.slow

BIG = 10**30


def bad_rows(cluster: Cluster) -> list[tuple[str, dict]]:
    """(entity, row) pairs Mahak should never send, and a few it may (unknown deletes)."""
    detail = cluster.details[0]
    return [
        ("products", {"ProductId": 990_000_001, "Name": None, "ProductCategoryId": "abc"}),
        ("products", {"ProductId": 990_000_002, "Name": "x" * 200_000, "ProductCategoryId": None}),
        (
            "product_details",
            {
                "ProductDetailId": 990_000_003,
                "ProductId": None,
                "Price1": BIG,
                "Price2": "NaN",
                "Count1": [1, 2],
            },
        ),
        ("product_details", {"ProductDetailId": detail, "Price1": -1e308 * 10}),  # -inf on the wire
        ("stores", {"StoreId": "not-an-id", "Name": "bad id"}),
        ("stores", {"StoreId": "not-an-id", "Name": "bad id"}),  # duplicated row
        ("product_categories", {"ProductCategoryId": None, "Name": None}),
        ("pictures", {"PictureId": 990_000_004, "Deleted": True}),  # delete of an unknown id
        ("photo_galleries", {"PhotoGalleryId": 990_000_005, "Deleted": True, "EntityType": "x"}),
        (
            "product_detail_store_assets",
            {
                "ProductDetailStoreAssetId": 990_000_006,
                "ProductDetailId": 990_000_003,
                "StoreId": BIG,
                "Count1": "many",
            },
        ),
        ("orders", {"OrderId": 990_000_007, "OrderDate": "not a date", "OrderClientId": BIG}),
        ("order_details", {"OrderDetailId": 990_000_008, "OrderId": None, "Count1": None}),
    ]


async def _where(cluster: Cluster, entity: str, row_version: int) -> str:
    from shopdb.mirror import MIRRORS

    async with cluster.db() as conn:
        if await conn.fetchval(
            f"SELECT 1 FROM {MIRRORS[entity].table} WHERE row_version = $1", row_version
        ):
            return "stored"
        if await conn.fetchval(
            "SELECT 1 FROM mahak_dead_letters WHERE entity = $1 AND row_version = $2",
            entity,
            row_version,
        ):
            return "dead letter"
        cursor = (
            await conn.fetchval(
                "SELECT last_row_version FROM mahak_sync_state WHERE entity = $1", entity
            )
            or 0
        )
    return f"nowhere (cursor {cursor})"


async def test_malformed_mahak_answers(cluster: Cluster, plan: Plan):
    await cluster.ensure_catalog()
    await cluster.incoming_cycle()  # a clean start: whatever comes next is the corpus
    worker = cluster.workers["worker-1"]
    pid = worker.proc.pid
    injected: list[tuple[str, int, dict]] = []
    for entity, row in bad_rows(cluster):
        stored = await cluster.control.inject_row(ENTITIES[entity].collection, row)
        injected.append((entity, stored["RowVersion"], row))
    # Whole answers that are not Mahak's envelope, then a good page after them.
    await cluster.control.add_fault(malformed="html", count=2, endpoints=["GetAllDataV2"])
    await cluster.control.add_fault(malformed="truncated", count=2, endpoints=["GetAllDataV2"])
    summary = await cluster.incoming_cycle()
    await cluster.control.clear_faults()

    problems = []
    for entity, row_version, row in injected:
        where = await _where(cluster, entity, row_version)
        if where.startswith("nowhere"):
            # Only allowed when the entity stopped with an error before it (cursor below it).
            cursor = int(where.split()[-1].rstrip(")"))
            result = summary.entities.get(entity)
            if cursor >= row_version or result is None or result.error is None:
                problems.append(
                    f"{entity} row {str(row)[:120]} (RowVersion {row_version}) {where}; "
                    f"entity result {result}"
                )
    # The next good rows still apply.
    changed = await cluster.control.set_price(cluster.details[1], 1, 123_000)
    good = await cluster.incoming_cycle()
    async with cluster.db() as conn:
        applied = await conn.fetchval(
            "SELECT count(*) FROM mahak_product_details WHERE id = $1 AND row_version = $2",
            cluster.details[1],
            changed["RowVersion"],
        )
    verdict = await check_all(cluster)
    print("bad input cycle:", {k: (r.error or "ok") for k, r in summary.entities.items()})
    assert worker.running and worker.proc.pid == pid, "the worker died on bad input"
    assert applied == 1, f"a good row after the corpus was not applied: {good}"
    assert not problems, "\n".join(problems)
    assert not verdict.problems, "\n".join(verdict.problems)


async def test_malformed_payment_callbacks(cluster: Cluster, plan: Plan):
    await cluster.ensure_catalog()
    placed = await cluster.new_order()
    order = placed.order
    good = {"order_id": order.id, "amount": str(order.amount), "payment_ref": f"PAY-{order.id}"}
    raw = json.dumps(good).encode()
    now = int(time.time())
    corpus: list[tuple[str, bytes, dict[str, str], set[int]]] = [
        ("no signature", raw, {"content-type": "application/json"}, {401}),
        ("wrong secret", raw, cluster.signed(raw, secret="guess"), {401}),
        ("stale timestamp", raw, cluster.signed(raw, timestamp=now - 3600), {401}),
        ("future timestamp", raw, cluster.signed(raw, timestamp=now + 3600), {401}),
        ("timestamp not a number", raw, {**cluster.signed(raw), "X-Timestamp": "soon"}, {401}),
        ("signature of another body", raw, cluster.signed(raw + b" "), {401}),
    ]
    for name, body in [
        ("not json", b"<html>oops</html>"),
        ("truncated json", raw[: len(raw) // 2]),
        ("empty", b""),
        ("json list", b"[1, 2]"),
        ("order id a string", json.dumps({**good, "order_id": "abc"}).encode()),
        ("order id huge", json.dumps({**good, "order_id": 10**40}).encode()),
        ("order id null", json.dumps({**good, "order_id": None}).encode()),
        ("amount negative", json.dumps({**good, "amount": "-5"}).encode()),
        ("amount NaN", json.dumps({**good, "amount": "NaN"}).encode()),
        ("payment ref huge", json.dumps({**good, "payment_ref": "r" * 100_000}).encode()),
        (
            "payment ref missing",
            json.dumps({k: v for k, v in good.items() if k != "payment_ref"}).encode(),
        ),
    ]:
        corpus.append((name, body, cluster.signed(body), {422}))
    corpus += [
        (
            "unknown order",
            (b := json.dumps({**good, "order_id": 999_999_999}).encode()),
            cluster.signed(b),
            {404},
        ),
        (
            "amount mismatch",
            (b := json.dumps({**good, "amount": "1"}).encode()),
            cluster.signed(b),
            {409},
        ),
        # A number of 5000 digits: refused, as malformed or as not the order's amount.
        (
            "amount huge",
            (b := json.dumps({**good, "amount": "9" * 5000}).encode()),
            cluster.signed(b),
            {409, 422},
        ),
    ]
    wrong = []
    for name, body, headers, expected in corpus:
        response = await cluster.callback(body, headers)
        if response.status_code not in expected:
            wrong.append(
                f"{name}: {response.status_code} {response.text[:200]} (expected {expected})"
            )
    async with cluster.db() as conn:
        status = await conn.fetchval(
            "SELECT payment_status FROM shop_orders WHERE id = $1", order.id
        )
    assert not wrong, "\n".join(wrong)
    assert status == "unpaid", "a refused callback changed the order"
    assert cluster.webhook.running
    # The genuine callback afterwards is taken, and the order syncs.
    assert await cluster.pay(placed) == 202
    await cluster.settle()
    verdict = await check_all(cluster)
    assert not verdict.problems, "\n".join(verdict.problems)
