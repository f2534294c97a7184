"""The control API under `/_sim/` (for tests and demos) and `SimControl`, its async client.

Every mutation stamps a new RowVersion on the rows it touches, so the next GetAllData sees
the change exactly as it would see a change made in Mahak desktop. Bodies are JSON with
snake_case keys; answers: 200 with the touched row(s) or a summary, 404 for an unknown
entity/row/order, 409 for a conflict (e.g. an in-store sale the stock cannot cover), 422 for
an invalid body.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .config import ProtocolModes
from .faults import FaultSpec
from .schema import mahak_time, number, resolve_collection
from .seed import SeedRequest, SeedResult, seed_catalog
from .state import UnknownRow
from .stock import adjust, available, set_count

if TYPE_CHECKING:
    from .app import Simulation

PREFIX = "/_sim"


# --- bodies and answers --------------------------------------------------------------------


class StockRequest(BaseModel):
    product_detail_id: int
    store_id: int
    count1: float
    count2: float | None = None


class PriceRequest(BaseModel):
    product_detail_id: int
    level: int = Field(ge=1, le=10)
    price: float = Field(ge=0)


class DeleteRequest(BaseModel):
    entity: str
    id: int


class SaleRequest(BaseModel):
    product_detail_id: int
    store_id: int
    count: float = Field(gt=0)


class SaleResult(BaseModel):
    order_id: int
    order_detail_id: int
    remaining: float


class ImportedRequest(BaseModel):
    order_client_id: int


class ImportedResult(BaseModel):
    order_id: int
    order_code: int


class RowRequest(BaseModel):
    entity: str
    row: dict[str, Any]
    # Tests only: reuse a RowVersion to create equal versions (e.g. across a page boundary).
    row_version: int | None = None


# The body of `POST /_sim/config`: any knob of `ProtocolModes`, None leaving it as it is; an
# unknown knob is refused. The answer is the knobs as they are after the change.
ConfigRequest = create_model(
    "ConfigRequest",
    __config__=ConfigDict(extra="forbid"),
    **{name: (field.annotation | None, None) for name, field in ProtocolModes.model_fields.items()},
)


class SimOrder(BaseModel):
    order_id: int
    order_client_id: int | None
    order_code: int | None
    imported: bool
    source: str  # "api" (SaveAllData) or "desktop" (an in-store sale)
    submissions: int  # how many times its OrderClientId was sent
    deletions: int = 0  # how many of those asked to delete it (a client's reversal)
    # Wall-clock time (epoch seconds) SaveAllData first stored it; None for desktop sales.
    received_at: float | None = None
    order: dict[str, Any]
    details: list[dict[str, Any]]


class SimStats(BaseModel):
    duplicate_submissions: int
    requests: dict[str, int]
    faults_injected: int
    orders: int
    row_version: int  # the global counter's current value
    held_rows: int = 0  # rows written but not yet visible (late commits, §11.3)


class UnknownField(BaseModel):
    """A request member the simulator's schema does not know (ignored, as Mahak does)."""

    entity: str  # the collection, or "SaveAllData"/"GetAllData" for a body member
    field: str  # as the client spelled it
    count: int


class _Conflict(Exception):
    pass


# --- operations (called with the state lock held) ------------------------------------------


def _collection(entity: str) -> str:
    spec = resolve_collection(entity)
    if spec is None:
        raise UnknownRow(f"unknown entity {entity!r}")
    return spec.name


def _reset(sim: Simulation, _: None) -> dict[str, Any]:
    sim.reset()
    return {"ok": True}


def _seed(sim: Simulation, body: SeedRequest) -> SeedResult:
    return seed_catalog(sim.state, sim.config, body)


def _stock(sim: Simulation, body: StockRequest) -> dict[str, Any]:
    sim.state.require("ProductDetails", body.product_detail_id)
    sim.state.require("Stores", body.store_id)
    return set_count(sim.state, body.product_detail_id, body.store_id, body.count1, body.count2)


def _price(sim: Simulation, body: PriceRequest) -> dict[str, Any]:
    return sim.state.update(
        "ProductDetails",
        body.product_detail_id,
        **{f"Price{body.level}": number(float(body.price))},
    )


def _delete(sim: Simulation, body: DeleteRequest) -> dict[str, Any]:
    return sim.state.update(_collection(body.entity), body.id, Deleted=True)


