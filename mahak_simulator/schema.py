"""The shape of Mahak's data on the wire: collections, their request fields and columns.

`COLLECTIONS` lists every GetAllData `Objects` key in the LIVE order (with the LIVE anomalies
`companies` and `Mahakpays`), the `from…Version` request field that asks for it, and its
server-id column. `FIELDS` gives the PascalCase columns, in wire order, of the entities the
simulator really populates; each column carries a kind used to coerce lenient request values.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .wire import TEHRAN, OffsetRefused, fold, now_in_tehran, stored_wall_clock


@dataclass(frozen=True)
class Collection:
    name: str  # GetAllData `Objects` key
    request_field: str  # `from…Version`
    id_field: str
    save_name: str  # SaveAllData result key (LIVE spells two of them differently)

    @property
    def client_id_field(self) -> str:
        return self.id_field.removesuffix("Id") + "ClientId"


def _collection(name: str, stem: str, save_name: str | None = None) -> Collection:
    return Collection(name, f"from{stem}Version", f"{stem}Id", save_name or name)


COLLECTIONS: tuple[Collection, ...] = (
    _collection("Banks", "Bank"),
    _collection("BankGroups", "BankGroup"),
    _collection("Currencies", "Currency"),
    _collection("Checklists", "Checklist"),
    _collection("Cheques", "Cheque"),
    _collection("Cashes", "Cash"),
    _collection("ExpenseGroups", "ExpenseGroup"),
    _collection("Orders", "Order"),
    _collection("OrderDetails", "OrderDetail"),
    _collection("PersonGroups", "PersonGroup"),
    _collection("People", "Person"),
    _collection("PersonAddresses", "PersonAddress"),
    _collection("Pictures", "Picture"),
    _collection("PhotoGalleries", "PhotoGallery"),
    _collection("Products", "Product"),
    _collection("ProductCategories", "ProductCategory"),
    _collection("ProductDetails", "ProductDetail"),
    _collection("ProductProperties", "ProductProperty"),
    _collection("PropertyDescriptions", "PropertyDescription"),
    _collection("PropertyDescriptionValues", "PropertyDescriptionValue"),
    _collection("ProductDetailStoreAssets", "ProductDetailStoreAsset"),
    _collection("Receipts", "Receipt"),
    _collection("Transactions", "Transaction"),
    _collection("Visitors", "Visitor"),
    _collection("VisitorCashes", "VisitorCash"),
    _collection("VisitorBanks", "VisitorBank"),
    _collection("VisitorIncomes", "VisitorIncome"),
    _collection("VisitorExpenses", "VisitorExpense"),
    _collection("VisitorPeople", "VisitorPerson"),
    _collection("VisitorLocations", "VisitorLocation"),
    _collection("VisitorProducts", "VisitorProduct"),
    _collection("Promotions", "Promotion"),
    _collection("PromotionDetails", "PromotionDetail"),
    _collection("PromotionEntities", "PromotionEntity"),
    _collection("ReturnReasons", "ReturnReason"),
    _collection("TransferAccounts", "TransferAccount"),
    _collection("TransferStores", "TransferStore"),
    _collection("TransferStoreDetails", "TransferStoreDetail"),
    _collection("Incomes", "Income"),
    _collection("Expenses", "Expense"),
    _collection("IncomeGroups", "IncomeGroup"),
    _collection("CostLevelNames", "CostLevelName"),
    _collection("NotRegisters", "NotRegister"),
    _collection("Projects", "Project"),
    _collection("Stores", "Store"),
    _collection("Settings", "Setting"),
    _collection("ExtraDatas", "ExtraData"),
    _collection("Regions", "Region"),
    _collection("MissionDetails", "MissionDetail"),
    _collection("Missions", "Mission"),
    _collection("Units", "Unit"),
    _collection("OrderTaxStatuses", "OrderTaxStatus"),
    _collection("companies", "Company", "Companies"),
    _collection("Payments", "Payment"),
    _collection("PaymentCheques", "PaymentCheque"),
    _collection("Mahakpays", "MahakPay", "MahakPays"),
    _collection("TaxOrderReceipts", "TaxOrderReceipt"),
)
BY_NAME: dict[str, Collection] = {c.name: c for c in COLLECTIONS}


# Every spelling a caller may use for a collection: `ProductDetails`, `product_details`,
# `ProductDetail` (SolveDispute's `entityName`), `visitorPerson`, `companies`, ...
# The control API's snake_case names count too, so underscores are dropped here (not on the wire).
def _alias_key(name: str) -> str:
    return fold(name.replace("_", ""))


_ALIASES: dict[str, Collection] = {}
for _c in COLLECTIONS:
    for _alias in (_c.name, _c.save_name, _c.id_field[:-2]):
        _ALIASES.setdefault(_alias_key(_alias), _c)


def resolve_collection(name: str) -> Collection | None:
    return _ALIASES.get(_alias_key(name))


# --- Columns -------------------------------------------------------------------------------
# kinds: i = integer, f = number, b = boolean, d = timestamp, s = string

_FIELD_SPECS = {
    "Stores": "StoreId:i StoreClientId:i StoreCode:i Name:s Stock:i Comment:s Deleted:b RowVersion:i",
    "ProductCategories": "ProductCategoryId:i ProductCategoryClientId:i ProductCategoryCode:i Name:s "
    "Color:s Icon:s Deleted:b RowVersion:i",
    "Products": "ProductId:i ProductClientId:i ProductCode:i ProductCategoryId:i Name:s UnitName:s "
    "UnitName2:s UnitCode:i UnitCode2:i Tags:s UnitRatio:f Min:f TaxPercent:f ChargePercent:f "
    "Width:f Height:f Length:f Weight:f Type:i Description:s ProductTIN:s UnitTIN:s Deleted:b "
    "DataHash:s CreateDate:d UpdateDate:d CreateSyncId:i UpdateSyncId:i RowVersion:i "
    "ProductCategoryClientId:i ProductCategoryCode:i",
    "ProductDetails": "ProductDetailId:i ProductDetailClientId:i ProductDetailCode:i ProductId:i "
    "Properties:s Properties2:s Barcode:s "
    + " ".join(f"Price{n}:f" for n in range(1, 11))
    + " Discount:f Discount1:f Discount2:f Discount3:f Discount4:f DefaultDiscountLevel:i "
    "DiscountType:i DefaultSellPriceLevel:i CustomerPrice:f Serials:s Deleted:b DataHash:s "
    "CreateDate:d RowVersion:i ProductClientId:i ProductCode:i",
    "ProductDetailStoreAssets": "ProductDetailStoreAssetId:i ProductDetailId:i StoreId:i Count1:f "
    "Count2:f Deleted:b CreateDate:d RowVersion:i",
    "VisitorProducts": "VisitorProductId:i ProductDetailId:i VisitorId:i Count1:f Count2:f Price:f "
    "Serials:s Deleted:b RowVersion:i ProductDetailClientId:i ProductDetailCode:i VisitorClientId:i "
    "VisitorCode:i",
    "Pictures": "PictureId:i PictureClientId:i PictureCode:i FileName:s DisplayOrder:i Title:s Url:s "
    "FileSize:i Width:i Height:i Format:s Deleted:b RowVersion:i",
    "PhotoGalleries": "PhotoGalleryId:i PictureId:i EntityType:i ItemCode:i ItemType:i Deleted:b "
    "RowVersion:i",
    "Visitors": "VisitorId:i VisitorClientId:i VisitorCode:i Name:s ExtraInfo:s Username:s Password:s "
    "VisitorType:i IsActive:b StoreCode:i CashCode:i BankCode:i Deleted:b RowVersion:i",
    "Settings": "SettingId:i SettingCode:i SettingClientId:i VisitorId:i Value:s Deleted:b RowVersion:i",
    "CostLevelNames": "CostLevelNameId:i CostLevelNameClientId:i CostLevelNameCode:i Name:s Deleted:b "
    "RowVersion:i",
    "PersonGroups": "PersonGroupId:i PersonGroupClientId:i PersonGroupCode:i Name:s DiscountPercent:f "
    "SellPriceLevel:i Deleted:b RowVersion:i",
    # The storefront entities (issue 18): §3 where it lists them, Swagger (SW2) otherwise.
    "PersonAddresses": "PersonAddressId:i PersonAddressClientId:i PersonAddressCode:i PersonId:i "
    "Title:s Address:s PostalCode:s Tel:s Mobile:s CityId:i Latitude:f Longitude:f IsDefault:b "
    "Deleted:b RowVersion:i PersonClientId:i PersonCode:i",
    "PropertyDescriptions": "PropertyDescriptionId:i PropertyDescriptionClientId:i "
    "PropertyDescriptionCode:i Name:s Title:s EmptyTitle:s DataType:i DisplayType:i Description:s "
    "Deleted:b UpdateDate:d RowVersion:i",
    "PropertyDescriptionValues": "PropertyDescriptionValueId:i PropertyDescriptionValueClientId:i "
    "PropertyDescriptionValueCode:i PropertyDescriptionCode:i Row:i Value:s Deleted:b CreateDate:d "
    "RowVersion:i",
    "ProductProperties": "ProductPropertyId:i ProductId:i PropertyDescriptionId:i Deleted:b "
    "RowVersion:i ProductClientId:i ProductCode:i",
    "Units": "UnitId:i UnitCode:i UnitClientId:i Name:s Comment:s UnitTIN:s Deleted:b RowVersion:i",
    "Promotions": "PromotionId:i PromotionClientId:i PromotionCode:i Visitors:s Stores:s "
    "OtherFields:s Deleted:b RowVersion:i",
    "PromotionDetails": "PromotionDetailId:i PromotionDetailClientId:i PromotionDetailCode:i "
    "PromotionId:i OtherFields:s Deleted:b RowVersion:i PromotionClientId:i PromotionCode:i",
    "PromotionEntities": "PromotionEntityId:i PromotionEntityCode:i PromotionId:i "
    "PromotionEntityClientId:i OtherFields:s Deleted:b RowVersion:i",
    "People": "PersonId:i PersonClientId:i PersonCode:i PersonGroupId:i PersonType:i FirstName:s "
    "LastName:s Organization:s NationalCode:s Email:s Mobile:s Phone:s Address:s City:s State:s "
    "PostalCode:s Credit:f Balance:f DiscountPercent:f SellPriceLevel:i Deleted:b RowVersion:i "
    "PersonGroupClientId:i PersonGroupCode:i",
    "VisitorPeople": "VisitorPersonId:i VisitorPersonClientId:i PersonId:i VisitorId:i Deleted:b "
    "RowVersion:i PersonClientId:i PersonCode:i VisitorClientId:i VisitorCode:i",
    "Orders": "OrderId:i OrderClientId:i OrderCode:i FiscalYear:i PersonId:i VisitorId:i ReceiptId:i "
    "PaymentId:i OrderType:i OrderDate:d DeliveryDate:d Discount:f DiscountType:i SendCost:f "
    "OtherCost:f SettlementType:i Immediate:b ReturnReasonId:i Description:s ExpenseId:i ProjectId:i "
    "Latitude:f Longitude:f ShippingAddress:s CarrierType:i CarrierID:i DriverCurrencyType:i "
    "CarryingAsExpense:b ReferenceOrderId:i Deleted:b CreateDate:d RowVersion:i PersonClientId:i "
    "PersonCode:i ReceiptClientId:i ReceiptCode:i PaymentClientId:i PaymentCode:i",
    "OrderDetails": "OrderDetailId:i OrderDetailClientId:i ItemType:i OrderId:i ProductDetailId:i "
    "IncomeId:i ExpenseId:i Price:f Count1:f Count2:f PromotionCode:i Gift:i Description:s Discount:f "
    "DiscountType:i TaxPercent:f ChargePercent:f StoreId:i Width:f Height:f ItemCount:f RowId:i "
    "Deleted:b CreateDate:d RowVersion:i OrderClientId:i OrderCode:i ProductDetailClientId:i "
    "ProductDetailCode:i",
    "Receipts": "ReceiptId:i ReceiptClientId:i ReceiptCode:i PersonId:i VisitorId:i CashCode:i "
    "CashAmount:f BankId:i Date:d Description:s Deleted:b CreateDate:d RowVersion:i PersonClientId:i "
    "PersonCode:i OrderClientId:i",
}
FIELDS: dict[str, dict[str, str]] = {
    name: dict(item.split(":") for item in spec.split()) for name, spec in _FIELD_SPECS.items()
}


def blank_row(collection: str) -> dict[str, Any]:
    """A row with every column of the entity present (as Mahak sends them), all null."""
    row = dict.fromkeys(FIELDS.get(collection, {}))
    if "Deleted" in row:
        row["Deleted"] = False
    return row


_DOTNET_DEFAULTS = {"i": 0, "f": 0, "b": False}


def tombstone_row(collection: str, row_id: int) -> dict[str, Any]:
    """A deleted row the server has no content for: .NET defaults (0, false, null strings)."""
    row = {name: _DOTNET_DEFAULTS.get(kind) for name, kind in FIELDS.get(collection, {}).items()}
    return {**row, BY_NAME[collection].id_field: row_id, "Deleted": True}


# --- Lenient values ------------------------------------------------------------------------


class InvalidValue(ValueError):
    """A request value the model binder cannot read; names the property like ASP.NET does."""

    def __init__(self, prop: str, value: Any, reason: str | None = None) -> None:
        text = f"The value '{str(value)[:40]}' is not valid for {prop}."
        super().__init__(f"{text} ({reason})" if reason else text)
        self.prop = prop


def number(value: float) -> int | float:
    """.NET writes an integral double as `10`, not `10.0`."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def mahak_time(moment: datetime | None = None) -> str:
    """Iran time, no offset, 7 fractional digits (100 ns ticks): `2025-10-04T15:18:38.2345036`."""
    moment = moment or now_in_tehran()
    if moment.tzinfo is not None:
        moment = moment.astimezone(TEHRAN)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f") + "0"


