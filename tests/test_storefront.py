"""The storefront entities and read model at the database (issue 18): each new entity's mirror
through `apply_page` (cursor, newer-only upsert, delete, quarantine), variant attributes
decoded as details are stored (unknown codes kept raw and counted), the catalog's price,
tax and stock rules, and the NOTIFY batches."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from typing import Any

import asyncpg
import pytest

from activities.order_request import OutgoingFields
from mahak_client.models import ENTITIES, EntityBatch, RejectedRow
from mahak_simulator.schema import BY_NAME, blank_row
from shopdb import catalog, storefront
from shopdb.mirror import mirror
from shopdb.models import ApplyCounts

NEW_ENTITIES = (
    "person_groups",
    "person_addresses",
    "product_properties",
    "property_descriptions",
    "property_description_values",
    "cost_level_names",
    "settings",
    "units",
    "promotions",
    "promotion_details",
    "promotion_entities",
)


def wire_row(entity: str, row_id: int, row_version: int, **values: Any) -> Any:
    """A row as the simulator sends it (every column present), parsed by the client's model."""
    spec = ENTITIES[entity]
    # Columns left null take the model's defaults.
    raw = {k: v for k, v in blank_row(spec.collection).items() if v is not None}
    raw[BY_NAME[spec.collection].id_field] = row_id
    raw.update(values, RowVersion=row_version)
    return spec.model.model_validate(raw)


def page(entity: str, rows: list[Any], rejected: list[RejectedRow] | None = None) -> EntityBatch:
    return EntityBatch(entity=entity, rows=rows, rejected=rejected or [])


@pytest.mark.parametrize("entity", NEW_ENTITIES)
async def test_each_storefront_entity_is_mirrored_with_the_usual_rules(
    db_pool: asyncpg.Pool, entity: str
) -> None:
    table = mirror(entity).table
    first = await catalog.apply_page(
        db_pool, page(entity, [wire_row(entity, 7, 100), wire_row(entity, 8, 101)]), new_cursor=101
    )
    assert first == ApplyCounts(inserted=2)
    older = await catalog.apply_page(
        db_pool, page(entity, [wire_row(entity, 7, 90, Deleted=True)]), new_cursor=90
    )
    assert older == ApplyCounts(unchanged=1), "an older version is not applied"
    assert await catalog.get_cursor(db_pool, entity) == 101, "the cursor never moves back"
    bad = RejectedRow(entity=entity, raw={"Id": "x"}, error="not a number", row_version=103)
    deleted = await catalog.apply_page(
        db_pool, page(entity, [wire_row(entity, 7, 102, Deleted=True)], [bad]), new_cursor=103
    )
    assert deleted == ApplyCounts(deleted=1, dead_lettered=1)
    rows = {
        r["id"]: r for r in await db_pool.fetch(f"SELECT id, row_version, deleted FROM {table}")
    }
    assert rows[7]["deleted"] and rows[7]["row_version"] == 102
    assert not rows[8]["deleted"]
    assert await catalog.get_cursor(db_pool, entity) == 103
    letters = await db_pool.fetch("SELECT reason FROM mahak_dead_letters WHERE entity = $1", entity)
    assert [r["reason"] for r in letters] == ["not a number"]


async def describe(pool: asyncpg.Pool, code: int, name: str, row_id: int, rv: int) -> None:
    row = wire_row(
        "property_descriptions", row_id, rv, PropertyDescriptionCode=code, Name=name, Title=name
    )
    await catalog.apply_page(pool, page("property_descriptions", [row]), new_cursor=rv)


def detail_row(row_id: int, rv: int, properties: Any, **values: Any) -> Any:
    text = properties if isinstance(properties, str) else json.dumps(properties)
    return wire_row(
        "product_details", row_id, rv, ProductId=1, Properties=text, Price1=1000, **values
    )


async def decoded(pool: asyncpg.Pool) -> dict[int, tuple[Any, Any]]:
    rows = await pool.fetch("SELECT id, attributes, unknown_attributes FROM mahak_product_details")
    return {
        r["id"]: (json.loads(r["attributes"]), json.loads(r["unknown_attributes"])) for r in rows
    }


