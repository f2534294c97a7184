"""SaveAllData: what we send and the per-record verdicts Mahak returns.

Mahak commits the good records of a request even when others fail, and says so per record
(top-level `Result:false`, HTTP 200). That is data, not an exception: the workflow decides per
order what to do, so every failure is kept with which record, which property and Mahak's text.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator, Field
from pydantic.alias_generators import to_camel

from .models import Order, OrderDetail, Person, Receipt, VisitorPerson
from .types import MahakBool, MahakInt, MahakModel, normalize_text


def _none_as_empty(value: Any) -> Any:
    return [] if value is None else value


# Request list attribute -> (response collection, the client-id attribute of its items).
COLLECTIONS: dict[str, tuple[str, str]] = {
    "orders": ("Orders", "order_client_id"),
    "order_details": ("OrderDetails", "order_detail_client_id"),
    "people": ("People", "person_client_id"),
    "visitor_people": ("VisitorPeople", "visitor_person_client_id"),
    "receipts": ("Receipts", "receipt_client_id"),
}


class SaveAllDataRequest(MahakModel):
    """Lists left `None` are not sent. Children may reference parents by `…ClientId`."""

    orders: list[Order] | None = None
    order_details: list[OrderDetail] | None = None
    people: list[Person] | None = None
    visitor_people: list[VisitorPerson] | None = None
    receipts: list[Receipt] | None = None

    def to_wire(self) -> dict[str, Any]:
        body: dict[str, Any] = {}
        for name in COLLECTIONS:
            items = getattr(self, name)
            if items is not None:
                body[to_camel(name)] = [item.to_wire() for item in items]
        return body

    def client_id_at(self, collection: str, index: int) -> int | None:
        """Client id of the record Mahak's 1-based `Index` points at, if we sent one there."""
        for name, (coll, id_attr) in COLLECTIONS.items():
            if coll.lower() == collection.lower():
                items = getattr(self, name) or []
                if 1 <= index <= len(items):
                    return getattr(items[index - 1], id_attr, None)
        return None


class EntityError(MahakModel):
    property: str | None = None
    code: MahakInt | None = None
    error: str | None = None


class EntityUpdateResult(MahakModel):
    result: MahakBool = False
    index: MahakInt | None = None  # 1-based position in the list we sent
    entity_id: MahakInt | None = None
    entity_client_id: MahakInt | None = None
    entity_code: MahakInt | None = None
    row_version: MahakInt | None = None
    errors: Annotated[list[EntityError], BeforeValidator(_none_as_empty)] = Field(
        default_factory=list
    )
    additional_data: Any = None


class RecordFailure(MahakModel):
    """One refused record (one per Mahak error when it lists several)."""

    collection: str
    index: int | None = None
    client_id: int | None = None
    property: str | None = None
    message: str
    code: int | None = None


class SaveAllDataResult(MahakModel):
    result: bool
    # Keyed by Mahak's PascalCase collection name (`Orders`, `OrderDetails`, …).
    collections: dict[str, list[EntityUpdateResult]] = Field(default_factory=dict)
    message: str | None = None

    def results(self, collection: str) -> list[EntityUpdateResult]:
        for name, items in self.collections.items():
            if name.lower() == collection.lower():
                return items
        return []

    def for_client_id(self, collection: str, client_id: int) -> EntityUpdateResult | None:
        for item in self.results(collection):
            if item.entity_client_id == client_id:
                return item
        return None

    def failures(self) -> list[RecordFailure]:
        out: list[RecordFailure] = []
        for collection, items in self.collections.items():
            for item in items:
                if item.result:
                    continue
                errors = item.errors or [EntityError(error="refused without a reason")]
                for err in errors:
                    out.append(
                        RecordFailure(
                            collection=collection,
                            index=item.index,
                            client_id=item.entity_client_id,
                            property=err.property,
                            message=err.error or "refused without a message",
                            code=err.code,
                        )
                    )
        return out

    def fill_client_ids(self, request: SaveAllDataRequest) -> None:
        """Failed results usually omit `EntityClientId`; recover it from the 1-based `Index`."""
        for collection, items in self.collections.items():
            for item in items:
                if item.entity_client_id is None and item.index is not None:
                    item.entity_client_id = request.client_id_at(collection, item.index)


def is_already_registered(failure: RecordFailure) -> bool:
    """Mahak's "order already registered (imported), cannot be edited" refusal on `OrderId`.

    The exact text is not public; like the OnlineShop client we look for the words
    "ثبت" (register) and "ویرایش" (edit), after folding Arabic letters to Persian.
    """
    prop = (failure.property or "").replace(" ", "").lower()
    if "orderid" not in prop.split(","):
        return False
    text = normalize_text(failure.message) or ""
    return "ثبت" in text and "ویرایش" in text