_INT_LIKE = re.compile(r"^\s*[+-]?\d+(\.0*)?\s*$")


def coerce(prop: str, kind: str, value: Any, *, dated_offset: str = "drop") -> Any:
    """Read a request value leniently (numbers as strings, `Y-m-d H:i:s` dates, ...).

    `dated_offset` is the §11.4 mode (`SimulatorConfig.dated_offset`) for a date with an offset."""
    if value is None:
        return None
    try:
        if kind == "i":
            if isinstance(value, bool):
                raise ValueError
            if isinstance(value, int):
                return value
            if isinstance(value, float) and value.is_integer():
                return int(value)
            if isinstance(value, str) and _INT_LIKE.match(value):
                return int(value.strip().split(".")[0])  # int64-exact, unlike float()
            if isinstance(value, str) and not value.strip():
                return None
            raise ValueError
        if kind == "f":
            if isinstance(value, bool):
                raise ValueError
            if isinstance(value, (int, float)):
                return number(float(value))
            if isinstance(value, str):
                return None if not value.strip() else number(float(value.replace(",", "")))
            raise ValueError
        if kind == "b":
            if isinstance(value, bool):
                return value
            if isinstance(value, (int, float)) or (
                isinstance(value, str) and value.strip() in ("0", "1")
            ):
                return bool(int(value))
            if isinstance(value, str) and value.strip().lower() in ("true", "false"):
                return value.strip().lower() == "true"
            raise ValueError
        if kind == "d":
            # By default stored as the wall clock sent: an offset is dropped, as a server that
            # ignores it would (shared/mahak-api.md §1.1); a client sending UTC shows 3.5 h off.
            if isinstance(value, str) and not value.strip():
                return None
            if not isinstance(value, str):
                raise ValueError
            return mahak_time(stored_wall_clock(value, dated_offset))
        if isinstance(value, (dict, list)):
            raise ValueError  # a JSON string field (e.g. ShippingAddress) sent as an object
        return value if isinstance(value, str) else str(value)
    except OffsetRefused as exc:
        raise InvalidValue(prop, value, str(exc)) from None
    except (ValueError, TypeError, OverflowError):
        raise InvalidValue(prop, value) from None


