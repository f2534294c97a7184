"""Data a fresh simulated account holds, and generated catalogs for tests and demos.

Names deliberately look like LIVE data: Arabic ي/ك instead of Persian ی/ک and stray
trailing spaces, so the client's normalisation is exercised by every seeded catalog.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

from pydantic import BaseModel, Field

from .config import SimulatorConfig
from .schema import blank_row, mahak_time
from .state import SimState

# Settings codes (SW): tax on, default charge %, default tax %, product details on,
# row discount as amount, decimal places of quantities and amounts.
_SETTINGS = {14008: "1", 14000: "0", 14001: "10", 1013: "1", 1042: "0", 1032: "0", 1033: "0"}

# Variant attributes (PropertyDescriptions) and the values each offers. ProductDetails name
# an attribute by its code: {"C": <code>, "V": <value>} (shared/mahak-api.md §3).
COLOUR_CODE, SIZE_CODE = 1, 2
COLOUR_NAME, SIZE_NAME = "رنگ", "سایز"
COLOURS = ("آبی", "قرمز", "سبز", "مشکی")  # blue, red, green, black
SIZES = ("S", "M", "L", "XL")
# Price levels Mahak desktop has names for: retail (the site's) and wholesale.
PRICE_LEVEL_NAMES = {1: "قیمت فروش", 2: "قیمت عمده"}
# Measurement units (Products.UnitCode names one).
UNITS = {1: "عدد", 2: "کارتن"}
# The wholesale customers' group of `SeedRequest.wholesale_group`.
WHOLESALE_GROUP = {"Name": "همکاران", "SellPriceLevel": 2, "DiscountPercent": 5}


class SeedRequest(BaseModel):
    products: int = Field(5, ge=0, le=100_000)
    stores: int = Field(1, ge=0, le=100)
    categories: int = Field(1, ge=0, le=1_000)
    pictures_per_product: int = Field(1, ge=0, le=20)
    details_per_product: int = Field(1, ge=1, le=20)
    stock: float = Field(10, ge=0)  # Count1 of every detail in every seeded store
    people: int = Field(1, ge=0, le=10_000)
    link_visitor: bool = True  # offer the details to this site (VisitorProducts)
    # A customer group with its own price level and discount (`WHOLESALE_GROUP`).
    wholesale_group: bool = False


class SeedResult(BaseModel):
    stores: list[int] = []
    categories: list[int] = []
    products: list[int] = []
    product_details: list[int] = []
    product_detail_store_assets: list[int] = []
    visitor_products: list[int] = []
    pictures: list[int] = []
    photo_galleries: list[int] = []
    people: list[int] = []
    person_addresses: list[int] = []
    product_properties: list[int] = []
    person_groups: list[int] = []


def _arabic(text: str) -> str:
    """Write Persian text the way Mahak desktop often stores it: with Arabic ي and ك."""
    return text.replace("ی", "ي").replace("ک", "ك")


def _hash(*parts: Any) -> str:
    return hashlib.sha1("|".join(map(str, parts)).encode()).hexdigest()


def seed_base(state: SimState, config: SimulatorConfig) -> None:
    """The rows every account has: this site's visitor, settings, price levels, a customer group."""
    with state.lock:
        state.put(
            "Visitors",
            {
                **blank_row("Visitors"),
                "VisitorId": config.visitor_id,
                "VisitorCode": state.new_code("Visitors"),
                "Name": _arabic("سایت فروشگاه "),
                "ExtraInfo": "{}",
                "Username": config.username,
                "VisitorType": 1,
                "IsActive": True,
                "StoreCode": 1,
                "CashCode": 1,
                "BankCode": 1,
            },
        )
        for code, value in _SETTINGS.items():
            state.create(
                "Settings", {"SettingCode": code, "VisitorId": config.visitor_id, "Value": value}
            )
        for level, name in PRICE_LEVEL_NAMES.items():
            state.create("CostLevelNames", {"CostLevelNameCode": level, "Name": _arabic(name)})
        state.create(
            "PersonGroups",
            {
                "PersonGroupCode": state.new_code("PersonGroups"),
                "Name": _arabic("مشتریان اینترنتی "),
                "DiscountPercent": 0,
                "SellPriceLevel": 1,
            },
        )
        for code, name in UNITS.items():
            state.create("Units", {"UnitCode": code, "Name": _arabic(name), "Comment": ""})
        _seed_attributes(state)
        _seed_promotion(state, config)


def _seed_attributes(state: SimState) -> None:
    now = mahak_time()
    for code, name, values in (
        (COLOUR_CODE, COLOUR_NAME, COLOURS),
        (SIZE_CODE, SIZE_NAME, SIZES),
    ):
        state.create(
            "PropertyDescriptions",
            {
                "PropertyDescriptionCode": code,
                "Name": _arabic(name) + " ",
                "Title": _arabic(name),
                "EmptyTitle": "",
                "DataType": 2,  # text
                "DisplayType": 2,
                "Description": "",
                "UpdateDate": now,
            },
        )
        for row, value in enumerate(values, start=1):
            state.create(
                "PropertyDescriptionValues",
                {
                    "PropertyDescriptionValueCode": state.new_code("PropertyDescriptionValues"),
                    "PropertyDescriptionCode": code,
                    "Row": row,
                    "Value": _arabic(value),
                    "CreateDate": now,
                },
            )


