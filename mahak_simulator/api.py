"""The Sync API: `/API/v3/Sync/*`, POST only; each V2 path behaves like its V1 twin.

Request keys bind case-insensitively and values leniently; responses are PascalCase with the
LIVE envelopes. Everything but Login needs `Authorization: Bearer <token>`; without a valid,
unexpired, unrevoked token the answer is 401 `{"message":"Unauthorized"}`. Model-binding
failures (a non-JSON body, an unreadable `from…Version`) answer 400 in ASP.NET's
problem-details form, a wrong content type 415.

Modes (`SimulatorConfig`, README.md "Simulator modes") change the answers to open questions: `login_failure`,
`token_forms`, `answer_casing` (every envelope), `dispute_answer`; GetAllData members the
schema does not know are counted (`/_sim/unknown-fields`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .disputes import solve_dispute, solve_order_dispute
from .log import get_logger
from .saving import save_all_data
from .schema import COLLECTIONS, InvalidValue, coerce, fold, mahak_time, unknown_request_keys
from .wire import camel_keys

if TYPE_CHECKING:
    from .app import Simulation
    from .state import SimState

SYNC_PREFIX = "/API/v3/Sync"
SYNC_ENDPOINTS = (
    "Login",
    "LoginV2",
    "GetAllData",
    "GetAllDataV2",
    "SaveAllData",
    "SaveAllDataV2",
    "SolveDispute",
    "SolveOrderDispute",
    "Upload",
)
# ASP.NET routes are case-insensitive: `/api/v3/sync/login` reaches Login.
_CANONICAL = {f"{SYNC_PREFIX}/{name}".lower(): f"{SYNC_PREFIX}/{name}" for name in SYNC_ENDPOINTS}

BAD_CREDENTIALS = "نام کاربری یا رمز عبور اشتباه است"
BAD_DATABASE = "شناسه پایگاه داده نامعتبر است"
BAD_PACKAGE = "شماره بسته نامعتبر است"

log = get_logger("mahak_simulator")


def canonical_sync_path(path: str) -> str | None:
    return _CANONICAL.get(path.rstrip("/").lower())


def mahak_json(data: Any, status: int = 200) -> Response:
    body = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return Response(body, status_code=status, media_type="application/json; charset=utf-8")


def _answer(sim: Simulation, data: Any) -> Response:
    """A Sync envelope in the configured key casing (`answer_casing`; LIVE: PascalCase)."""
    return mahak_json(camel_keys(data) if sim.config.answer_casing == "camel" else data)


def encode_answer(data: Any, state: SimState) -> bytes:
    """A GetAllData answer as JSON: msgspec, 10x faster than `json.dumps` on a page of rows
    (bench/simulator.py) and the same JSON values, except a NaN or an infinity, which it
    writes as `null` where `json.dumps` writes `NaN`: a table holding one (injected by a
    test), and whatever else msgspec refuses, go through `json.dumps` as before."""
    if not state.holds_non_finite:
        try:
            return _ENCODER.encode(data)
        except (TypeError, ValueError, OverflowError):
            pass
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


_ENCODER = msgspec.json.Encoder()


UNAUTHORIZED = {"message": "Unauthorized"}


_INVALID = "One or more validation errors occurred."


def _problem(status: int, title: str, errors: dict[str, list[str]] | None = None) -> Response:
    """ASP.NET's problem-details answer to a request it could not bind."""
    return mahak_json(
        {"title": title, "status": status, **({"errors": errors} if errors else {})}, status
    )


class _BadRequest(Exception):
    def __init__(self, status: int, title: str, errors: dict[str, list[str]] | None = None) -> None:
        super().__init__(title)
        self.response = _problem(status, title, errors)


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media in ("application/json", "text/json") or (
        media.startswith("application/") and media.endswith("+json")
    )


async def _json_body(request: Request) -> dict[str, Any]:
    if not _is_json(request.headers.get("content-type", "")):
        raise _BadRequest(415, "Unsupported Media Type")
    raw = await request.body()
    try:
        data = json.loads(raw.decode("utf-8-sig")) if raw.strip() else None
    except (UnicodeDecodeError, ValueError) as exc:
        raise _BadRequest(400, _INVALID, {"$": [str(exc)[:200]]}) from None
    if not isinstance(data, dict):
        raise _BadRequest(400, "A non-empty request body is required.")
    return data


def _folded(body: dict[str, Any]) -> dict[str, Any]:
    return {fold(k): v for k, v in body.items() if isinstance(k, str)}


def _read_int(folded: dict[str, Any], name: str) -> int | None:
    return coerce(name, "i", folded.get(fold(name)))


Handler = Callable[
    ["Simulation", Request, dict[str, Any], "dict[str, Any] | None"], Awaitable[Response]
]


def _endpoint(handler: Handler, *, authenticated: bool = True, json_body: bool = True) -> Any:
    async def endpoint(request: Request) -> Response:
        sim: Simulation = request.app.state.sim
        claims = None
        if authenticated:
            claims = sim.authorize(request.headers.get("authorization"))
            if claims is None:
                return mahak_json(UNAUTHORIZED, 401)
        try:
            body = await _json_body(request) if json_body else {}
            return await handler(sim, request, body, claims)
        except _BadRequest as exc:
            return exc.response
        except InvalidValue as exc:
            return _problem(400, _INVALID, {exc.prop: [str(exc)]})

    return endpoint


def _token_visitor(claims: dict[str, Any] | None) -> int | None:
    try:
        return int(json.loads((claims or {})["userToken"])["VisitorId"])
    except (KeyError, TypeError, ValueError):
        return None