def unknown_keys(collection: str, record: dict[str, Any]) -> list[str]:
    """The keys of a request record that name no column of the entity (as sent)."""
    known = {fold(name) for name in FIELDS.get(collection, {})}
    return [k for k in record if not isinstance(k, str) or fold(k) not in known]


def bind(collection: str, record: dict[str, Any], *, dated_offset: str = "drop") -> dict[str, Any]:
    """Map a request record's keys (any case) onto the entity's columns, coercing values.

    Unknown keys are ignored, as Mahak's binder does (`unknown_keys` names them, so the
    simulator can report them); raises `InvalidValue` on a bad value.
    """
    columns = FIELDS[collection]
    by_fold = {fold(name): name for name in columns}
    out: dict[str, Any] = {}
    for key, value in record.items():
        name = by_fold.get(fold(key)) if isinstance(key, str) else None
        if name is not None and name not in out:
            out[name] = coerce(name, columns[name], value, dated_offset=dated_offset)
    return out


# GetAllData request members besides the `from…Version` fields (SW, SW2).
GET_ALL_DATA_EXTRAS = ("pageSize", "orderTypes", "currentVisitorId")


def unknown_request_keys(body: dict[str, Any]) -> list[str]:
    """The members of a GetAllData body that `RequestAllDataModel` does not have."""
    known = {fold(c.request_field) for c in COLLECTIONS} | {fold(k) for k in GET_ALL_DATA_EXTRAS}
    return [k for k in body if not isinstance(k, str) or fold(k) not in known]


def unknown_lists(body: dict[str, Any]) -> list[str]:
    """The members of a SaveAllData body that name no collection (`CommitDataModel` lists)."""
    known = {fold(c.name) for c in COLLECTIONS} | {fold(c.save_name) for c in COLLECTIONS}
    return [k for k in body if not isinstance(k, str) or fold(k) not in known]
