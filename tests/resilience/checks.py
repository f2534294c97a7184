"""The invariants every resilience case ends with, read from the shop database and from what
Mahak (the simulator's control API) holds.

For every paid order: Mahak holds exactly one live copy whose lines and receipt match and the
shop says synced, or the shop says cancelled (restocked, refunded) and Mahak holds nothing live
of it, or a staff notice and `mahak_leftovers` name what remains; never both, never neither;
nothing in dispute that the case did not cause. Mahak's stock is the seeded stock minus the live
order lines; the restock ledger holds each cancelled line at most once; each entity's cursor is
at most the highest RowVersion stored (mirror rows or dead letters) for it.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from mahak_client.models import ENTITIES, INCOMING_ORDER
from shopdb import orders as shop_orders
from shopdb.mirror import MIRRORS

from .cluster import Cluster

CLIENT_ID_BASE = 8_000_000_000_000_000


@dataclass
class Verdict:
    problems: list[str] = field(default_factory=list)
    synced: int = 0
    cancelled: int = 0
    lost: int = 0  # paid, yet neither synced nor cancelled (or Mahak lacks a "synced" one)
    duplicated: int = 0  # Mahak holds it twice, or it was sent more than once
    wrongly_disputed: int = 0

    def summary(self) -> dict[str, int]:
        return {
            "synced": self.synced,
            "cancelled": self.cancelled,
            "lost": self.lost,
            "duplicated": self.duplicated,
            "wrongly_disputed": self.wrongly_disputed,
        }


def wire_id(entity: str) -> str:
    """`product_detail_store_asset_id` -> `ProductDetailStoreAssetId`."""
    return "".join(part.capitalize() for part in ENTITIES[entity].id_field.split("_"))


async def check_all(cluster: Cluster, *, incoming: bool = True) -> Verdict:
    v = Verdict()
    await _check_orders(cluster, v)
    await _check_stock(cluster, v)
    await _check_cursors(cluster, v)
    await _check_one_cycle_at_a_time(cluster, v)
    cluster.last_verdict = v.summary()  # for the run's figures (MAHAK_RESILIENCE_REPORT)
    return v


async def _check_orders(cluster: Cluster, v: Verdict) -> None:
    assert cluster.control is not None
    sim_orders = await cluster.control.orders()
    receipts = await cluster.control.entities("receipts")
    by_client: dict[int, list[Any]] = defaultdict(list)
    for o in sim_orders:
        if o.order_client_id is not None:
            by_client[o.order_client_id].append(o)
    receipts_by_client: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for r in receipts:
        if r.get("OrderClientId") is not None:
            receipts_by_client[r["OrderClientId"]].append(r)

    async with cluster.db() as conn:
        ids = [
            r["id"]
            for r in await conn.fetch(
                "SELECT id FROM shop_orders WHERE payment_status <> 'unpaid' ORDER BY id"
            )
        ]
        known_client_ids = {
            r["order_client_id"]
            for r in await conn.fetch("SELECT order_client_id FROM shop_orders")
        }
        for order_id in ids:
            row = await shop_orders.get_order(conn, order_id)
            assert row is not None
            held = by_client.get(row.order_client_id, [])
            live = [o for o in held if not o.order.get("Deleted")]
            live_receipts = [
                r for r in receipts_by_client.get(row.order_client_id, []) if not r.get("Deleted")
            ]
            p = f"order {row.id} ({row.sync_status}/{row.payment_status})"
            if row.sync_status == "synced":
                v.synced += 1
                if not live:
                    v.lost += 1
                    v.problems.append(f"{p}: the shop says synced, Mahak holds no live copy")
                    continue
                if len(live) > 1 or len(live_receipts) > 1:
                    v.duplicated += 1
                    v.problems.append(
                        f"{p}: Mahak holds {len(live)} live copies, {len(live_receipts)} receipts"
                    )
                copy = live[0]
                sends = copy.submissions - copy.deletions
                if sends != 1:
                    v.duplicated += 1
                    v.problems.append(
                        f"{p}: sent to Mahak {copy.submissions} times ({copy.deletions} deletions)"
                    )
                ours = {ln.order_detail_client_id: ln for ln in row.lines}
                theirs = {
                    d.get("OrderDetailClientId"): d for d in copy.details if not d.get("Deleted")
                }
                if set(ours) != set(theirs):
                    v.problems.append(
                        f"{p}: Mahak lines {sorted(k for k in theirs if k)} != "
                        f"shop lines {sorted(ours)}"
                    )
                for key, ln in ours.items():
                    d = theirs.get(key)
                    if d is not None and (
                        d["ProductDetailId"] != ln.product_detail_id
                        or d["StoreId"] != ln.store_id
                        or abs(float(d["Count1"]) - float(ln.quantity)) > 1e-9
                        or abs(float(d.get("Price") or 0) - float(ln.unit_price)) > 0.005
                    ):
                        v.problems.append(f"{p}: line {key} differs in Mahak: {d}")
                if not live_receipts:
                    v.problems.append(f"{p}: synced without a live receipt in Mahak")
                elif (
                    abs(float(live_receipts[0].get("CashAmount") or 0) - float(row.amount)) > 0.005
                ):
                    v.problems.append(
                        f"{p}: receipt {live_receipts[0].get('CashAmount')} != {row.amount}"
                    )
                if row.mahak_order_id not in (None, copy.order_id):
                    v.problems.append(
                        f"{p}: mahak_order_id {row.mahak_order_id} != {copy.order_id}"
                    )
                if row.compensation_started_at or row.cancelled_at:
                    v.problems.append(f"{p}: synced, yet compensated")
            elif row.sync_status == "cancelled":
                v.cancelled += 1
                if row.id not in cluster.expected_disputes:
                    v.problems.append(
                        f"{p}: cancelled, which this case did not cause "
                        f"({row.cancel_reason!r}, {row.last_mahak_error!r})"
                    )
                if row.payment_status != "refunded":
                    v.problems.append(f"{p}: cancelled but payment {row.payment_status}")
                remaining = (
                    [str(o.order_id) for o in live]
                    + [
                        str(d["OrderDetailId"])
                        for o in held
                        for d in o.details
                        if not d.get("Deleted")
                    ]
                    + [str(r["ReceiptId"]) for r in live_receipts]
                )
                if remaining:
                    notices = [
                        r["message"] or ""
                        for r in await conn.fetch(
                            "SELECT payload->>'message' AS message FROM notification_outbox "
                            "WHERE order_id = $1 AND recipient = 'staff'",
                            row.id,
                        )
                    ]
                    if not any(all(x in n for x in remaining) for n in notices) or not all(
                        x in (row.mahak_leftovers or "") for x in remaining
                    ):
                        v.duplicated += 1
                        v.problems.append(
                            f"{p}: cancelled, yet Mahak holds {remaining} and no "
                            f"staff notice names them ({notices}, {row.mahak_leftovers!r})"
                        )
                moves = await conn.fetch(
                    "SELECT order_line_id, count(*) AS n FROM shop_stock_movements "
                    "WHERE order_id = $1 AND reason = 'cancel' GROUP BY order_line_id",
                    row.id,
                )
                if any(m["n"] > 1 for m in moves) or len(moves) != len(row.lines):
                    v.problems.append(
                        f"{p}: restock ledger {[dict(m) for m in moves]} for {len(row.lines)} lines"
                    )
            else:
                if row.sync_status == "dispute" and row.id not in cluster.expected_disputes:
                    v.wrongly_disputed += 1
                    v.problems.append(
                        f"{p}: in dispute, which this case did not cause: "
                        f"{row.last_mahak_error!r}; Mahak holds {len(live)} live copies"
                    )
                elif row.sync_status != "dispute":
                    v.lost += 1
                    v.problems.append(
                        f"{p}: never settled; Mahak holds {len(live)} live copies; "
                        f"last error {row.last_mahak_error!r}"
                    )
        for client_id, held in by_client.items():
            if (
                client_id >= CLIENT_ID_BASE
                and client_id < CLIENT_ID_BASE + 10**15
                and client_id not in known_client_ids
                and any(not o.order.get("Deleted") for o in held)
            ):
                v.problems.append(
                    f"Mahak holds an order with client id {client_id} the shop never had"
                )


async def _check_stock(cluster: Cluster, v: Verdict) -> None:
    assert cluster.control is not None
    assets = await cluster.control.entities("ProductDetailStoreAssets")
    lines = await cluster.control.entities("OrderDetails")
    seeded = cluster.seeded_stock
    count = {
        (a.get("ProductDetailId"), a.get("StoreId")): float(a.get("Count1") or 0)
        for a in assets
        if not a.get("Deleted") and (a.get("ProductDetailId"), a.get("StoreId")) in seeded
    }
    taken: dict[tuple[int, int], float] = defaultdict(float)
    for d in lines:
        key = (d.get("ProductDetailId"), d.get("StoreId"))
        if not d.get("Deleted") and key in seeded:
            taken[key] += float(d["Count1"])
    for key, seeded in cluster.seeded_stock.items():
        have = count.get(key, 0.0)
        if abs(have - (seeded - taken[key])) > 1e-9:
            v.problems.append(
                f"Mahak stock of detail {key[0]} in store {key[1]}: {have:g}, but "
                f"seeded {seeded:g} - live lines {taken[key]:g}"
            )


async def _check_cursors(cluster: Cluster, v: Verdict) -> None:
    async with cluster.db() as conn:
        cursors = {
            r["entity"]: r["last_row_version"]
            for r in await conn.fetch("SELECT entity, last_row_version FROM mahak_sync_state")
        }
        for entity, cursor in cursors.items():
            mirror = MIRRORS.get(entity)
            if mirror is None or cursor == 0:
                continue
            stored = await conn.fetchval(f"SELECT max(row_version) FROM {mirror.table}") or 0
            lettered = (
                await conn.fetchval(
                    "SELECT max(row_version) FROM mahak_dead_letters WHERE entity = $1", entity
                )
                or 0
            )
            if cursor > max(stored, lettered):
                v.problems.append(
                    f"cursor of {entity} is {cursor}, past the highest RowVersion "
                    f"stored ({stored}) or dead-lettered ({lettered})"
                )


async def _check_one_cycle_at_a_time(cluster: Cluster, v: Verdict) -> None:
    """Incoming cycles never overlap: each run's [first start, last finish] in `mahak_sync_log`
    ends before the next one begins."""
    async with cluster.db() as conn:
        runs = await conn.fetch(
            "SELECT run_id, min(started_at) AS s, max(coalesce(finished_at, started_at)) AS f "
            "FROM mahak_sync_log WHERE entity <> 'inventory_conflicts' GROUP BY run_id ORDER BY s"
        )
    for a, b in zip(runs, runs[1:]):
        if b["s"] < a["f"]:
            v.problems.append(
                f"incoming cycles overlap: {a['run_id']} ({a['s']}..{a['f']}) and "
                f"{b['run_id']} ({b['s']}..{b['f']})"
            )


async def catalog_differences(cluster: Cluster) -> list[str]:
    """Where the shop's mirror differs from Mahak: per entity, the ids, RowVersions and
    deletes of every row (rows Mahak sent that are dead-lettered count as stored)."""
    assert cluster.control is not None
    out: list[str] = []
    async with cluster.db() as conn:
        for entity in INCOMING_ORDER:
            mirror = MIRRORS[entity]
            rows = await cluster.control.entities(ENTITIES[entity].collection)
            lettered = {
                r["mahak_id"]
                for r in await conn.fetch(
                    "SELECT mahak_id FROM mahak_dead_letters WHERE entity = $1", entity
                )
            }
            theirs = {
                r[wire_id(entity)]: (r["RowVersion"], bool(r.get("Deleted")))
                for r in rows
                # a malformed row (its id not a number) or one quarantined: not mirrored
                if isinstance(r.get(wire_id(entity)), int) and r[wire_id(entity)] not in lettered
            }
            ours = {
                r["id"]: (r["row_version"], r["deleted"])
                for r in await conn.fetch(f"SELECT id, row_version, deleted FROM {mirror.table}")
                if r["id"] not in lettered
            }
            missing = sorted(set(theirs) - set(ours))
            extra = sorted(set(ours) - set(theirs))
            differ = sorted(k for k in set(theirs) & set(ours) if theirs[k] != ours[k])
            if missing or extra or differ:
                out.append(
                    f"{entity}: missing {missing[:10]} ({len(missing)}), extra {extra[:10]}, "
                    f"differ {[(k, ours[k], theirs[k]) for k in differ[:5]]} ({len(differ)})"
                )
    return out
