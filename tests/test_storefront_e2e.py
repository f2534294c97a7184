"""Issue 18 "Done when": the storefront's catalog through the real incoming workflow.

The simulator is seeded with variants (size and colour), price levels with names, a customer
group with its own level and discount, settings and a promotion; a sync runs through
`IncomingSyncWorkflow` on the real worker; `shop_catalog` is read back. Then a property
description, a price level's name and a VisitorProduct link are deleted in Mahak and the next
cycle shows it. A `LISTEN` on the change channel hears the changed ids throughout.
"""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from typing import Any

import asyncpg
import pytest

from mahak_simulator.control import SimControl
from mahak_simulator.seed import (
    COLOUR_NAME,
    COLOURS,
    PRICE_LEVEL_NAMES,
    SIZE_NAME,
    SIZES,
    WHOLESALE_GROUP,
)
from shopdb import orders, storefront
from tests.order_helpers import make_order
from tests.test_incoming_e2e import assert_mirrors_simulator, start_sync  # noqa: F401 - fixture

pytestmark = pytest.mark.slow


class Listener:
    """What a storefront cache would hear: changed ids per entity."""

    def __init__(self) -> None:
        self.heard: list[dict[str, Any]] = []
        self.conn: asyncpg.Connection | None = None

    async def start(self, dsn: str) -> None:
        self.conn = await asyncpg.connect(dsn)
        await self.conn.add_listener(storefront.CHANGES_CHANNEL, self._on_notify)

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        self.heard.append(json.loads(payload))

    def ids(self, entity: str) -> set[int]:
        return {i for message in self.heard if message["entity"] == entity for i in message["ids"]}

    async def until(self, entity: str, wanted: set[int]) -> None:
        """Wait until every id of `wanted` was heard for `entity` (notifications arrive
        asynchronously after the commit)."""
        for _ in range(200):
            if wanted <= self.ids(entity):
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"{entity}: heard {sorted(self.ids(entity))}, wanted {sorted(wanted)}")

    async def close(self) -> None:
        if self.conn is not None:
            await self.conn.close()


def persian(text: str) -> str:
    """As the mirror stores names: Arabic ي/ك written as Persian ی/ک, trimmed."""
    return text.replace("ي", "ی").replace("ك", "ک").strip()


async def catalog(pool: asyncpg.Pool) -> dict[int, asyncpg.Record]:
    return {r["product_detail_id"]: r for r in await pool.fetch("SELECT * FROM shop_catalog")}


