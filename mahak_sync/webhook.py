"""The payment callback: `POST /payments/callback` marks an order paid and starts its sync.

Callers (the payment gateway or the shop) sign each call with the shared secret
`WEBHOOK_SECRET`:

    X-Timestamp: <unix seconds>
    X-Signature: sha256=<hex HMAC-SHA256 of f"{timestamp}." + raw body>

The timestamp is inside the signature and must be within `WEBHOOK_MAX_SKEW_SECONDS` of our
clock, so a captured call cannot be replayed later; within the window a replay is harmless,
as marking paid and starting the sync are both idempotent.

Answers: 202 `{"workflow_id"}`; 401 bad or missing signature, stale timestamp; 404 unknown
order; 409 amount mismatch or order not payable; 422 malformed body; 503 when the payment was
recorded but Temporal could not be reached (the safety-net sweep starts the sync later).
A refused call changes nothing in the database.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg
import uvicorn
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from temporalio.client import Client

from mahak_sync import metrics
from mahak_sync.config import Settings
from mahak_sync.health import postgres_probe, ready_response, temporal_probe
from mahak_sync.logging import get_logger
from mahak_sync.orders_api import start_order_sync
from shopdb import orders

log = get_logger(__name__)

SIGNATURE_HEADER = "X-Signature"
TIMESTAMP_HEADER = "X-Timestamp"
_SCHEME = "sha256="
# How long the webhook waits for PostgreSQL and for Temporal at start-up before it exits.
_GIVE_UP_AFTER = 300.0


class PaymentCallback(BaseModel):
    model_config = ConfigDict(extra="ignore")

    order_id: int = Field(gt=0, lt=2**63)  # a bigint: larger is malformed, not a crash
    amount: Decimal = Field(ge=0, allow_inf_nan=False)
    payment_ref: str = Field(min_length=1, max_length=200)
    paid_at: datetime | None = None


def sign(secret: str, timestamp: int | str, body: bytes) -> str:
    """The `X-Signature` value for `body` sent at `timestamp` (for callers and tests)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return _SCHEME + mac.hexdigest()


def signature_problem(
    secret: str,
    timestamp: str | None,
    signature: str | None,
    body: bytes,
    *,
    max_skew: int,
    now: float | None = None,
) -> str | None:
    """Why the call is not authentic, or None when it is."""
    if not secret:
        return "webhook secret not configured"
    if not timestamp or not signature:
        return "missing signature"
    try:
        sent = int(timestamp)
    except ValueError:
        return "malformed timestamp"
    current = time.time() if now is None else now
    if abs(current - sent) > max_skew:
        return "timestamp outside the allowed window"
    if not hmac.compare_digest(sign(secret, sent, body), signature.strip()):
        return "bad signature"
    return None


def _answer(http_status: int, **body: Any) -> JSONResponse:
    return JSONResponse(body, status_code=http_status)