async def test_properties_are_decoded_by_name_and_unknown_codes_are_kept_and_counted(
    db_pool: asyncpg.Pool,
) -> None:
    await describe(db_pool, 1, "Colour", 11, 10)
    await describe(db_pool, 2, "Size", 12, 11)
    details = [
        # Arabic letters and stray spaces in a value are normalised, as every mirrored name is.
        detail_row(1, 20, [{"C": 2, "V": "M"}, {"C": 1, "V": " آبي "}]),
        detail_row(2, 21, [{"C": "2", "V": 42}, {"C": 9, "V": "x"}]),
        detail_row(3, 22, "not json"),
        detail_row(4, 23, []),
    ]
    await catalog.apply_page(
        db_pool, page("product_details", details), new_cursor=23, run_id="run-1"
    )
    assert await decoded(db_pool) == {
        1: ({"Size": "M", "Colour": "آبی"}, []),
        2: ({"Size": "42"}, [{"C": 9, "V": "x"}]),
        3: ({}, ["not json"]),
        4: ({}, []),
    }
    warnings = await db_pool.fetchval(
        "SELECT warnings FROM mahak_sync_log WHERE run_id = 'run-1' AND entity = 'product_details'"
    )
    assert warnings == 2, "details 2 and 3 name something no description does"

    # The same versions again (the look-back window): nothing written, nothing counted.
    await catalog.apply_page(
        db_pool, page("product_details", details), new_cursor=23, run_id="run-1"
    )
    assert await db_pool.fetchval("SELECT warnings FROM mahak_sync_log WHERE run_id = 'run-1'") == 2


async def test_a_description_change_decodes_the_details_again(db_pool: asyncpg.Pool) -> None:
    await describe(db_pool, 1, "Colour", 11, 10)
    await catalog.apply_page(
        db_pool,
        page(
            "product_details", [detail_row(1, 20, [{"C": 1, "V": "Blue"}, {"C": 3, "V": "Silk"}])]
        ),
        new_cursor=20,
    )
    assert (await decoded(db_pool))[1] == ({"Colour": "Blue"}, [{"C": 3, "V": "Silk"}])

    await describe(db_pool, 3, "Fabric", 13, 30)  # the unknown code becomes known
    assert (await decoded(db_pool))[1] == ({"Colour": "Blue", "Fabric": "Silk"}, [])

    deleted = wire_row("property_descriptions", 11, 31, PropertyDescriptionCode=1, Deleted=True)
    await catalog.apply_page(db_pool, page("property_descriptions", [deleted]), new_cursor=31)
    assert (await decoded(db_pool))[1] == ({"Fabric": "Silk"}, [{"C": 1, "V": "Blue"}])


def test_notify_payloads_stay_under_the_limit_and_cover_every_id_in_order() -> None:
    ids = list(range(9_000_000_000_000_000, 9_000_000_000_000_000 + 2_000))
    messages = storefront.payloads("product_details", ids)
    assert len(messages) > 1
    assert all(len(m.encode()) < storefront.MAX_PAYLOAD_BYTES for m in messages)
    parsed = [json.loads(m) for m in messages]
    assert {p["entity"] for p in parsed} == {"product_details"}
    assert [i for p in parsed for i in p["ids"]] == ids
    assert storefront.payloads("units", []) == []


