"""A fake payment gateway for refunds, idempotent by `idempotency_key` like real ones.

`POST /_gateway/refunds {payment_ref, amount, idempotency_key}`: the first call creates a
refund (201); a repeat with the same key and payload returns the same refund (200); the
same key with a different payload is refused (409), since that is a caller bug.
`GET /_gateway/refunds` lists every refund. Faults can target it with `endpoints: ["refunds"]`.
"""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime

from pydantic import BaseModel, Field, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

PREFIX = "/_gateway"


class RefundRequest(BaseModel):
    payment_ref: str = Field(min_length=1)
    amount: float = Field(gt=0)
    idempotency_key: str = Field(min_length=1)


class Refund(RefundRequest):
    refund_id: str
    status: str = "succeeded"
    created_at: datetime


class RefundLedger:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.clear()

    def clear(self) -> None:
        with self._lock:
            self._by_key: dict[str, Refund] = {}

    def refund(self, request: RefundRequest) -> tuple[Refund, bool]:
        """Return (refund, created); raises ValueError on a key reused for another payload."""
        with self._lock:
            existing = self._by_key.get(request.idempotency_key)
            if existing is not None:
                if (existing.payment_ref, existing.amount) != (request.payment_ref, request.amount):
                    raise ValueError("idempotency_key was already used for a different refund")
                return existing, False
            refund = Refund(
                **request.model_dump(),
                refund_id=f"rf_{uuid.uuid4().hex[:16]}",
                created_at=datetime.now(UTC),
            )
            self._by_key[request.idempotency_key] = refund
            return refund, True

    def all(self) -> list[Refund]:
        with self._lock:
            return list(self._by_key.values())


async def create_refund(request: Request) -> Response:
    ledger: RefundLedger = request.app.state.sim.gateway
    try:
        refund, created = ledger.refund(RefundRequest.model_validate_json(await request.body()))
    except ValidationError as exc:
        return JSONResponse(
            {
                "error": "invalid_request",
                "detail": exc.errors(include_url=False, include_context=False),
            },
            422,
        )
    except ValueError as exc:
        return JSONResponse({"error": "idempotency_key_conflict", "detail": str(exc)}, 409)
    return JSONResponse(refund.model_dump(mode="json"), 201 if created else 200)


async def list_refunds(request: Request) -> Response:
    ledger: RefundLedger = request.app.state.sim.gateway
    return JSONResponse({"refunds": [r.model_dump(mode="json") for r in ledger.all()]})


def routes() -> list[Route]:
    return [
        Route(f"{PREFIX}/refunds", create_refund, methods=["POST"]),
        Route(f"{PREFIX}/refunds", list_refunds, methods=["GET"]),
    ]
