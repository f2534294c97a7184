"""Typed models of the Mahak entities this project reads and writes.

Field lists follow `shared/mahak-api.md` section 3/4. Every synced row has `row_version`
(int64, kept exact) and `deleted` (logical delete). The `ENTITIES` registry ties each logical
entity name (used in cursors, the sync log, CLI commands and operator updates) to its
GetAllData request field, its response collection and its model.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, NamedTuple
from zoneinfo import ZoneInfo

from pydantic import BeforeValidator, Field, PlainSerializer

from .types import (
    IRAN_TZ,
    MahakBool,
    MahakFloat,
    MahakInt,
    MahakModel,
    MahakText,
    fold_key,
    parse_mahak_datetime,
    wall_clock,
)

# --- Dates (shared/mahak-api.md §1.1) ------------------------------------------------------
# Mahak's clock is Iran wall-clock time. The tz database zone, not a fixed +03:30: Iran kept
# daylight saving until 2022, and dates from then must still read right.
TEHRAN = ZoneInfo("Asia/Tehran")


def parse_tehran(value: Any) -> Any:
    """A Mahak date-time; one without an offset is Asia/Tehran wall-clock time."""
    if isinstance(value, str) and (fast := wall_clock(value, TEHRAN)) is not None:
        return fast
    parsed = parse_mahak_datetime(value)
    if isinstance(parsed, datetime) and (parsed.tzinfo is None or parsed.tzinfo is IRAN_TZ):
        return parsed.replace(tzinfo=TEHRAN)  # no offset given: the wall clock is Tehran's
    return parsed


def tehran_wall_clock(moment: datetime) -> str:
    """What every public client sends: `YYYY-MM-DDTHH:MM:SS`, Tehran time, no offset (a server
    that drops an offset would file a UTC time 3.5 h early). A naive value is taken as
    Tehran time already."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(TEHRAN)
    return moment.replace(tzinfo=None, microsecond=0).isoformat()


MahakDateTime = Annotated[
    datetime,
    BeforeValidator(parse_tehran),
    PlainSerializer(tehran_wall_clock, return_type=str, when_used="json"),
]


def _as_text(value: Any) -> Any:
    # Codes, phone numbers and setting values arrive as strings or, from some writers, numbers.
    if isinstance(value, int | float) and not isinstance(value, bool):
        return format(value, "g") if isinstance(value, float) else str(value)
    return value


MahakString = Annotated[str | None, BeforeValidator(_as_text)]


class SyncedRow(MahakModel):
    row_version: MahakInt = 0
    deleted: MahakBool = False

    def to_wire(self) -> dict[str, Any]:
        """The record as SaveAllData takes it. RowVersion is the server's to stamp: no public
        client sends one, and a stale value could read as a concurrency token."""
        wire = super().to_wire()
        wire.pop("rowVersion", None)
        return wire


# --- Catalog -------------------------------------------------------------------------------


class Store(SyncedRow):
    store_id: MahakInt
    store_client_id: MahakInt | None = None
    store_code: MahakInt | None = None
    name: MahakText = ""
    stock: MahakInt | None = None
    comment: MahakText | None = None


class ProductCategory(SyncedRow):
    product_category_id: MahakInt
    product_category_client_id: MahakInt | None = None
    product_category_code: MahakInt | None = None
    name: MahakText = ""
    color: str | None = None
    icon: str | None = None


class Product(SyncedRow):
    product_id: MahakInt
    product_client_id: MahakInt | None = None
    product_code: MahakInt | None = None
    product_category_id: MahakInt | None = None
    name: MahakText = ""
    unit_name: MahakText | None = None
    unit_name2: MahakText | None = None
    unit_code: MahakInt | None = None  # Units.UnitCode of the main unit
    unit_ratio: MahakFloat | None = None
    min: MahakFloat | None = None
    tax_percent: MahakFloat | None = None
    charge_percent: MahakFloat | None = None
    width: MahakFloat | None = None
    height: MahakFloat | None = None
    length: MahakFloat | None = None
    weight: MahakFloat | None = None
    type: MahakInt | None = None
    tags: MahakText | None = None
    description: MahakText | None = None
    data_hash: str | None = None
    create_date: MahakDateTime | None = None
    update_date: MahakDateTime | None = None