async def test_a_committed_page_is_announced_and_a_rolled_back_one_is_not(
    db_pool: asyncpg.Pool, db_dsn: str
) -> None:
    heard: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    listener = await asyncpg.connect(db_dsn)
    await listener.add_listener(
        storefront.CHANGES_CHANNEL, lambda *args: heard.put_nowait(json.loads(args[3]))
    )
    try:
        units = [wire_row("units", i, 100 + i, UnitCode=i, Name=f"u{i}") for i in (1, 2)]
        await catalog.apply_page(db_pool, page("units", units), new_cursor=102)
        assert await asyncio.wait_for(heard.get(), 10) == {"entity": "units", "ids": [1, 2]}

        # Re-read unchanged: no announcement. A page whose transaction rolls back: none either.
        await catalog.apply_page(db_pool, page("units", units), new_cursor=102)
        async with db_pool.acquire() as conn:
            with pytest.raises(RuntimeError):
                async with conn.transaction():
                    newer = [wire_row("units", 3, 200, UnitCode=3)]
                    await catalog.apply_page(conn, page("units", newer), new_cursor=200)
                    raise RuntimeError("rolled back")
        marker = [wire_row("units", 4, 300, UnitCode=4)]
        await catalog.apply_page(db_pool, page("units", marker), new_cursor=300)
        assert await asyncio.wait_for(heard.get(), 10) == {"entity": "units", "ids": [4]}
    finally:
        await listener.close()


async def seed_catalog_rows(pool: asyncpg.Pool, *, tax: float, charge: float) -> None:
    """One product with one variant offered to the site, in one store."""
    pages: list[tuple[str, list[Any]]] = [
        ("stores", [wire_row("stores", 5, 1, Name="Main")]),
        (
            "products",
            [wire_row("products", 1, 2, Name="Shirt", TaxPercent=tax, ChargePercent=charge)],
        ),
        ("product_details", [detail_row(10, 3, [])]),
        (
            "visitor_products",
            [wire_row("visitor_products", 20, 4, ProductDetailId=10, VisitorId=1)],
        ),
        (
            "product_detail_store_assets",
            [
                wire_row(
                    "product_detail_store_assets", 30, 5, ProductDetailId=10, StoreId=5, Count1=8
                )
            ],
        ),
        (
            "settings",
            [
                wire_row("settings", 41, 6, SettingCode=14001, Value="9"),
                wire_row("settings", 42, 7, SettingCode=14000, Value="3"),
                wire_row("settings", 43, 8, SettingCode=14008, Value="1"),
            ],
        ),
    ]
    for entity, rows in pages:
        await catalog.apply_page(
            pool, page(entity, rows), new_cursor=max(r.row_version for r in rows)
        )


@pytest.mark.parametrize(
    ("tax", "charge", "want"),
    [
        (0, 0, (Decimal(9), Decimal(3))),  # 0: Mahak's defaults (Settings 14001 / 14000)
        (-1, -1, (Decimal(0), Decimal(0))),  # -1: none
        (4, 2, (Decimal(4), Decimal(2))),  # the product's own
    ],
)
async def test_catalog_tax_and_charge_follow_the_order_rule(
    db_pool: asyncpg.Pool, tax: float, charge: float, want: tuple[Decimal, Decimal]
) -> None:
    await seed_catalog_rows(db_pool, tax=tax, charge=charge)
    row = await db_pool.fetchrow("SELECT tax_percent, charge_percent FROM shop_catalog")
    assert (row["tax_percent"], row["charge_percent"]) == want
    # The order send's rule (activities/order_request.py) gives the line the same percents.
    mahak = await storefront.tax_defaults(db_pool)
    assert mahak.tax_percent is not None and mahak.charge_percent is not None
    fields = OutgoingFields(
        tax_percent=mahak.tax_percent, charge_percent=mahak.charge_percent, taxed=mahak.enabled
    )
    assert (fields.tax(tax), fields.charge(charge)) == tuple(map(float, want))


async def test_tax_off_in_mahak_means_no_tax_or_charge(db_pool: asyncpg.Pool) -> None:
    await seed_catalog_rows(db_pool, tax=4, charge=2)
    off = wire_row("settings", 43, 50, SettingCode=14008, Value="0")
    await catalog.apply_page(db_pool, page("settings", [off]), new_cursor=50)
    row = await db_pool.fetchrow("SELECT tax_percent, charge_percent FROM shop_catalog")
    assert (row["tax_percent"], row["charge_percent"]) == (0, 0)
    assert await storefront.tax_defaults(db_pool) == storefront.TaxDefaults(
        enabled=False, tax_percent=9, charge_percent=3
    )