async def login(sim: Simulation, request: Request, body: dict[str, Any], _: Any) -> Response:
    cfg = sim.config
    folded = _folded(body)
    username, password = folded.get("username"), folded.get("password")
    message = None
    if not (
        isinstance(username, str)
        and username.strip().casefold() == cfg.username.casefold()
        and isinstance(password, (str, int))
        and sim.check_password(str(password))
    ):
        message = BAD_CREDENTIALS
    elif _read_int(folded, "databaseId") not in (None, 0, cfg.database_id):
        message = BAD_DATABASE
    elif str(folded.get("packageno") or "").strip() not in ("", cfg.package_no):
        message = BAD_PACKAGE
    if message is not None:
        log.info("simulated login refused", reason=message, answer=cfg.login_failure)
        if cfg.login_failure == "http_401":  # §11.8's other reading: the data endpoints' 401
            return mahak_json(UNAUTHORIZED, 401)
        return _answer(sim, {"Result": False, "Code": 1001, "Message": message, "Data": None})
    token, claims = sim.issue_token(request.client.host if request.client else "127.0.0.1")
    return _answer(
        sim,
        {
            "Result": True,
            "Code": 0,
            "Message": None,
            "Data": {
                "UserToken": token,
                "SyncId": cfg.sync_id,
                "VisitorId": cfg.visitor_id,
                "DatabaseId": cfg.database_id,
                "ErrorCode": 0,
                "ErrorMessage": None,
                "UserTitle": cfg.user_title,
                "MahakId": claims["MahakID"],
                "ServerTime": mahak_time(),
                "PackageNo": int(cfg.package_no) if cfg.package_no.isdigit() else cfg.package_no,
                "CreditDay": cfg.credit_day,
                "HasRadara": False,
                "WithDataTransfer": True,
            },
        },
    )


async def get_all_data(sim: Simulation, _: Request, body: dict[str, Any], __: Any) -> Response:
    sim.state.note_unknown("GetAllData", unknown_request_keys(body))
    folded = _folded(body)
    page_size = _read_int(folded, "pageSize")
    raw_types = folded.get("ordertypes")
    if raw_types is not None and not isinstance(raw_types, list):
        raise InvalidValue("orderTypes", raw_types)
    order_types = [coerce("orderTypes", "i", t) for t in raw_types or []]
    wanted = {c.name: _read_int(folded, c.request_field) for c in COLLECTIONS}
    cfg = sim.config
    with sim.state.lock:
        objects = {
            name: None
            if from_version is None
            else sim.state.query(
                name,
                from_version,
                boundary=cfg.boundary,
                page_size=page_size if page_size and page_size > 0 else None,
                order_types=[t for t in order_types if t is not None] if name == "Orders" else None,
                page_order=cfg.page_order,
                server_cap=cfg.server_cap,
                stray_row=cfg.stray_row,
            )
            for name, from_version in wanted.items()
        }
        sim.state.commit_tick()  # late commits (§11.3) draw one request nearer
        answer: Any = {"Result": True, "Data": {"Objects": objects}}
        if sim.config.answer_casing == "camel":
            answer = camel_keys(answer)
        body = encode_answer(answer, sim.state)
    return Response(body, media_type="application/json; charset=utf-8")


async def save_all(sim: Simulation, _: Request, body: dict[str, Any], claims: Any) -> Response:
    ok, objects = save_all_data(sim.state, sim.config, body, visitor_id=_token_visitor(claims))
    stored_at = time.time()
    for result in objects["Orders"]["Results"]:
        if result["Result"] and (client_id := result.get("EntityClientId")) is not None:
            sim.received_at.setdefault(client_id, stored_at)
    if not ok:
        failed = {
            name: sum(not r["Result"] for r in c["Results"])
            for name, c in objects.items()
            if any(not r["Result"] for r in c["Results"])
        }
        log.info("simulated SaveAllData partial failure", failed=failed)
    return _answer(sim, {"Result": ok, "Data": {"Objects": objects}})


def _check_database(sim: Simulation, folded: dict[str, Any]) -> Response | None:
    if _read_int(folded, "databaseId") not in (None, 0, sim.config.database_id):
        return _answer(sim, {"Result": False, "Code": 1002, "Message": BAD_DATABASE, "Data": None})
    return None


async def dispute(sim: Simulation, _: Request, body: dict[str, Any], __: Any) -> Response:
    folded = _folded(body)
    return _check_database(sim, folded) or _answer(
        sim,
        solve_dispute(
            sim.state,
            str(folded.get("entityname") or ""),
            folded.get("disputeitems") or [],
            answer=sim.config.dispute_answer,
        ),
    )


async def order_dispute(sim: Simulation, _: Request, body: dict[str, Any], __: Any) -> Response:
    folded = _folded(body)
    return _check_database(sim, folded) or _answer(
        sim,
        solve_order_dispute(
            sim.state, folded.get("disputeitems") or [], answer=sim.config.dispute_answer
        ),
    )


async def upload(sim: Simulation, _: Request, __: dict[str, Any], ___: Any) -> Response:
    return _answer(sim, {"Result": True, "Data": None})


def routes() -> list[Route]:
    handlers: dict[str, Any] = {
        "Login": _endpoint(login, authenticated=False),
        "GetAllData": _endpoint(get_all_data),
        "SaveAllData": _endpoint(save_all),
        "SolveDispute": _endpoint(dispute),
        "SolveOrderDispute": _endpoint(order_dispute),
        "Upload": _endpoint(upload, json_body=False),
    }
    return [
        Route(f"{SYNC_PREFIX}/{name}", handlers[name.removesuffix("V2")], methods=["POST"])
        for name in SYNC_ENDPOINTS
    ]