def _sale(sim: Simulation, body: SaleRequest) -> SaleResult:
    state = sim.state
    detail = state.require("ProductDetails", body.product_detail_id)
    store = state.require("Stores", body.store_id)
    have = available(state, body.product_detail_id, body.store_id)
    if body.count > have:
        raise _Conflict(f"stock {have:g} cannot cover a sale of {body.count:g}")
    now = mahak_time()
    order = state.create(
        "Orders",
        {
            "OrderCode": state.new_code("Orders"),
            "OrderType": 201,
            "OrderDate": now,
            "SettlementType": 1,
            "Description": "فروش حضوری",
            "CreateDate": now,
        },
    )
    line = state.create(
        "OrderDetails",
        {
            "OrderId": order["OrderId"],
            "OrderCode": order["OrderCode"],
            "ItemType": 1,
            "ProductDetailId": detail["ProductDetailId"],
            "ProductDetailCode": detail["ProductDetailCode"],
            "StoreId": store["StoreId"],
            "Price": detail.get("Price1"),
            "Count1": number(float(body.count)),
            "Count2": 0,
            "CreateDate": now,
        },
    )
    remaining = adjust(state, body.product_detail_id, body.store_id, -body.count)["Count1"]
    state.orders.imported.add(order["OrderId"])
    state.orders.desktop.add(order["OrderId"])
    state.orders.stock_moves[line["OrderDetailId"]] = (
        body.product_detail_id,
        body.store_id,
        body.count,
        0,
    )
    return SaleResult(
        order_id=order["OrderId"], order_detail_id=line["OrderDetailId"], remaining=remaining
    )


def _imported(sim: Simulation, body: ImportedRequest) -> ImportedResult:
    state = sim.state
    order = state.by_client_id("Orders", body.order_client_id)
    if order is None:
        raise UnknownRow(f"no order with OrderClientId {body.order_client_id}")
    if order["OrderId"] not in state.orders.imported:
        state.orders.imported.add(order["OrderId"])
        order = state.update("Orders", order["OrderId"], OrderCode=state.new_code("Orders"))
    return ImportedResult(order_id=order["OrderId"], order_code=order["OrderCode"])


def _rows(sim: Simulation, body: RowRequest) -> dict[str, Any]:
    return sim.state.put(_collection(body.entity), body.row, body.row_version)


def _add_fault(sim: Simulation, body: FaultSpec) -> dict[str, Any]:
    return {"fault_id": sim.faults.add(body), "active": sim.faults.active}


def _clear_faults(sim: Simulation, _: None) -> dict[str, Any]:
    sim.faults.clear()
    return {"active": 0}


def _configure(sim: Simulation, body: BaseModel) -> ProtocolModes:
    update = body.model_dump(exclude_none=True)
    if update.get("server_cap") == 0:  # 0: no silent cap
        update["server_cap"] = None
    knobs = set(ProtocolModes.model_fields)
    # Validated as a whole, so a knob's own constraints hold for a changed value too.
    modes = ProtocolModes.model_validate({**sim.config.model_dump(include=knobs), **update})
    sim.reconfigure(sim.config.model_copy(update=modes.model_dump()))
    return modes


def _expire_tokens(sim: Simulation, _: None) -> dict[str, Any]:
    return {"expired": sim.expire_tokens()}


def _orders(sim: Simulation, _: None) -> list[SimOrder]:
    state = sim.state
    details: dict[int, list[dict[str, Any]]] = {}
    for line in state.rows("OrderDetails"):
        details.setdefault(line.get("OrderId"), []).append(line)
    out = []
    for order in sorted(state.rows("Orders"), key=lambda r: r["OrderId"]):
        client_id = order.get("OrderClientId")
        out.append(
            SimOrder(
                order_id=order["OrderId"],
                order_client_id=client_id,
                order_code=order.get("OrderCode"),
                imported=order["OrderId"] in state.orders.imported,
                source="desktop" if order["OrderId"] in state.orders.desktop else "api",
                submissions=state.orders.submissions.get(client_id, 0)
                if client_id is not None
                else 0,
                deletions=state.orders.deletions.get(client_id, 0) if client_id is not None else 0,
                received_at=sim.received_at.get(client_id) if client_id is not None else None,
                order=order,
                details=sorted(details.get(order["OrderId"], []), key=lambda r: r["OrderDetailId"]),
            )
        )
    return out


