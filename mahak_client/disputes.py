"""SolveDispute / SolveOrderDispute request items and the (undocumented) answers.

Swagger documents the requests only. SolveDispute answers the usual envelope and callers read
`Result` alone (Bazara). For SolveOrderDispute the simulator (per the protocol notes' assumption)
returns one result per item saying whether the order is registered in Mahak and whether the
desktop has imported it; since the real shape is unknown the answer is read leniently:
PascalCase or camelCase, `Id`/`OrderId`, `Code`/`OrderCode`, a list directly under `Data` or
inside `Data.Results`/`Data.Items`/`Data.DisputeItems`.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from .types import MahakBool, MahakInt, MahakModel


class OrderDisputeItem(MahakModel):
    """A server `OrderId` and the Mahak desktop `OrderCode` we believe belongs to it."""

    id: MahakInt
    code: MahakInt | None = None


class DisputeItem(MahakModel):
    """A row we hold: its server id and the RowVersion we have for it."""

    id: MahakInt
    rw: MahakInt


class OrderDisputeOutcome(MahakModel):
    id: MahakInt | None = None
    order_id: MahakInt | None = None
    code: MahakInt | None = None
    order_code: MahakInt | None = None
    order_client_id: MahakInt | None = None
    result: MahakBool | None = None
    registered: MahakBool | None = None
    exists: MahakBool | None = None
    imported: MahakBool | None = None
    edited: MahakBool | None = None
    row_version: MahakInt | None = None
    message: str | None = None
    error: str | None = None

    @property
    def server_id(self) -> int | None:
        return self.id if self.id is not None else self.order_id

    @property
    def desktop_code(self) -> int | None:
        return self.code if self.code is not None else self.order_code

    @property
    def is_registered(self) -> bool | None:
        for flag in (self.registered, self.exists, self.result):
            if flag is not None:
                return flag
        return None


class SolveOrderDisputeResult(MahakModel):
    result: bool
    message: str | None = None
    items: list[OrderDisputeOutcome] = Field(default_factory=list)

    def for_order(self, order_id: int) -> OrderDisputeOutcome | None:
        for item in self.items:
            if item.server_id == order_id:
                return item
        return None


_ITEM_LIST_KEYS = ("results", "items", "disputeitems", "orders", "objects")


def dispute_rows(data: Any) -> list[Any]:
    """The per-item list inside a SolveOrderDispute `Data`, wherever the server put it."""
    if isinstance(data, list):
        return data
    if isinstance(data, dict):
        folded = {k.lower(): v for k, v in data.items() if isinstance(k, str)}
        for key in _ITEM_LIST_KEYS:
            value = folded.get(key)
            if isinstance(value, list):
                return value
            if isinstance(value, dict):
                nested = dispute_rows(value)
                if nested:
                    return nested
    return []