class ProductDetail(SyncedRow):
    """A sellable variant: the id orders reference."""

    product_detail_id: MahakInt
    product_detail_client_id: MahakInt | None = None
    product_detail_code: MahakInt | None = None
    product_id: MahakInt
    properties: str | None = None
    barcode: str | None = None
    price1: MahakFloat = 0
    price2: MahakFloat = 0
    price3: MahakFloat = 0
    price4: MahakFloat = 0
    price5: MahakFloat = 0
    price6: MahakFloat = 0
    price7: MahakFloat = 0
    price8: MahakFloat = 0
    price9: MahakFloat = 0
    price10: MahakFloat = 0
    discount: MahakFloat | None = None
    discount1: MahakFloat | None = None
    discount2: MahakFloat | None = None
    discount3: MahakFloat | None = None
    discount4: MahakFloat | None = None
    default_discount_level: MahakInt | None = None
    discount_type: MahakInt | None = None  # 0 amount, 1 percent (as on order lines)
    default_sell_price_level: MahakInt | None = None
    customer_price: MahakFloat | None = None
    data_hash: str | None = None
    create_date: MahakDateTime | None = None

    @staticmethod
    def price_field(level: int) -> str:
        """The attribute holding a level's price; Mahak's -1 default level means level 1."""
        return f"price{level if 1 <= level <= 10 else 1}"

    def price(self, level: int) -> float:
        """Price of a level 1..10."""
        return float(getattr(self, self.price_field(level)))


class ProductDetailStoreAsset(SyncedRow):
    """Stock of one product detail in one store."""

    product_detail_store_asset_id: MahakInt
    product_detail_id: MahakInt
    store_id: MahakInt
    count1: MahakFloat = 0
    count2: MahakFloat = 0
    create_date: MahakDateTime | None = None


class VisitorProduct(SyncedRow):
    """A product detail offered to this site; deleted = withdrawn from the site."""

    visitor_product_id: MahakInt
    product_detail_id: MahakInt
    visitor_id: MahakInt
    count1: MahakFloat | None = None
    count2: MahakFloat | None = None
    price: MahakFloat | None = None


class Picture(SyncedRow):
    picture_id: MahakInt
    picture_client_id: MahakInt | None = None
    picture_code: MahakInt | None = None
    file_name: str | None = None
    display_order: MahakInt | None = None
    title: MahakText | None = None
    url: str | None = None
    file_size: MahakInt | None = None
    width: MahakInt | None = None
    height: MahakInt | None = None
    format: str | None = None


class PhotoGallery(SyncedRow):
    """Links a picture to a product (EntityType 102) or person (101) by server id."""

    photo_gallery_id: MahakInt
    picture_id: MahakInt
    entity_type: MahakInt
    item_code: MahakInt
    item_type: MahakInt | None = None


# --- People --------------------------------------------------------------------------------


class Person(SyncedRow):
    person_id: MahakInt | None = None
    person_client_id: MahakInt | None = None
    person_code: MahakInt | None = None
    person_group_id: MahakInt | None = None
    person_type: MahakInt | None = None
    first_name: MahakText | None = None
    last_name: MahakText | None = None
    organization: MahakText | None = None
    national_code: str | None = None
    email: str | None = None
    mobile: str | None = None
    phone: str | None = None
    address: MahakText | None = None
    city: MahakText | None = None
    state: MahakText | None = None
    postal_code: str | None = None


class PersonGroup(SyncedRow):
    """Every new person needs one (shared/mahak-api.md §4, §10 (b))."""

    person_group_id: MahakInt
    person_group_client_id: MahakInt | None = None
    person_group_code: MahakInt | None = None
    name: MahakText = ""
    discount_percent: MahakFloat | None = None
    sell_price_level: MahakInt | None = None  # Price<n> its members buy at


class PersonAddress(SyncedRow):
    person_address_id: MahakInt
    person_address_client_id: MahakInt | None = None
    person_address_code: MahakInt | None = None
    person_id: MahakInt | None = None
    title: MahakText | None = None
    address: MahakText | None = None
    postal_code: MahakString = None
    tel: MahakString = None
    mobile: MahakString = None
    city_id: MahakInt | None = None
    latitude: MahakFloat | None = None
    longitude: MahakFloat | None = None
    is_default: MahakBool | None = None


class Visitor(SyncedRow):
    """The login's visitor: its cash box (`CashCode`) goes on receipts (§4, §10 (d))."""

    visitor_id: MahakInt
    visitor_client_id: MahakInt | None = None
    visitor_code: MahakInt | None = None
    name: MahakText = ""
    store_code: MahakInt | None = None
    cash_code: MahakInt | None = None
    bank_code: MahakInt | None = None