class _Deps:
    def __init__(
        self, settings: Settings, pool: asyncpg.Pool | None, client: Client | None
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.client = client


async def payment_callback(request: Request) -> JSONResponse:
    response = await _payment_callback(request)
    deps: _Deps = request.app.state.deps
    metrics.count(
        "mahak_sync_webhook_requests",
        meter=metrics.process_meter(deps.settings),
        result=str(response.status_code),
    )
    return response


async def _payment_callback(request: Request) -> JSONResponse:
    deps: _Deps = request.app.state.deps
    settings = deps.settings
    raw = await request.body()
    problem = signature_problem(
        settings.webhook_secret.get_secret_value(),
        request.headers.get(TIMESTAMP_HEADER),
        request.headers.get(SIGNATURE_HEADER),
        raw,
        max_skew=settings.webhook_max_skew_seconds,
    )
    if problem:
        log.warning(
            "payment callback refused",
            reason=problem,
            client=request.client.host if request.client else None,
        )
        return _answer(401, error="unauthorized")
    try:
        callback = PaymentCallback.model_validate_json(raw)
    except ValidationError as err:
        return _answer(
            422,
            error="malformed body",
            details=[{"loc": list(e["loc"]), "msg": e["msg"]} for e in err.errors()],
        )

    bound = log.bind(order_id=callback.order_id)
    assert deps.pool is not None and deps.client is not None
    order = await orders.get_order(deps.pool, callback.order_id)
    if order is None:
        return _answer(404, error="unknown order")
    if order.sync_status == "cancelled":
        return _answer(409, error="order is cancelled")
    try:
        await orders.mark_paid(deps.pool, callback.order_id, callback.amount, callback.payment_ref)
    except orders.OrderNotFoundError:
        return _answer(404, error="unknown order")
    except orders.AmountMismatchError:
        bound.warning("payment amount mismatch")
        return _answer(409, error="amount does not match the order")
    except (orders.PaymentError, orders.OrderStateError) as err:
        bound.warning("order not payable", reason=type(err).__name__)
        return _answer(409, error="order is not payable")
    try:
        workflow_id = await start_order_sync(deps.client, callback.order_id, settings, order=order)
    except Exception as err:  # noqa: BLE001 - the payment is safe; the sweep starts the sync
        bound.error("could not start the order sync", error=type(err).__name__)
        return _answer(503, error="payment recorded; sync not started yet")
    bound.info("payment accepted", workflow_id=workflow_id)
    return _answer(202, workflow_id=workflow_id)


async def healthz(request: Request) -> JSONResponse:
    return _answer(200, status="ok")


async def readyz(request: Request) -> JSONResponse:
    """PostgreSQL and Temporal answer (`mahak_sync.health`)."""
    deps: _Deps = request.app.state.deps
    assert deps.pool is not None and deps.client is not None
    return await ready_response([postgres_probe(deps.pool), temporal_probe(deps.client)])


def create_app(
    settings: Settings,
    *,
    pool: asyncpg.Pool | None = None,
    client: Client | None = None,
) -> Starlette:
    """The ASGI app. Given a pool and a client it uses them (tests, embedding); otherwise it
    opens the shop database and connects to Temporal for its lifetime."""
    deps = _Deps(settings, pool, client)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if deps.pool is not None and deps.client is not None:
            yield
            return
        from mahak_sync.startup import postgres_is_starting, temporal_is_starting, wait_for
        from mahak_sync.temporal import CONNECT_TIMEOUT_SECONDS, connect
        from shopdb.pool import open_database

        # Started beside PostgreSQL and Temporal (compose, the dev stack, a reboot), it waits
        # for each with backoff, one line per try, rather than dying on the first refusal; it
        # gives up after a while so that a supervisor's restart policy takes over.
        backoff = {"maximum": settings.startup_retry_max_seconds, "give_up_after": _GIVE_UP_AFTER}
        async with contextlib.AsyncExitStack() as stack:
            deps.pool = await wait_for(
                "postgresql",
                lambda: stack.enter_async_context(open_database(settings)),
                retry_if=postgres_is_starting,
                **backoff,
            )
            deps.client = await wait_for(
                "temporal",
                lambda: connect(settings),
                retry_if=temporal_is_starting,
                attempt_timeout=CONNECT_TIMEOUT_SECONDS,
                **backoff,
            )
            yield

    app = Starlette(
        routes=[
            Route("/payments/callback", payment_callback, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    app.state.deps = deps
    return app


async def serve(settings: Settings, host: str = "127.0.0.1", port: int = 8080) -> None:
    """Run the webhook until interrupted."""
    if not settings.webhook_secret.get_secret_value():
        raise SystemExit("WEBHOOK_SECRET is not set: every callback would be refused")
    config = uvicorn.Config(
        create_app(settings), host=host, port=port, log_level="warning", access_log=False
    )
    log.info("payment webhook listening", host=host, port=port)
    await uvicorn.Server(config).serve()