def _seed_promotion(state: SimState, config: SimulatorConfig) -> None:
    """A promotion as Mahak desktop defines one: its terms in undocumented JSON strings."""
    code = state.new_code("Promotions")
    promotion = state.create(
        "Promotions",
        {
            "PromotionCode": code,
            "Visitors": str(config.visitor_id),
            "Stores": "1",
            "OtherFields": json.dumps(
                {"Name": _arabic("جشنواره پاییز"), "IsActive": True, "AccordingTo": 1},
                ensure_ascii=False,
            ),
        },
    )
    state.create(
        "PromotionDetails",
        {
            "PromotionDetailCode": state.new_code("PromotionDetails"),
            "PromotionId": promotion["PromotionId"],
            "PromotionCode": code,
            "OtherFields": json.dumps({"ToPayment": 1_000_000, "DiscountPercent": 5}),
        },
    )
    state.create(
        "PromotionEntities",
        {
            "PromotionEntityCode": state.new_code("PromotionEntities"),
            "PromotionId": promotion["PromotionId"],
            "OtherFields": json.dumps({"EntityType": 102, "CodeEntity": 1}),
        },
    )


def seed_catalog(state: SimState, config: SimulatorConfig, request: SeedRequest) -> SeedResult:
    out = SeedResult()
    now = mahak_time()
    with state.lock:
        for _ in range(request.stores):
            code = state.new_code("Stores")
            out.stores.append(
                state.create(
                    "Stores",
                    {
                        "StoreCode": code,
                        "Name": _arabic(f"انبار مرکزی {code}") + (" " if code % 2 else ""),
                        "Stock": 1,
                        "Comment": "",
                    },
                )["StoreId"]
            )
        stores = out.stores or [r["StoreId"] for r in state.rows("Stores") if not r["Deleted"]]

        for _ in range(request.categories):
            code = state.new_code("ProductCategories")
            out.categories.append(
                state.create(
                    "ProductCategories",
                    {
                        "ProductCategoryCode": code,
                        "Name": _arabic(f"دسته کالای {code} "),
                        "Color": "#3366FF",
                        "Icon": "",
                    },
                )["ProductCategoryId"]
            )
        categories = out.categories or [
            r["ProductCategoryId"] for r in state.rows("ProductCategories") if not r["Deleted"]
        ]
        if request.products and not categories:
            code = state.new_code("ProductCategories")
            categories = [
                state.create(
                    "ProductCategories",
                    {
                        "ProductCategoryCode": code,
                        "Name": _arabic("کالاهای عمومی"),
                    },
                )["ProductCategoryId"]
            ]
            out.categories.extend(categories)

        for n in range(request.products):
            _seed_product(state, config, request, out, categories[n % len(categories)], stores, now)

        if request.wholesale_group:
            out.person_groups.append(
                state.create(
                    "PersonGroups",
                    {
                        "PersonGroupCode": state.new_code("PersonGroups"),
                        **WHOLESALE_GROUP,
                        "Name": _arabic(str(WHOLESALE_GROUP["Name"])),
                    },
                )["PersonGroupId"]
            )
        group = next((r for r in state.rows("PersonGroups") if not r["Deleted"]), None)
        for _ in range(request.people):
            code = state.new_code("People")
            person = state.create(
                "People",
                {
                    "PersonCode": code,
                    "PersonGroupId": group and group["PersonGroupId"],
                    "PersonGroupCode": group and group["PersonGroupCode"],
                    "PersonType": 0,
                    "FirstName": _arabic("علی "),
                    "LastName": _arabic(f"مشتری {code}"),
                    "Mobile": f"0912{code:07d}",
                    "Credit": 0,
                    "Balance": 0,
                    "DiscountPercent": 0,
                    "SellPriceLevel": 1,
                },
            )
            out.people.append(person["PersonId"])
            out.person_addresses.append(
                state.create(
                    "PersonAddresses",
                    {
                        "PersonAddressCode": state.new_code("PersonAddresses"),
                        "PersonId": person["PersonId"],
                        "PersonCode": code,
                        "Title": _arabic("منزل"),
                        "Address": _arabic(f"تهران، خیابان ولیعصر، پلاک {code}"),
                        "PostalCode": f"1{code:09d}",
                        "Tel": "",
                        "Mobile": person["Mobile"],
                        "CityId": 1,
                        "Latitude": 35.7,
                        "Longitude": 51.4,
                        "IsDefault": True,
                    },
                )["PersonAddressId"]
            )
            state.create(
                "VisitorPeople",
                {
                    "PersonId": person["PersonId"],
                    "VisitorId": config.visitor_id,
                    "PersonCode": code,
                    "VisitorCode": 1,
                },
            )
    return out