async def test_the_storefront_catalog_through_the_workflow(
    start_sync: Any,  # noqa: F811 - the fixture imported above
    sim: SimControl,
    db_pool: asyncpg.Pool,
    db_dsn: str,
) -> None:
    seeded = await sim.seed(
        2, stores=2, details_per_product=4, pictures_per_product=3, stock=10, wholesale_group=True
    )
    shirt = seeded.products[0]
    variants = seeded.product_details[:4]  # the shirt's: S/M blue, L/XL red
    store_a, store_b = seeded.stores
    details = {d["ProductDetailId"]: d for d in await sim.entities("ProductDetails")}

    # Mahak desktop edits: variant 0's default discount is level 2, a 10 % one; the default
    # charge becomes 3 %; the shirt's first picture moves to the end of its gallery.
    await sim.inject_row(
        "ProductDetails",
        {**details[variants[0]], "DefaultDiscountLevel": 2, "Discount2": 10, "DiscountType": 1},
    )
    [charge] = [s for s in await sim.entities("Settings") if s["SettingCode"] == 14000]
    await sim.inject_row("Settings", {**charge, "Value": "3"})
    galleries = [g for g in await sim.entities("PhotoGalleries") if g["ItemCode"] == shirt]
    pictures = {p["PictureId"]: p for p in await sim.entities("Pictures")}
    first, *rest = sorted(g["PictureId"] for g in galleries)
    await sim.inject_row("Pictures", {**pictures[first], "DisplayOrder": 9})
    # A variant of the other product names an attribute code Mahak has no description for.
    odd = seeded.product_details[4]
    await sim.inject_row(
        "ProductDetails", {**details[odd], "Properties": '[{"C": 77, "V": "Linen"}]'}
    )
    # A paid web order Mahak has not received holds 3 of variant 0 in store A.
    order = await make_order(db_pool, [(variants[0], store_a, 3, 1000)])
    await orders.mark_paid(db_pool, order.id, order.amount, f"PAY-{order.id}")

    listener = Listener()
    await listener.start(db_dsn)
    try:
        sync = await start_sync()
        status = await sync.cycles(1, timeout=120)
        cycle = status.last_cycle
        assert cycle is not None and cycle.ok, cycle
        await assert_mirrors_simulator(db_pool, sim)  # every new entity mirrored, cursors too

        rows = await catalog(db_pool)
        assert set(seeded.product_details) <= set(rows), "every linked variant is in the view"
        # Attributes by name: two sizes per colour.
        colour, size = persian(COLOUR_NAME), persian(SIZE_NAME)
        for n, variant in enumerate(variants):
            assert json.loads(rows[variant]["attributes"]) == {
                size: SIZES[n],
                colour: persian(COLOURS[n // 2]),
            }
            assert json.loads(rows[variant]["unknown_attributes"]) == []
        assert json.loads(rows[odd]["attributes"]) == {}
        assert json.loads(rows[odd]["unknown_attributes"]) == [{"C": 77, "V": "Linen"}]
        warnings = await db_pool.fetchval(
            "SELECT warnings FROM mahak_sync_log WHERE run_id = $1 AND entity = 'product_details'",
            cycle.run_id,
        )
        assert warnings == 1, "the unknown code is counted in the sync log"

        # The shop price (SHOP_PRICE_LEVEL 1, named) with the variant's default discount.
        v0 = rows[variants[0]]
        price1 = Decimal(details[variants[0]]["Price1"])
        assert (v0["price_level"], v0["price_level_name"]) == (1, persian(PRICE_LEVEL_NAMES[1]))
        assert v0["price"] == price1
        assert (v0["discount"], v0["discount_type"]) == (10, 1)
        assert v0["final_price"] == price1 * Decimal("0.9")
        assert rows[variants[1]]["final_price"] == Decimal(details[variants[1]]["Price1"])
        # Tax: the product says 0, so Settings 14001 (10 %); charge: 14000, changed to 3 %.
        assert (v0["tax_percent"], v0["charge_percent"]) == (10, 3)
        # Stock: 10 in each store, 3 held by the paid order Mahak does not have yet.
        assert v0["stock"] == 17
        assert json.loads(v0["stock_by_store"]) == {str(store_a): 7, str(store_b): 10}
        assert rows[variants[1]]["stock"] == 20
        # Pictures in display order: the first one moved to the end.
        urls = {p: pictures[p]["Url"] for p in pictures}
        assert v0["picture_urls"] == [urls[p] for p in (*rest, first)]
        assert v0["unit_name"] == "عدد"

        # The customer groups' prices: the wholesale group's level 2 and 5 % discount.
        groups = {
            r["person_group_name"]: r
            for r in await db_pool.fetch(
                "SELECT * FROM shop_catalog_group_prices WHERE product_detail_id = $1",
                variants[0],
            )
        }
        wholesale = groups[persian(str(WHOLESALE_GROUP["Name"]))]
        price2 = Decimal(details[variants[0]]["Price2"])
        assert (wholesale["price_level"], wholesale["price_level_name"]) == (
            2,
            persian(PRICE_LEVEL_NAMES[2]),
        )
        assert (wholesale["price"], wholesale["discount_percent"]) == (price2, 5)
        assert wholesale["group_price"] == price2 * Decimal("0.95")
        [retail] = [g for name, g in groups.items() if g["price_level"] == 1]
        assert retail["group_price"] == price1

        # Everything stored was announced, by entity.
        await listener.until("product_details", set(seeded.product_details))
        await listener.until("person_groups", set(seeded.person_groups))
        await listener.until(
            "promotions", {p["PromotionId"] for p in await sim.entities("Promotions")}
        )

        # Deletes in Mahak: the colour attribute, the shop level's name, variant 3's link.
        [colour_row] = [
            d
            for d in await sim.entities("PropertyDescriptions")
            if d["PropertyDescriptionCode"] == 1
        ]
        [level1] = [c for c in await sim.entities("CostLevelNames") if c["CostLevelNameCode"] == 1]
        [link] = [
            v for v in await sim.entities("VisitorProducts") if v["ProductDetailId"] == variants[3]
        ]
        await sim.delete("PropertyDescriptions", colour_row["PropertyDescriptionId"])
        await sim.delete("CostLevelNames", level1["CostLevelNameId"])
        await sim.delete("VisitorProducts", link["VisitorProductId"])
        listener.heard.clear()

        second = await sync.run_cycle()
        assert second.ok, second
        rows = await catalog(db_pool)
        assert variants[3] not in rows, "withdrawn from the site"
        assert json.loads(rows[variants[0]]["attributes"]) == {size: SIZES[0]}
        assert json.loads(rows[variants[0]]["unknown_attributes"]) == [
            {"C": 1, "V": COLOURS[0].replace("ی", "ي")}  # the raw element, as Mahak sent it
        ]
        assert rows[variants[0]]["price_level_name"] is None
        assert rows[variants[0]]["price"] == price1, "the price itself stays"

        await listener.until("property_descriptions", {colour_row["PropertyDescriptionId"]})
        await listener.until("cost_level_names", {level1["CostLevelNameId"]})
        await listener.until("visitor_products", {link["VisitorProductId"]})
        # The variants whose attributes changed with the description.
        await listener.until("product_details", set(variants))
    finally:
        await listener.close()