def _stats(sim: Simulation, _: None) -> SimStats:
    state = sim.state
    return SimStats(
        duplicate_submissions=state.orders.duplicate_submissions,
        requests=dict(state.requests),
        faults_injected=state.faults_injected,
        orders=len(state.rows("Orders")),
        row_version=state.row_version,
        held_rows=state.held_rows,
    )


def _unknown_fields(sim: Simulation, _: None) -> list[UnknownField]:
    return [
        UnknownField(entity=entity, field=name, count=count)
        for (entity, name), count in sorted(sim.state.unknown_fields.items())
    ]


def _entities(sim: Simulation, entity: str) -> dict[str, Any]:
    name = _collection(entity)
    return {"entity": name, "rows": sim.state.rows(name)}


# --- routing -------------------------------------------------------------------------------


def _route(
    path: str,
    operation: Callable[[Simulation, Any], Any],
    body: type[BaseModel] | None = None,
    method: str = "POST",
) -> Route:
    async def endpoint(request: Request) -> Response:
        sim: Simulation = request.app.state.sim
        try:
            if body is not None:
                arg: Any = body.model_validate_json(await request.body() or b"{}")
            else:
                arg = request.path_params.get("entity")
            with sim.state.lock:
                result = operation(sim, arg)
        except ValidationError as exc:
            return JSONResponse(
                {"error": "invalid_request", "detail": json.loads(exc.json(include_url=False))}, 422
            )
        except UnknownRow as exc:
            return JSONResponse({"error": "not_found", "detail": str(exc)}, 404)
        except _Conflict as exc:
            return JSONResponse({"error": "conflict", "detail": str(exc)}, 409)
        if isinstance(result, list):
            result = [r.model_dump(mode="json") if isinstance(r, BaseModel) else r for r in result]
        elif isinstance(result, BaseModel):
            result = result.model_dump(mode="json")
        return JSONResponse(result)

    return Route(f"{PREFIX}{path}", endpoint, methods=[method])


def routes() -> list[Route]:
    return [
        _route("/health", lambda sim, _: {"status": "ok"}, method="GET"),
        _route("/reset", _reset),
        _route("/seed", _seed, SeedRequest),
        _route("/stock", _stock, StockRequest),
        _route("/price", _price, PriceRequest),
        _route("/delete", _delete, DeleteRequest),
        _route("/sales", _sale, SaleRequest),
        _route("/orders/imported", _imported, ImportedRequest),
        _route("/rows", _rows, RowRequest),
        _route("/faults", _add_fault, FaultSpec),
        _route("/faults", _clear_faults, method="DELETE"),
        _route("/config", _configure, ConfigRequest),
        _route("/tokens/expire", _expire_tokens),
        _route("/orders", _orders, method="GET"),
        _route("/stats", _stats, method="GET"),
        _route("/unknown-fields", _unknown_fields, method="GET"),
        _route("/entities/{entity}", _entities, method="GET"),
    ]


# --- client --------------------------------------------------------------------------------


class SimControlError(RuntimeError):
    def __init__(self, method: str, path: str, status: int, body: str) -> None:
        super().__init__(f"{method} {path} -> {status}: {body[:500]}")
        self.status_code = status