class VisitorPerson(SyncedRow):
    visitor_person_id: MahakInt | None = None
    visitor_person_client_id: MahakInt | None = None
    person_id: MahakInt | None = None
    person_client_id: MahakInt | None = None
    visitor_id: MahakInt


# --- Storefront: variant attributes, price levels, settings, units, promotions -------------
# Fields as in Swagger (SW2) where shared/mahak-api.md §3 is silent; README "Storefront catalog".


class PropertyDescription(SyncedRow):
    """An attribute a variant can have (size, colour). `ProductDetails.Properties` names it by
    its `PropertyDescriptionCode`, not its id."""

    property_description_id: MahakInt
    property_description_client_id: MahakInt | None = None
    property_description_code: MahakInt | None = None
    name: MahakText = ""
    title: MahakText | None = None
    empty_title: MahakText | None = None
    data_type: MahakInt | None = None  # 2 text, 3 serial, 4 number, 5 date, 6 barcode (SW)
    display_type: MahakInt | None = None
    description: MahakText | None = None
    update_date: MahakDateTime | None = None


class PropertyDescriptionValue(SyncedRow):
    """One of the values an attribute offers (by the attribute's code)."""

    property_description_value_id: MahakInt
    property_description_value_client_id: MahakInt | None = None
    property_description_value_code: MahakInt | None = None
    property_description_code: MahakInt | None = None
    row: MahakInt | None = None
    value: MahakText | None = None
    create_date: MahakDateTime | None = None


class ProductProperty(SyncedRow):
    """Which attributes a product's variants have."""

    product_property_id: MahakInt
    product_id: MahakInt | None = None
    property_description_id: MahakInt | None = None
    product_client_id: MahakInt | None = None
    product_code: MahakInt | None = None


class CostLevelName(SyncedRow):
    """The name of price level `cost_level_name_code` (1-10)."""

    cost_level_name_id: MahakInt
    cost_level_name_client_id: MahakInt | None = None
    cost_level_name_code: MahakInt | None = None
    name: MahakText = ""


class Setting(SyncedRow):
    """One Mahak setting: 14000 default charge %, 14001 default tax %, 14008 tax on (§3)."""

    setting_id: MahakInt
    setting_code: MahakInt | None = None
    setting_client_id: MahakInt | None = None
    visitor_id: MahakInt | None = None
    value: MahakString = None


class Unit(SyncedRow):
    unit_id: MahakInt
    unit_code: MahakInt | None = None
    unit_client_id: MahakInt | None = None
    name: MahakText = ""
    comment: MahakText | None = None
    unit_tin: MahakString = None


class Promotion(SyncedRow):
    """A promotion; its terms live in JSON strings (`OtherFields`), kept as sent."""

    promotion_id: MahakInt
    promotion_client_id: MahakInt | None = None
    promotion_code: MahakInt | None = None
    visitors: MahakString = None
    stores: MahakString = None
    other_fields: MahakString = None


class PromotionDetail(SyncedRow):
    promotion_detail_id: MahakInt
    promotion_detail_client_id: MahakInt | None = None
    promotion_detail_code: MahakInt | None = None
    promotion_id: MahakInt | None = None
    other_fields: MahakString = None
    promotion_client_id: MahakInt | None = None
    promotion_code: MahakInt | None = None


class PromotionEntity(SyncedRow):
    promotion_entity_id: MahakInt
    promotion_entity_code: MahakInt | None = None
    promotion_id: MahakInt | None = None
    promotion_entity_client_id: MahakInt | None = None
    other_fields: MahakString = None


# --- Orders --------------------------------------------------------------------------------


class Order(SyncedRow):
    order_id: MahakInt | None = None
    order_client_id: MahakInt | None = None
    order_code: MahakInt | None = None
    person_id: MahakInt | None = None
    person_client_id: MahakInt | None = None
    visitor_id: MahakInt | None = None
    receipt_client_id: MahakInt | None = None
    order_type: MahakInt | None = None
    order_date: MahakDateTime | None = None
    delivery_date: MahakDateTime | None = None
    discount: MahakFloat | None = None
    discount_type: MahakInt | None = None
    send_cost: MahakFloat | None = None
    other_cost: MahakFloat | None = None
    settlement_type: MahakInt | None = None
    description: MahakText | None = None
    shipping_address: str | None = None
    create_date: MahakDateTime | None = None