def _seed_product(
    state: SimState,
    config: SimulatorConfig,
    request: SeedRequest,
    out: SeedResult,
    category_id: int,
    stores: list[int],
    now: str,
) -> None:
    code = state.new_code("Products")
    category = state.require("ProductCategories", category_id)
    # Every third name ends in spaces, every product name uses Arabic letters (as LIVE).
    name = _arabic(f"کالای نمونه شماره {code} کیفیت یک") + ("  " if code % 3 == 0 else "")
    product = state.create(
        "Products",
        {
            "ProductCode": code,
            "ProductCategoryId": category_id,
            "Name": name,
            "UnitName": _arabic("عدد"),
            "UnitName2": "",
            "UnitCode": 1,  # UNITS
            "UnitCode2": 0,
            "Tags": "",
            "UnitRatio": 1,
            "Min": 0,
            "TaxPercent": -1 if code % 4 == 0 else 0,
            "ChargePercent": 0,
            "Width": 0,
            "Height": 0,
            "Length": 0,
            "Weight": 0,
            "Type": 1,
            "Description": "",
            "ProductTIN": "",
            "UnitTIN": "",
            "DataHash": _hash("product", code, name),
            "CreateDate": now,
            "UpdateDate": now,
            "CreateSyncId": config.sync_id,
            "UpdateSyncId": config.sync_id,
            "ProductCategoryCode": category["ProductCategoryCode"],
        },
    )
    out.products.append(product["ProductId"])
    variants = request.details_per_product > 1
    if variants:  # its variants differ by size and colour
        for attribute in (SIZE_CODE, COLOUR_CODE):
            found = state.find("PropertyDescriptions", PropertyDescriptionCode=attribute)
            description = next((r for r in found if not r["Deleted"]), None)
            if description is None:
                continue
            out.product_properties.append(
                state.create(
                    "ProductProperties",
                    {
                        "ProductId": product["ProductId"],
                        "PropertyDescriptionId": description["PropertyDescriptionId"],
                        "ProductCode": code,
                    },
                )["ProductPropertyId"]
            )

    for variant in range(request.details_per_product):
        base = 150_000 * code + 10_000 * variant
        prices = {f"Price{level}": base - 5_000 * (level - 1) for level in range(1, 11)}
        properties = (
            [
                {"C": SIZE_CODE, "V": SIZES[variant % len(SIZES)]},
                # Two sizes per colour: (S, blue), (M, blue), (L, red), (XL, red), ...
                {"C": COLOUR_CODE, "V": _arabic(COLOURS[variant // 2 % len(COLOURS)])},
            ]
            if variants
            else []
        )
        detail = state.create(
            "ProductDetails",
            {
                "ProductDetailCode": state.new_code("ProductDetails"),
                "ProductId": product["ProductId"],
                "Properties": json.dumps(properties, ensure_ascii=False),
                "Properties2": "",
                "Barcode": f"626{code:08d}{variant}",
                **prices,
                "Discount": 0,
                "Discount1": 0,
                "Discount2": 0,
                "Discount3": 0,
                "Discount4": 0,
                "DefaultDiscountLevel": 0,
                "DiscountType": 0,
                "DefaultSellPriceLevel": 1,
                "CustomerPrice": 0,
                "Serials": "",
                "DataHash": _hash("detail", code, variant, base),
                "CreateDate": now,
                "ProductCode": code,
            },
        )
        detail_id = detail["ProductDetailId"]
        out.product_details.append(detail_id)
        for store_id in stores:
            out.product_detail_store_assets.append(
                state.create(
                    "ProductDetailStoreAssets",
                    {
                        "ProductDetailId": detail_id,
                        "StoreId": store_id,
                        "Count1": request.stock,
                        "Count2": 0,
                        "CreateDate": now,
                    },
                )["ProductDetailStoreAssetId"]
            )
        if request.link_visitor:
            out.visitor_products.append(
                state.create(
                    "VisitorProducts",
                    {
                        "ProductDetailId": detail_id,
                        "VisitorId": config.visitor_id,
                        "Count1": request.stock * len(stores),
                        "Count2": 0,
                        "Price": prices["Price1"],
                        "Serials": "",
                        "ProductDetailCode": detail["ProductDetailCode"],
                        "VisitorCode": 1,
                    },
                )["VisitorProductId"]
            )

    for order in range(request.pictures_per_product):
        file_name = f"{uuid.uuid4()}.jpg"
        picture = state.create(
            "Pictures",
            {
                "PictureCode": state.new_code("Pictures"),
                "FileName": file_name,
                "DisplayOrder": order,
                "Title": name.strip(),
                "Url": f"/Files/{config.database_id}/Pictures/{file_name}",
                "FileSize": 48_213 + code,
                "Width": 800,
                "Height": 800,
                "Format": "jpg",
            },
        )
        out.pictures.append(picture["PictureId"])
        out.photo_galleries.append(
            state.create(
                "PhotoGalleries",
                {
                    "PictureId": picture["PictureId"],
                    "EntityType": 102,
                    "ItemCode": product["ProductId"],
                    "ItemType": 1,
                },
            )["PhotoGalleryId"]
        )
