"""SolveDispute and SolveOrderDispute (`shared/mahak-api.md` §5 ASSUMPTION).

Wire shapes this simulator answers with (the client codes against them):

SolveDispute — request `{databaseId, entityName, disputeItems: [{id, rw}]}`; `entityName`
as BZ sends it (`visitorProduct`, `ProductDetail`, `order`, ...; any case). Every item whose
server row has a different RowVersion is re-emitted (same content, new RowVersion); an item
the server does not have is re-emitted as a tombstone (`<Entity>Id` = id, `Deleted: true`, the
other columns at their .NET defaults: 0, false, null); so
the next GetAllData delivers the truth. Answer:
    {"Result": true, "Data": {"Reemitted": [ids], "Deleted": [ids]}}
or `{"Result": false, "Code": 404, "Message": "...", "Data": null}` for an unknown entity.

SolveOrderDispute — request `{databaseId, disputeItems: [{id, code}]}` (server OrderId and
the desktop OrderCode the client believes in). Answer, one result per item, in order, null
members omitted:
    {"Result": true, "Data": {"Results": [
        {"Id": 401000001, "Code": 7, "OrderClientId": 8000000000000042,
         "Registered": true, "Imported": true, "RowVersion": 4028000123}, ...]}}
`Registered`: the order exists on the server and is not deleted. `Imported`: Mahak desktop
has taken it in (it can no longer be edited; `Code` is then its desktop OrderCode).

Other answers to §11.9 (`SimulatorConfig.dispute_answer`; "detailed" is the above):
- "bare_list": the same work; `Data` is the list itself, SolveDispute's the re-emitted and
  deleted ids, SolveOrderDispute's items keyed `OrderId`, `OrderCode`, `OrderClientId`,
  `Exists`, `Imported`, `RowVersion`;
- "envelope_only": the same work, answered `{"Result": true, "Data": null}` (§9.6: nothing
  per item);
- "refused": nothing done, `{"Result": false, "Code": 500, "Message": ..., "Data": null}`.
"""

from __future__ import annotations

from typing import Any

from .config import DisputeAnswer
from .schema import InvalidValue, coerce, fold, resolve_collection, tombstone_row
from .state import SimState

REFUSED = {
    "Result": False,
    "Code": 500,
    "Message": "عملیات رفع مغایرت انجام نشد (the dispute was not solved)",
    "Data": None,
}
_BARE_KEYS = {"Id": "OrderId", "Code": "OrderCode", "Registered": "Exists"}


def _items(raw: Any, fields: tuple[str, ...]) -> list[dict[str, int | None]]:
    if not isinstance(raw, list):
        raise InvalidValue("disputeItems", raw)
    items = []
    for entry in raw:
        if not isinstance(entry, dict):
            raise InvalidValue("disputeItems", entry)
        folded = {fold(k): v for k, v in entry.items() if isinstance(k, str)}
        items.append({name: coerce(name, "i", folded.get(name)) for name in fields})
    return items


def solve_dispute(
    state: SimState, entity_name: str, raw_items: Any, answer: DisputeAnswer = "detailed"
) -> dict[str, Any]:
    spec = resolve_collection(entity_name)
    if spec is None:
        return {
            "Result": False,
            "Code": 404,
            "Message": f"entity {entity_name!r} is unknown",
            "Data": None,
        }
    items = _items(raw_items, ("id", "rw"))
    if answer == "refused":
        return REFUSED
    reemitted: list[int] = []
    deleted: list[int] = []
    with state.lock:
        for item in items:
            row_id = item["id"]
            if row_id is None:
                continue
            row = state.get(spec.name, row_id)
            if row is None:
                state.put(spec.name, tombstone_row(spec.name, row_id))
                deleted.append(row_id)
            elif row.get("RowVersion") != item["rw"]:
                state.put(spec.name, dict(row))
                reemitted.append(row_id)
    if answer == "bare_list":
        return {"Result": True, "Data": reemitted + deleted}
    if answer == "envelope_only":
        return {"Result": True, "Data": None}
    return {"Result": True, "Data": {"Reemitted": reemitted, "Deleted": deleted}}


def solve_order_dispute(
    state: SimState, raw_items: Any, answer: DisputeAnswer = "detailed"
) -> dict[str, Any]:
    items = _items(raw_items, ("id", "code"))
    if answer == "refused":
        return REFUSED
    results = []
    with state.lock:
        for item in items:
            order = state.get("Orders", item["id"]) if item["id"] is not None else None
            result = {
                "Id": item["id"],
                "Code": (order or {}).get("OrderCode"),
                "OrderClientId": (order or {}).get("OrderClientId"),
                "Registered": order is not None and not order.get("Deleted"),
                "Imported": order is not None and order["OrderId"] in state.orders.imported,
                "RowVersion": (order or {}).get("RowVersion"),
            }
            results.append({k: v for k, v in result.items() if v is not None})
    if answer == "bare_list":
        return {
            "Result": True,
            "Data": [{_BARE_KEYS.get(k, k): v for k, v in r.items()} for r in results],
        }
    if answer == "envelope_only":
        return {"Result": True, "Data": None}
    return {"Result": True, "Data": {"Results": results}}