class OrderDetail(SyncedRow):
    order_detail_id: MahakInt | None = None
    order_detail_client_id: MahakInt | None = None
    order_id: MahakInt | None = None
    order_client_id: MahakInt | None = None
    item_type: MahakInt | None = None
    product_detail_id: MahakInt | None = None
    store_id: MahakInt | None = None
    price: MahakFloat | None = None
    count1: MahakFloat | None = None
    count2: MahakFloat | None = None
    discount: MahakFloat | None = None
    discount_type: MahakInt | None = None
    tax_percent: MahakFloat | None = None
    charge_percent: MahakFloat | None = None
    gift: MahakInt | None = None
    description: MahakText | None = None


class Receipt(SyncedRow):
    receipt_id: MahakInt | None = None
    receipt_client_id: MahakInt | None = None
    order_client_id: MahakInt | None = None
    person_id: MahakInt | None = None
    person_client_id: MahakInt | None = None
    visitor_id: MahakInt | None = None
    cash_code: MahakInt | None = None
    cash_amount: MahakFloat | None = None
    bank_id: MahakInt | None = None
    date: MahakDateTime | None = None
    description: MahakText | None = None


# --- Login ---------------------------------------------------------------------------------


class LoginData(MahakModel):
    user_token: str = Field(repr=False)
    sync_id: MahakInt | None = None
    visitor_id: MahakInt | None = None
    database_id: MahakInt | None = None
    user_title: MahakText | None = None
    mahak_id: str | None = None
    server_time: MahakDateTime | None = None
    package_no: MahakInt | None = None
    credit_day: MahakInt | None = None


# --- Registry ------------------------------------------------------------------------------


@dataclass(frozen=True)
class EntitySpec:
    name: str  # logical name: cursors, sync log, CLI, operator updates
    collection: str  # GetAllData `Objects` key and SaveAllData result key (PascalCase)
    request_field: str  # GetAllData `from…Version` request field
    model: type[SyncedRow]
    id_field: str  # the model's server-id attribute
    dispute_name: str  # `entityName` for SolveDispute


def _spec(
    name: str, collection: str, request: str, model: type[SyncedRow], id_field: str, dispute: str
) -> EntitySpec:
    return EntitySpec(name, collection, request, model, id_field, dispute)


ENTITIES: dict[str, EntitySpec] = {
    s.name: s
    for s in (
        _spec("stores", "Stores", "fromStoreVersion", Store, "store_id", "store"),
        _spec(
            "product_categories",
            "ProductCategories",
            "fromProductCategoryVersion",
            ProductCategory,
            "product_category_id",
            "productCategory",
        ),
        _spec("products", "Products", "fromProductVersion", Product, "product_id", "product"),
        _spec(
            "product_details",
            "ProductDetails",
            "fromProductDetailVersion",
            ProductDetail,
            "product_detail_id",
            "ProductDetail",
        ),
        _spec(
            "visitor_products",
            "VisitorProducts",
            "fromVisitorProductVersion",
            VisitorProduct,
            "visitor_product_id",
            "visitorProduct",
        ),
        _spec(
            "product_detail_store_assets",
            "ProductDetailStoreAssets",
            "fromProductDetailStoreAssetVersion",
            ProductDetailStoreAsset,
            "product_detail_store_asset_id",
            "ProductDetailStoreAsset",
        ),
        _spec("pictures", "Pictures", "fromPictureVersion", Picture, "picture_id", "picture"),
        _spec(
            "photo_galleries",
            "PhotoGalleries",
            "fromPhotoGalleryVersion",
            PhotoGallery,
            "photo_gallery_id",
            "PhotoGallery",
        ),
        _spec("people", "People", "fromPersonVersion", Person, "person_id", "person"),
        _spec(
            "visitor_people",
            "VisitorPeople",
            "fromVisitorPersonVersion",
            VisitorPerson,
            "visitor_person_id",
            "visitorPerson",
        ),
        _spec("orders", "Orders", "fromOrderVersion", Order, "order_id", "order"),
        _spec(
            "order_details",
            "OrderDetails",
            "fromOrderDetailVersion",
            OrderDetail,
            "order_detail_id",
            "orderDetail",
        ),
        _spec("receipts", "Receipts", "fromReceiptVersion", Receipt, "receipt_id", "receipt"),
        # Read by the order activities only (the person group and cash box of a send).
        _spec(
            "person_groups",
            "PersonGroups",
            "fromPersonGroupVersion",
            PersonGroup,
            "person_group_id",
            "personGroup",
        ),
        _spec("visitors", "Visitors", "fromVisitorVersion", Visitor, "visitor_id", "visitor"),
        # The storefront's catalog (issue 18).
        _spec(
            "person_addresses",
            "PersonAddresses",
            "fromPersonAddressVersion",
            PersonAddress,
            "person_address_id",
            "personAddress",
        ),
        _spec(
            "property_descriptions",
            "PropertyDescriptions",
            "fromPropertyDescriptionVersion",
            PropertyDescription,
            "property_description_id",
            "PropertyDescription",
        ),
        _spec(
            "property_description_values",
            "PropertyDescriptionValues",
            "fromPropertyDescriptionValueVersion",
            PropertyDescriptionValue,
            "property_description_value_id",
            "propertyDescriptionValue",
        ),
        _spec(
            "product_properties",
            "ProductProperties",
            "fromProductPropertyVersion",
            ProductProperty,
            "product_property_id",
            "productProperty",
        ),
        _spec(
            "cost_level_names",
            "CostLevelNames",
            "fromCostLevelNameVersion",
            CostLevelName,
            "cost_level_name_id",
            "costLevelName",
        ),
        _spec("settings", "Settings", "fromSettingVersion", Setting, "setting_id", "setting"),
        _spec("units", "Units", "fromUnitVersion", Unit, "unit_id", "unit"),
        _spec(
            "promotions",
            "Promotions",
            "fromPromotionVersion",
            Promotion,
            "promotion_id",
            "promotion",
        ),
        _spec(
            "promotion_details",
            "PromotionDetails",
            "fromPromotionDetailVersion",
            PromotionDetail,
            "promotion_detail_id",
            "promotionDetail",
        ),
        _spec(
            "promotion_entities",
            "PromotionEntities",
            "fromPromotionEntityVersion",
            PromotionEntity,
            "promotion_entity_id",
            "promotionEntity",
        ),
    )
}