class SimControl:
    """Async client of the control API and the fake gateway (one method per endpoint)."""

    def __init__(
        self, root_url: str, *, http: httpx.AsyncClient | None = None, timeout: float = 30.0
    ) -> None:
        self.root_url = root_url.rstrip("/")
        self._own_http = http is None
        self._http = http or httpx.AsyncClient(timeout=timeout)

    async def __aenter__(self) -> SimControl:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._own_http:
            await self._http.aclose()

    async def _call(self, method: str, path: str, body: BaseModel | None = None) -> Any:
        content = body.model_dump_json(exclude_none=True) if body is not None else None
        response = await self._http.request(
            method,
            f"{self.root_url}{path}",
            content=content,
            headers={"content-type": "application/json"},
        )
        if response.status_code >= 400:
            raise SimControlError(method, path, response.status_code, response.text)
        return response.json()

    async def reset(self) -> None:
        await self._call("POST", f"{PREFIX}/reset")

    async def seed(
        self,
        products: int = 5,
        *,
        stores: int = 1,
        categories: int = 1,
        pictures_per_product: int = 1,
        details_per_product: int = 1,
        stock: float = 10,
        people: int = 1,
        link_visitor: bool = True,
        wholesale_group: bool = False,
    ) -> SeedResult:
        body = SeedRequest(
            wholesale_group=wholesale_group,
            products=products,
            stores=stores,
            categories=categories,
            pictures_per_product=pictures_per_product,
            details_per_product=details_per_product,
            stock=stock,
            people=people,
            link_visitor=link_visitor,
        )
        return SeedResult.model_validate(await self._call("POST", f"{PREFIX}/seed", body))

    async def set_stock(
        self, product_detail_id: int, store_id: int, count1: float, count2: float | None = None
    ) -> dict[str, Any]:
        return await self._call(
            "POST",
            f"{PREFIX}/stock",
            StockRequest(
                product_detail_id=product_detail_id, store_id=store_id, count1=count1, count2=count2
            ),
        )

    async def set_price(self, product_detail_id: int, level: int, price: float) -> dict[str, Any]:
        return await self._call(
            "POST",
            f"{PREFIX}/price",
            PriceRequest(product_detail_id=product_detail_id, level=level, price=price),
        )

    async def delete(self, entity: str, id: int) -> dict[str, Any]:
        return await self._call("POST", f"{PREFIX}/delete", DeleteRequest(entity=entity, id=id))

    async def sale(self, product_detail_id: int, store_id: int, count: float) -> SaleResult:
        return SaleResult.model_validate(
            await self._call(
                "POST",
                f"{PREFIX}/sales",
                SaleRequest(product_detail_id=product_detail_id, store_id=store_id, count=count),
            )
        )

    async def mark_imported(self, order_client_id: int) -> ImportedResult:
        return ImportedResult.model_validate(
            await self._call(
                "POST",
                f"{PREFIX}/orders/imported",
                ImportedRequest(order_client_id=order_client_id),
            )
        )

    async def inject_row(
        self, entity: str, row: dict[str, Any], row_version: int | None = None
    ) -> dict[str, Any]:
        return await self._call(
            "POST", f"{PREFIX}/rows", RowRequest(entity=entity, row=row, row_version=row_version)
        )

    async def add_fault(self, spec: FaultSpec | None = None, **fields: Any) -> int:
        """Add a fault rule: `add_fault(status_code=503, count=2, endpoints=["GetAllDataV2"])`."""
        spec = spec or FaultSpec(**fields)
        return (await self._call("POST", f"{PREFIX}/faults", spec))["fault_id"]

    async def clear_faults(self) -> None:
        await self._call("DELETE", f"{PREFIX}/faults")

    async def configure(self, **modes: Any) -> ProtocolModes:
        """Change protocol knobs (`ProtocolModes`) until the next reset; a knob not named, or
        given as None, stays as it is.

        Paging modes: `boundary` "inclusive" (RowVersion >= from) or "exclusive" (> from);
        `page_order="id"` (a capped page holds the lowest ids, not the lowest RowVersions, in
        id order); `server_cap=N` (at most N rows per list whatever `pageSize` asks, 0 = off);
        `stray_row=True` (the newest row the bound excludes comes too). Late commits:
        `late_commit_lag=N` (writes made from now on stay invisible to N GetAllData requests;
        set it back to 0 and later writes overtake them), or `inject_row(..., row_version=)`
        with a version below rows already served. The other open questions of §11, one knob
        each, are listed in README.md, "Simulator modes"."""
        return ProtocolModes.model_validate(
            await self._call("POST", f"{PREFIX}/config", ConfigRequest(**modes))
        )

    async def expire_tokens(self) -> int:
        return (await self._call("POST", f"{PREFIX}/tokens/expire"))["expired"]

    async def orders(self) -> list[SimOrder]:
        return [SimOrder.model_validate(o) for o in await self._call("GET", f"{PREFIX}/orders")]

    async def order(self, order_client_id: int) -> SimOrder | None:
        return next((o for o in await self.orders() if o.order_client_id == order_client_id), None)

    async def stats(self) -> SimStats:
        return SimStats.model_validate(await self._call("GET", f"{PREFIX}/stats"))

    async def unknown_fields(self) -> list[UnknownField]:
        """Every request member the schema did not know since the last reset, with counts."""
        return [
            UnknownField.model_validate(u)
            for u in await self._call("GET", f"{PREFIX}/unknown-fields")
        ]

    async def entities(self, entity: str) -> list[dict[str, Any]]:
        return (await self._call("GET", f"{PREFIX}/entities/{entity}"))["rows"]

    async def refunds(self) -> list[dict[str, Any]]:
        return (await self._call("GET", "/_gateway/refunds"))["refunds"]