# The incoming sync's dependency order before the storefront entities (issue 18): what
# incoming cycles recorded without the `storefront-entities` patch marker replay.
INCOMING_ORDER_BEFORE_STOREFRONT: tuple[str, ...] = (
    "stores",
    "product_categories",
    "products",
    "product_details",
    "visitor_products",
    "product_detail_store_assets",
    "pictures",
    "photo_galleries",
    "orders",
    "order_details",
)

# The incoming sync's dependency order: parents before the rows that reference them. The
# attributes come before the product details, which are decoded against them as they are
# stored; settings and price-level names before the details the catalog prices.
INCOMING_ORDER: tuple[str, ...] = (
    "stores",
    "product_categories",
    "units",
    "products",
    "property_descriptions",
    "property_description_values",
    "product_properties",
    "cost_level_names",
    "settings",
    "product_details",
    "visitor_products",
    "product_detail_store_assets",
    "pictures",
    "photo_galleries",
    "person_groups",
    "person_addresses",
    "promotions",
    "promotion_details",
    "promotion_entities",
    "orders",
    "order_details",
)


def entity(name: str) -> EntitySpec:
    try:
        return ENTITIES[name]
    except KeyError:
        raise KeyError(f"unknown Mahak entity {name!r}; known: {', '.join(ENTITIES)}") from None


def entity_name(name: str, among: tuple[str, ...] | None = None) -> str:
    """The logical name of an entity given as Mahak spells it (`ProductDetails`) or in snake
    case (`product_details`), any letter case; `among` limits the accepted names (default:
    all of `ENTITIES`). An unknown name raises ValueError listing the valid ones."""
    names = tuple(among) if among is not None else tuple(ENTITIES)
    wanted = fold_key(name.strip()) if isinstance(name, str) else ""
    for logical in names:
        if wanted in (fold_key(logical), fold_key(ENTITIES[logical].collection)):
            return logical
    valid = ", ".join(f"{n} ({ENTITIES[n].collection})" for n in names)
    raise ValueError(f"unknown entity {name!r}; use one of: {valid}")


# --- What one GetAllData page yields per entity --------------------------------------------


class RejectedRow(MahakModel):
    """A row Mahak sent that does not validate: quarantined (dead-lettered), never dropped."""

    entity: str
    raw: dict[str, Any]
    error: str
    mahak_id: int | None = None
    row_version: int | None = None


class RowStamp(NamedTuple):
    """A GetAllData row's id and RowVersion alone (None where not a readable int64)."""

    mahak_id: int | None
    row_version: int | None


class EntityBatch(MahakModel):
    """One entity's slice of a GetAllData answer: valid rows plus quarantined ones.

    `max_row_version` covers rejected rows too: they are stored (as dead letters), so the
    cursor may pass them.
    """

    entity: str
    rows: list[Any] = Field(default_factory=list)  # instances of ENTITIES[entity].model
    rejected: list[RejectedRow] = Field(default_factory=list)
    max_row_version: int | None = None
